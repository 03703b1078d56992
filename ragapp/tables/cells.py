"""Cells as typed values: numbers written the ways tables write them (thousands separators, units,
currency signs, percentages, accounting negatives, 万/亿, Chinese numerals), dates, and each
column's type decided from its cells."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

# A column is numeric (or a date) when this share of its non-empty cells reads as one.
TYPED_SHARE = 0.9
_EMPTY = {"", "-", "–", "—", "n/a", "N/A", "NA", "null", "None", "无", "／", "/"}
_NUMBER = re.compile(
    r"(?P<neg>[-−–(])?\s*(?P<cur>[$€£¥￥])?\s*(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)\s*"
    r"(?P<scale>[万亿千百]|[kKmM](?![a-zA-Z]))?\s*(?P<unit>%|‰|[A-Za-z\u4e00-\u9fff/$€£¥￥+]{1,12}\.?)?\s*\)?")
_SCALES = {"万": 1e4, "亿": 1e8, "千": 1e3, "百": 1e2, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6}
_DATE = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")
_DIGITS = {c: n for n, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
_UNITS = {"十": 10, "百": 100, "千": 1000}
_BIG = {"万": 10_000, "亿": 100_000_000}


def chinese_numeral(text: str) -> int | None:
    """A number written in Chinese numerals ("三千五百" → 3500, "十二" → 12); None if it is not one."""
    if not text or any(c not in _DIGITS and c not in _UNITS and c not in _BIG for c in text):
        return None
    total, section, digit = 0, 0, None
    for c in text:
        if c in _DIGITS:
            digit = _DIGITS[c]
        elif c in _UNITS:
            section += (1 if digit is None else digit) * _UNITS[c]
            digit = None
        else:
            total += (section + (digit or 0)) * _BIG[c]
            section, digit = 0, None
    return total + section + (digit or 0)


def number(text: str) -> tuple[float, str] | None:
    """A cell's number and its unit ("4,000 euros" → (4000.0, "euros"), "5.37%" → (5.37, "%"),
    "(1,200)" → (-1200.0, ""), "1.2万" → (12000.0, "")); None when the cell is not one number."""
    text = text.strip()
    match = _NUMBER.fullmatch(text)
    if match is None:
        numeral = chinese_numeral(text) if len(text) > 1 or text in _DIGITS else None
        return (float(numeral), "") if numeral is not None else None
    value = float(match["num"].replace(",", ""))
    if match["scale"]:
        value *= _SCALES[match["scale"]]
    neg = match["neg"]
    if neg and (neg != "(" or text.endswith(")")):
        value = -value
    return value, match["unit"] or match["cur"] or ""


def date(text: str) -> str | None:
    """A date cell in ISO form ("2019/4/9", "2019年4月9日" → "2019-04-09"); None when it is not one."""
    match = _DATE.fullmatch(text.strip())
    if match is None:
        return None
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3])).isoformat()
    except ValueError:
        return None


def is_empty(text: str) -> bool:
    """True for a cell that holds no value (blank, a dash, n/a)."""
    return text.strip() in _EMPTY


def column_type(cells: Sequence[str]) -> tuple[str, str]:
    """The SQL type of a column from a sample of its cells ("REAL", "DATE" or "TEXT") and its most
    common unit ("%", "euros", "" for none)."""
    values = [c for c in cells if not is_empty(c)]
    if not values:
        return "TEXT", ""
    numbers = [n for c in values if (n := number(c)) is not None]
    if len(numbers) >= TYPED_SHARE * len(values):
        units = [u for _, u in numbers if u]
        unit = max(set(units), key=units.count) if len(units) * 2 >= len(numbers) else ""
        return "REAL", unit
    if sum(date(c) is not None for c in values) >= TYPED_SHARE * len(values):
        return "DATE", ""
    return "TEXT", ""


def typed(text: str, kind: str) -> object:
    """A cell as its column stores it: a float for REAL, ISO text for DATE, else the text (None when empty)."""
    if is_empty(text):
        return None
    if kind == "REAL":
        n = number(text)
        return n[0] if n is not None else text
    if kind == "DATE":
        return date(text) or text
    return text

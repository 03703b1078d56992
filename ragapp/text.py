"""Small text helpers shared by several stages: language detection and sentence boundaries."""

from __future__ import annotations

import os
import re

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")

# A sentence ends at Chinese end punctuation (with closing quotes), or at English end punctuation
# followed by whitespace and something that starts a sentence. A single line break is not an end:
# PDFs and hard-wrapped text break lines inside sentences (over-long "sentences" are cut at lines later).
# Linear on any input: possessive runs, and a run of dots is only tried from its first dot (trying
# every dot of a run as a start made a text of dots quadratic; tests/test_security.py checks it).
_SENTENCE_END = re.compile(
    r"[。！？；!?…]++[”’」』）)\"']*+"
    r"|(?<!\.)\.++[”’\"')\]]*+(?=\s++[\"'“‘(\[]?[A-Z0-9\u3400-\u9fff])"
)
_LINE_END = re.compile(r"\n+")
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*+\n\s*+")
_CLAUSE_END = re.compile(r"[，、：:,;]+\s*")


def detect_language(text: str) -> str:
    """'zh' when the text is mostly Chinese characters, else 'en'."""
    cjk = len(_CJK.findall(text))
    latin_words = len(re.findall(r"[A-Za-z]+", text))
    return "zh" if cjk > 0 and cjk >= latin_words else "en"


def _spans_by(pattern: re.Pattern[str], text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Cut text[start:end] after each match of pattern; spans are trimmed of surrounding whitespace."""
    spans: list[tuple[int, int]] = []
    pos = start
    for m in pattern.finditer(text, start, end):
        if m.end() > pos:
            spans.append((pos, m.end()))
            pos = m.end()
    if pos < end:
        spans.append((pos, end))
    return [s for s in (_trim(text, a, b) for a, b in spans) if s[1] > s[0]]


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each paragraph (separated by blank lines)."""
    return _spans_by(_PARAGRAPH, text, 0, len(text))


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of each sentence of text[start:end], Chinese and English end marks alike."""
    return _spans_by(_SENTENCE_END, text, start, len(text) if end is None else end)


def line_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Split an over-long sentence at line breaks (tables, lists, hard-wrapped text)."""
    return _spans_by(_LINE_END, text, start, end)


def clause_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Split an over-long sentence at commas, colons and semicolons."""
    return _spans_by(_CLAUSE_END, text, start, end)


def shown(path: str | os.PathLike) -> str:
    """A path as it can be printed and stored: bytes of a name that are not UTF-8 (a GBK name from a
    Chinese Windows zip, kept by Python as surrogates) become U+FFFD."""
    return os.fsencode(path).decode("utf-8", "replace")

"""Tables in a PDF page's text layer, where the layer keeps rows: a run of at least MIN_ROWS
consecutive lines that each end in the same number (at least MIN_CELLS) of numeric cells, each
line's leading text its label. pypdf's text gives no column positions, so a header is taken only
when the line above the run splits into exactly as many names as the rows have cells; otherwise the
columns are named "column 1", "column 2", ... Which of the shared PDFs qualify: docs/tables.md."""

from __future__ import annotations

import re

MIN_ROWS = 4
MIN_CELLS = 2
_NUMERIC = re.compile(r"[-−(]?[$€£¥￥]?\d[\d,]*(?:\.\d+)?%?\)?|[-–—]")


def _cells(line: str) -> tuple[str, list[str]] | None:
    """A row's label and its trailing numeric cells; None for a line that is not a row."""
    tokens = line.split()
    n = len(tokens)
    while n > 0 and _NUMERIC.fullmatch(tokens[n - 1]):
        n -= 1
    numbers = tokens[n:]
    if len(numbers) < MIN_CELLS or not any(c[0].isdigit() or c[-1].isdigit() for c in numbers):
        return None
    return " ".join(tokens[:n]), numbers


def _header(line: str, cells: int) -> list[str] | None:
    names = line.split()
    if len(names) == cells + 1:
        return names
    if len(names) == cells:
        return ["", *names]
    return None


def _table(lines: list[str], rows: list[tuple[str, list[str]]], start: int, number: int) -> dict:
    cells = len(rows[0][1])
    header = _header(lines[start - 1], cells) if start > 0 else None
    if header is None:
        header = [f"column {k}" for k in range(1, cells + 2)]
    return {"key": f"table {number}", "rows": [header, *([label, *values] for label, values in rows)], "first": 1}


def page_tables(text: str) -> list[dict]:
    """The tables found in one page's text, as page records carry them (see ragapp.records.TableRows)."""
    lines = [line for line in text.splitlines() if line.strip()]
    tables: list[dict] = []
    run: list[tuple[str, list[str]]] = []
    start = 0
    for k, line in enumerate([*lines, ""]):
        row = _cells(line) if line else None
        if row is not None and (not run or len(row[1]) == len(run[0][1])):
            if not run:
                start = k
            run.append(row)
            continue
        if len(run) >= MIN_ROWS:
            tables.append(_table(lines, run, start, len(tables) + 1))
        run, start = ([row], k) if row is not None else ([], 0)
    return tables

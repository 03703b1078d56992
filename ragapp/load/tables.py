"""Rows of tables as text (shared by spreadsheets, Word and PowerPoint tables), and CSV/TSV files
(parsed in the sandbox child, streamed).

A row becomes one line of "header: value" pairs, so a chunk that holds a row also holds what
each value means, and BM25 and the embedder see the column's name beside the value.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ragapp.errors import DocumentError, ParseError
from ragapp.load.clean import clean_text

# Rows of one sheet or CSV file go out in records of this many rows, so a million-row sheet is
# streamed (each record is split on its own) and its memory stays bounded.
ROWS_PER_RECORD = 500
_SNIFF_CHARS = 65536


def cell_text(value: object) -> str:
    """A cell's value as a person would write it (3.0 → 3, dates in ISO form, None → empty)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date().isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return " ".join(str(value).split())


def row_line(header: Sequence[str], row: Sequence[str]) -> str:
    """One row as "header: value; header: value" (values without a header stand alone)."""
    parts = []
    for n, value in enumerate(row):
        if value:
            name = header[n] if n < len(header) else ""
            parts.append(f"{name}: {value}" if name and name != value else value)
    return "; ".join(parts)


class TableLines:
    """A table's lines: its first row with more than its first cell filled is the header (rows above it,
    a sheet's title, stay plain lines), each further row "header: value" pairs."""

    def __init__(self) -> None:
        self.header: list[str] | None = None

    def line(self, row: Sequence[str]) -> str:
        """The line for one row ("" for an empty row)."""
        if not any(row):
            return ""
        if self.header is None:
            if any(row[1:]):
                self.header = list(row)
            return " | ".join(v for v in row if v)
        return row_line(self.header, row)


def table_text(rows: Iterable[Sequence[str]]) -> str:
    """A whole table's text, one line per non-empty row."""
    table = TableLines()
    return "\n".join(line for row in rows if (line := table.line(row)))


class RowRecords:
    """Collects a table's lines and emits them as page records of ROWS_PER_RECORD rows, with offsets
    and the rows' cells (numbered from 1 as in the sheet or file, for ragapp.tables)."""

    def __init__(self, emit: Callable[[dict], None], page: int | None, label: str | None) -> None:
        self.emit, self.page, self.label = emit, page, label
        self.table = TableLines()
        self.lines: list[str] = []
        self.cells: list[list[str]] = []
        self.first = 1  # the number of cells[0]
        self.offset = 0

    def add(self, row: Sequence[str]) -> None:
        """Add one row (its cells as text); the first non-empty row is the header."""
        line = self.table.line(row)
        if line:
            self.lines.append(line)
        self.cells.append(list(row))
        if len(self.cells) >= ROWS_PER_RECORD:
            self.flush()

    def flush(self) -> None:
        """Emit the rows collected so far."""
        if self.lines:
            text = clean_text("\n".join(self.lines) + "\n")
            self.emit({"page": self.page, "label": self.label, "text": text, "offset": self.offset,
                       "tables": [{"key": "", "rows": self.cells, "first": self.first}]})
            self.offset += len(text)
        self.first += len(self.cells)
        self.lines, self.cells = [], []


def _parse_delimited(path: str, emit: Callable[[dict], None], delimiter: str | None) -> None:
    from ragapp.load.text import text_encoding

    try:
        encoding = text_encoding(Path(path), "")
    except DocumentError as exc:
        raise ParseError(str(exc).lstrip(": ")) from exc
    with open(path, encoding=encoding, newline="") as f:
        if delimiter is None:
            head = f.read(_SNIFF_CHARS)
            f.seek(0)
            try:
                delimiter = csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
            except csv.Error:
                delimiter = ","
        records = RowRecords(emit, None, None)
        try:
            for row in csv.reader(f, delimiter=delimiter):
                records.add([cell_text(v) for v in row])
        except csv.Error as exc:
            raise ParseError(f"malformed CSV ({exc})") from exc
        records.flush()


def parse_csv(path: str, limits: dict, emit: Callable[[dict], None], start_page: int = 1) -> None:
    """Emit a CSV file's rows as "header: value" lines (the delimiter is sniffed: , ; tab |)."""
    _parse_delimited(path, emit, None)


def parse_tsv(path: str, limits: dict, emit: Callable[[dict], None], start_page: int = 1) -> None:
    """Emit a tab-separated file's rows as "header: value" lines."""
    _parse_delimited(path, emit, "\t")

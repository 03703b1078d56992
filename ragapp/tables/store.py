"""The owner of `<index>/tables.sqlite`: every table ingest read as cells, kept as a typed SQLite
table with its source, page and row numbers, and the catalog that says which is which.

Tables are kept per (source, sha256) of the file they came from. An ingest writes the tables of the
files it reads in one transaction, committed before the index's own commit, and afterwards drops
every table whose (source, sha256) the index no longer lists. Readers use only tables whose
(source, sha256) the committed index lists, so a crash at any moment leaves what queries see
consistent with the index, and the next ingest tidies up.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ragapp.records import Page, TableRows, place
from ragapp.tables.cells import column_type, is_empty, number, typed

TABLES_FILE = "tables.sqlite"
CATALOG = "ragapp_tables"
# Rows read before a table's header and column types are decided (the rest stream through).
SAMPLE_ROWS = 200
INSERT_BATCH = 500
NAME_CHARS = 60
_CATALOG_SQL = (f"CREATE TABLE IF NOT EXISTS {CATALOG} (id INTEGER PRIMARY KEY, name TEXT UNIQUE, source TEXT, "
                "sha256 TEXT, page INTEGER, label TEXT, key TEXT, columns TEXT, rows INTEGER)")


@dataclass(frozen=True)
class Column:
    """A column: its name (the header's text), SQL type (REAL, DATE, TEXT) and most common unit."""

    name: str
    kind: str
    unit: str = ""


@dataclass(frozen=True)
class TableInfo:
    """One stored table: its SQL name, where it came from, its columns and row count."""

    name: str
    source: str
    sha256: str
    page: int | None
    label: str | None
    key: str
    columns: tuple[Column, ...]
    rows: int

    @property
    def place(self) -> str:
        """Where the table sits, as people say it ("sheet Sales", "page 3, table 2")."""
        where = place(self.source, self.page, self.label)
        return ", ".join(p for p in (where, self.key) if p)


def _names(header: Sequence[str], width: int) -> list[str]:
    """Column names from a header row: trimmed, "column N" for a blank one, "name (N)" for a repeat."""
    names: list[str] = []
    for k in range(width):
        name = " ".join((header[k] if k < len(header) else "").split())[:NAME_CHARS] or f"column {k + 1}"
        names.append(name if name not in names and name != "_row" else f"{name} ({k + 1})")
    return names


def _looks_like_data(row: Sequence[str]) -> bool:
    values = [c for c in row if not is_empty(c)]
    return bool(values) and sum(number(c) is not None for c in values) * 2 > len(values)


def quote(name: str) -> str:
    """An SQL identifier in double quotes."""
    return '"' + name.replace('"', '""') + '"'


class _Builder:
    """One table being written: rows are held until SAMPLE_ROWS have come (header and types decided), then streamed."""

    def __init__(self, conn: sqlite3.Connection, info: dict) -> None:
        self.conn, self.info = conn, info
        self.header: list[str] | None = None  # [] when the columns get made names
        self.titles: list[tuple[int, list[str]]] = []  # rows above the header with only their first cell filled
        self.pending: list[tuple[int, list[str]]] = []
        self.columns: list[Column] = []
        self.rows = 0
        self.last_label = ""

    def add(self, row: int, cells: Sequence[str]) -> None:
        if not any(not is_empty(c) for c in cells):
            return
        if self.header is None:
            single = all(is_empty(c) for c in cells[1:])
            if single and not _looks_like_data(cells):
                self.titles.append((row, list(cells)))  # a sheet's title, or a one-column table's header
                return
            if not _looks_like_data(cells):
                self.header = list(cells)
                return
            self.header = self.titles[-1][1] if self.titles and single else []
        self.pending.append((row, list(cells)))
        if not self.columns and len(self.pending) >= SAMPLE_ROWS:
            self._create()
        if self.columns and len(self.pending) >= INSERT_BATCH:
            self._insert()

    def _create(self) -> None:
        width = max([len(self.header or [])] + [len(c) for _, c in self.pending])
        names = _names(self.header or [], width)
        self.columns = [Column(n, *column_type([c[k] if k < len(c) else "" for _, c in self.pending]))
                        for k, n in enumerate(names)]
        cols = ", ".join(f"{quote(c.name)} {c.kind if c.kind != 'DATE' else 'TEXT'}" for c in self.columns)
        self.conn.execute(f'CREATE TABLE {quote(self.info["name"])} ("_row" INTEGER, {cols})')

    def _insert(self) -> None:
        width = len(self.columns)
        rows = []
        for row, cells in self.pending:
            cells = (cells + [""] * width)[:width]
            if is_empty(cells[0]) and self.columns[0].kind == "TEXT":
                cells[0] = self.last_label  # a merged label cell spans the rows under it
            self.last_label = cells[0]
            rows.append((row, *(typed(c, col.kind) for c, col in zip(cells, self.columns))))
        marks = ", ".join("?" * (width + 1))
        self.conn.executemany(f"INSERT INTO {quote(self.info['name'])} VALUES ({marks})", rows)
        self.rows += len(rows)
        self.pending = []

    def finish(self) -> bool:
        """Write what is left and the catalog row; False for a table without a data row."""
        if self.header is None and self.titles:  # one column of text: its first row is the header
            self.header, self.pending = self.titles[0][1], self.titles[1:]
        if not self.pending and not self.columns:
            return False
        if not self.columns:
            self._create()
        self._insert()
        columns = json.dumps([[c.name, c.kind, c.unit] for c in self.columns], ensure_ascii=False)
        info = self.info
        self.conn.execute(f"INSERT INTO {CATALOG} (id, name, source, sha256, page, label, key, columns, rows) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (info["id"], info["name"], info["source"], info["sha256"],
                                                                 info["page"], info["label"], info["key"], columns, self.rows))
        return True


class TableWriter:
    """Writes the tables of the files one ingest reads (one transaction; see the module's docstring).
    Used under the index's write lock: one writer at a time."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(folder / TABLES_FILE, isolation_level=None, timeout=30)
        self.conn.execute(_CATALOG_SQL)
        self.conn.execute("BEGIN")
        self.next_id = self.conn.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {CATALOG}").fetchone()[0]
        self.builders: dict[tuple, _Builder] = {}
        self.file: tuple[str, str] | None = None
        self.written = 0

    def begin_file(self, source: str, sha256: str) -> None:
        """The tables added from now on are this file's (any left from a run that did not finish are dropped)."""
        self.conn.execute("SAVEPOINT file")
        self._drop(self.conn.execute(f"SELECT name FROM {CATALOG} WHERE source = ? AND sha256 = ?", (source, sha256)))
        self.file, self.builders = (source, sha256), {}

    def add(self, page: Page) -> None:
        """A page's tables (rows of a long sheet may come over several pages of the same key)."""
        for table in page.tables:
            self._add(page, table)

    def _add(self, page: Page, table: TableRows) -> None:
        key = (page.page, page.label, table.key)
        builder = self.builders.get(key)
        if builder is None:
            assert self.file is not None
            info = {"id": self.next_id, "name": f"t{self.next_id}", "source": self.file[0], "sha256": self.file[1],
                    "page": page.page, "label": page.label, "key": table.key}
            self.next_id += 1
            builder = self.builders[key] = _Builder(self.conn, info)
        for n, cells in enumerate(table.rows, start=table.first):
            builder.add(n, cells)

    def end_file(self) -> int:
        """Finish the file's tables; how many were kept."""
        kept = sum(b.finish() for b in self.builders.values())
        self.conn.execute("RELEASE file")
        self.written += kept
        self.builders, self.file = {}, None
        return kept

    def drop_file(self) -> None:
        """Forget the current file's tables."""
        self.conn.execute("ROLLBACK TO file")
        self.conn.execute("RELEASE file")
        self.builders, self.file = {}, None

    def commit(self) -> None:
        """Make the run's tables durable (before the index commits: see the module's docstring)."""
        self.conn.execute("COMMIT")

    def collect(self, files: Mapping[str, str]) -> None:
        """Drop every table whose (source, sha256) is not in `files` (the committed index's), then close."""
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")
        rows = self.conn.execute(f"SELECT name, source, sha256 FROM {CATALOG}").fetchall()
        self._drop((name,) for name, source, sha in rows if files.get(source) != sha)
        self.conn.execute("COMMIT")
        self.close()

    def close(self) -> None:
        """Close the connection (an open transaction is rolled back)."""
        self.conn.close()

    def _drop(self, names: Iterable[tuple[str]]) -> None:
        for (name,) in list(names):
            self.conn.execute(f"DROP TABLE IF EXISTS {quote(name)}")
            self.conn.execute(f"DELETE FROM {CATALOG} WHERE name = ?", (name,))


def catalog(conn: sqlite3.Connection, files: Mapping[str, str]) -> list[TableInfo]:
    """The stored tables whose (source, sha256) `files` lists (the committed index's documents)."""
    try:
        rows = conn.execute(f"SELECT name, source, sha256, page, label, key, columns, rows FROM {CATALOG} ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # a store without a catalog yet
        return []
    return [TableInfo(name, source, sha, page, label, key, tuple(Column(*c) for c in json.loads(columns)), count)
            for name, source, sha, page, label, key, columns, count in rows if files.get(source) == sha]

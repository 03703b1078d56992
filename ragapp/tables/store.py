"""The owner of `<index>/tables.sqlite`: every table ingest read as cells, kept as a typed SQLite
table with its source, page and row numbers, and the catalog that says which is which.

Tables are kept per (source, sha256) of the file they came from, and a reader uses only complete
tables whose (source, sha256) the committed index lists. So writes need no transaction as long as an
ingest: a file's tables are written in short transactions while it is read (never holding the file
locked for long, so two ingest processes of a Milvus knowledge base do not wait on each other), marked
complete when the file is done, and those of a file's earlier versions dropped after the index
commits. A crash at any moment leaves what queries see consistent with the index; the next ingest
of that file tidies up.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ragapp.records import Page, TableRows, place
from ragapp.tables.cells import column_type, is_empty, number, typed

TABLES_FILE = "tables.sqlite"
CATALOG = "ragapp_tables"
# Rows read before a table's header and column types are decided (the rest stream through), and rows
# written per transaction.
SAMPLE_ROWS = 200
INSERT_BATCH = 5000
NAME_CHARS = 60
# SQLite holds at most 2,000 columns, and a table's row is one record: wider tables, and longer cells,
# are not kept as tables (their text is still indexed). Queries read values up to 1 MB (ragapp.tables.sql).
MAX_COLUMNS = 1000
MAX_CELL_CHARS = 100_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CATALOG_SQL = (f"CREATE TABLE IF NOT EXISTS {CATALOG} (id INTEGER PRIMARY KEY, name TEXT UNIQUE, source TEXT, "
                "sha256 TEXT, page INTEGER, label TEXT, key TEXT, columns TEXT, rows INTEGER, complete INTEGER)")


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
        text = _CONTROL.sub(" ", header[k] if k < len(header) else "")  # a NUL cannot be in SQL text
        name = " ".join(text.split())[:NAME_CHARS] or f"column {k + 1}"
        names.append(name if name not in names and name != "_row" else f"{name} ({k + 1})")
    return names


def _looks_like_data(row: Sequence[str]) -> bool:
    values = [c for c in row if not is_empty(c)]
    return bool(values) and sum(number(c) is not None for c in values) * 2 > len(values)


@contextmanager
def _writing(conn: sqlite3.Connection):
    """One short write transaction (BEGIN IMMEDIATE: the write lock is taken at once, or waited for)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


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
        self.name = ""  # the SQL table's, once created

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
        """Decide the columns; create the table and its catalog row (incomplete until the file is done)."""
        width = max([len(self.header or [])] + [len(c) for _, c in self.pending])
        if width > MAX_COLUMNS:
            raise ValueError(f"a table of {width:,} columns (at most {MAX_COLUMNS:,} are kept as a table)")
        names = _names(self.header or [], width)
        self.columns = [Column(n, *column_type([c[k] if k < len(c) else "" for _, c in self.pending]))
                        for k, n in enumerate(names)]
        cols = ", ".join(f"{quote(c.name)} {c.kind if c.kind != 'DATE' else 'TEXT'}" for c in self.columns)
        described = json.dumps([[c.name, c.kind, c.unit] for c in self.columns], ensure_ascii=False)
        info = self.info
        with _writing(self.conn):
            self.name = f"t{self.conn.execute(f'SELECT COALESCE(MAX(id), 0) + 1 FROM {CATALOG}').fetchone()[0]}"
            self.conn.execute(f"INSERT INTO {CATALOG} (id, name, source, sha256, page, label, key, columns, rows, complete) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0)", (int(self.name[1:]), self.name, info["source"],
                                                                        info["sha256"], info["page"], info["label"],
                                                                        info["key"], described))
            self.conn.execute(f'CREATE TABLE {quote(self.name)} ("_row" INTEGER, {cols})')

    def _insert(self) -> None:
        width = len(self.columns)
        rows = []
        for row, cells in self.pending:
            cells = (cells + [""] * width)[:width]
            if is_empty(cells[0]) and self.columns[0].kind == "TEXT":
                cells[0] = self.last_label  # a merged label cell spans the rows under it
            self.last_label = cells[0]
            rows.append((row, *(typed(c[:MAX_CELL_CHARS], col.kind) for c, col in zip(cells, self.columns))))
        marks = ", ".join("?" * (width + 1))
        with _writing(self.conn):
            self.conn.executemany(f"INSERT INTO {quote(self.name)} VALUES ({marks})", rows)
            self.conn.execute(f"UPDATE {CATALOG} SET rows = rows + ? WHERE name = ?", (len(rows), self.name))
        self.rows += len(rows)
        self.pending = []

    def finish(self) -> str | None:
        """Write what is left; the table's name, or None for a table without a data row."""
        if self.header is None and self.titles:  # one column of text: its first row is the header
            self.header, self.pending = self.titles[0][1], self.titles[1:]
        if not self.pending and not self.columns:
            return None
        if not self.columns:
            self._create()
        self._insert()
        return self.name


class TableWriter:
    """Writes the tables of the files one ingest reads (see the module's docstring)."""

    what = "tables"

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(folder / TABLES_FILE, isolation_level=None, timeout=30)
        self.conn.execute(_CATALOG_SQL)
        self.builders: dict[tuple, _Builder] = {}
        self.file: tuple[str, str] | None = None
        self.touched: set[str] = set()

    def begin_file(self, source: str, sha256: str) -> None:
        """The tables added from now on are this file's."""
        self.file, self.builders = (source, sha256), {}
        self.touched.add(source)

    def add(self, page: Page) -> None:
        """A page's tables (rows of a long sheet may come over several pages of the same key)."""
        for table in page.tables:
            self._add(page, table)

    def _add(self, page: Page, table: TableRows) -> None:
        key = (page.page, page.label, table.key)
        builder = self.builders.get(key)
        if builder is None:
            assert self.file is not None
            info = {"source": self.file[0], "sha256": self.file[1], "page": page.page, "label": page.label, "key": table.key}
            builder = self.builders[key] = _Builder(self.conn, info)
        for n, cells in enumerate(table.rows, start=table.first):
            builder.add(n, cells)

    def end_file(self) -> int:
        """Finish the file's tables and mark them complete (replacing any of the same file and content
        an earlier run left); how many were kept."""
        assert self.file is not None
        names = [n for n in (b.finish() for b in self.builders.values()) if n is not None]
        with _writing(self.conn):
            earlier = self.conn.execute(f"SELECT name FROM {CATALOG} WHERE source = ? AND sha256 = ?", self.file).fetchall()
            self._drop((n,) for (n,) in earlier if n not in names)
            self.conn.executemany(f"UPDATE {CATALOG} SET complete = 1 WHERE name = ?", [(n,) for n in names])
        self.builders, self.file = {}, None
        return len(names)

    def drop_file(self) -> None:
        """Forget the current file's tables."""
        with _writing(self.conn):
            self._drop((b.name,) for b in self.builders.values() if b.name)
        self.builders, self.file = {}, None

    def collect(self, files: Mapping[str, str]) -> None:
        """After the index commits: drop the tables of the files this run read or removed whose content
        the index (`files`, source → sha256) no longer holds; then close."""
        with _writing(self.conn):
            rows = self.conn.execute(f"SELECT name, source, sha256 FROM {CATALOG}").fetchall()
            self._drop((name,) for name, source, sha in rows if source in self.touched and files.get(source) != sha)
        self.close()

    def forget(self, sources: Iterable[str]) -> None:
        """Sources this run removes from the index (their tables go at `collect`)."""
        self.touched.update(sources)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def _drop(self, names: Iterable[tuple[str]]) -> None:
        for (name,) in list(names):
            self.conn.execute(f"DROP TABLE IF EXISTS {quote(name)}")
            self.conn.execute(f"DELETE FROM {CATALOG} WHERE name = ?", (name,))


def catalog(conn: sqlite3.Connection, files: Mapping[str, str]) -> list[TableInfo]:
    """The stored tables whose (source, sha256) `files` lists (the committed index's documents)."""
    try:
        rows = conn.execute(f"SELECT name, source, sha256, page, label, key, columns, rows FROM {CATALOG} WHERE complete = 1 "
                            "ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # a store without a catalog yet
        return []
    return [TableInfo(name, source, sha, page, label, key, tuple(Column(*c) for c in json.loads(columns)), count)
            for name, source, sha, page, label, key, columns, count in rows if files.get(source) == sha]

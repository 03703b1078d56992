"""The owner of `<index>/pages.sqlite`: where each indexed page's characters sit (ragapp.load.geometry),
kept per (source, sha256, page) as ingest read them, beside the index of either backend.

As with the tables (ragapp.tables.store), a reader uses only rows whose (source, sha256) the committed
index lists, so writes need no transaction as long as an ingest: a page is written when it is read,
a failed file's pages are dropped, and pages of a file's earlier versions go after the index commits.
A crash at any moment leaves what readers see consistent with the index.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ragapp.records import Page

PAGES_FILE = "pages.sqlite"
_SCHEMA = ("CREATE TABLE IF NOT EXISTS pages (source TEXT, sha256 TEXT, page INTEGER, chars INTEGER, ocr INTEGER, "
           "boxes BLOB, PRIMARY KEY (source, sha256, page))")


@dataclass(frozen=True)
class PageGeometry:
    """One stored page: how many characters its text has, whether OCR read it, its encoded boxes."""

    source: str
    sha256: str
    page: int | None
    chars: int
    ocr: bool
    boxes: bytes


def _key(page: int | None) -> int:
    return 0 if page is None else page  # an image file's one page has no number


class PageWriter:
    """Writes the geometry of the pages one ingest reads (see the module's docstring)."""

    what = "page geometry"

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(folder / PAGES_FILE, isolation_level=None, timeout=30)
        self.conn.execute(_SCHEMA)
        self.file: tuple[str, str] | None = None
        self.touched: set[str] = set()

    def begin_file(self, source: str, sha256: str) -> None:
        """The pages added from now on are this file's."""
        self.file = (source, sha256)
        self.touched.add(source)

    def add(self, page: Page) -> None:
        """A page's geometry, when its loader recorded any."""
        if page.geometry is None or self.file is None:
            return
        self.conn.execute("INSERT OR REPLACE INTO pages VALUES (?, ?, ?, ?, ?, ?)",
                          (*self.file, _key(page.page), len(page.text), int(page.ocr), page.geometry))

    def end_file(self) -> None:
        """The file is done (its pages are in)."""
        self.file = None

    def drop_file(self) -> None:
        """Forget the current file's pages (it failed)."""
        if self.file is not None:
            self.conn.execute("DELETE FROM pages WHERE source = ? AND sha256 = ?", self.file)
        self.file = None

    def forget(self, sources: Iterable[str]) -> None:
        """Sources this run removes from the index (their pages go at `collect`)."""
        self.touched.update(sources)

    def collect(self, files: Mapping[str, str]) -> None:
        """After the index commits: drop the pages of the files this run read or removed whose content the
        index (`files`, source → sha256) no longer holds."""
        rows = self.conn.execute("SELECT DISTINCT source, sha256 FROM pages").fetchall()
        stale = [(s, h) for s, h in rows if s in self.touched and files.get(s) != h]
        self.conn.executemany("DELETE FROM pages WHERE source = ? AND sha256 = ?", stale)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def read_page(folder: Path, source: str, sha256: str, page: int | None) -> PageGeometry | None:
    """The stored geometry of one page of the file with this content, or None (an index from before
    geometry was kept, a format without pages, a page pdfium could not place)."""
    path = folder / PAGES_FILE
    if not path.is_file():
        return None
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        # Page 1 of a one-page image is its only page, stored without a number.
        row = conn.execute("SELECT chars, ocr, boxes FROM pages WHERE source = ? AND sha256 = ? AND page IN (?, ?) "
                           "ORDER BY page DESC", (source, sha256, _key(page), 0 if _key(page) == 1 else _key(page))).fetchone()
    except sqlite3.DatabaseError:  # a store without the table yet, or not ours
        return None
    finally:
        conn.close()
    return PageGeometry(source, sha256, page, int(row[0]), bool(row[1]), bytes(row[2])) if row else None


def has_pages(folder: Path) -> bool:
    """Whether this index keeps page geometry (an index built before it did has no store)."""
    return (folder / PAGES_FILE).is_file()

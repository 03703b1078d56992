"""What ingest keeps beside the index, file by file: the tables (ragapp.tables.store) and the pages'
geometry (ragapp.show.store), written as pages are read and tidied after the index commits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from ragapp.records import Page


class Keeper(Protocol):
    """A store written beside the index (one per kind of thing kept)."""

    def begin_file(self, source: str, sha256: str) -> None: ...
    def add(self, page: Page) -> None: ...
    def end_file(self) -> object: ...
    def drop_file(self) -> None: ...
    def forget(self, sources: Iterable[str]) -> None: ...
    def collect(self, files: Mapping[str, str]) -> None: ...
    def close(self) -> None: ...


class Beside:
    """Every store of one ingest run, told the same things in the same order."""

    def __init__(self, tables: Path | None = None, pages: Path | None = None) -> None:
        from ragapp.show.store import PageWriter
        from ragapp.tables.store import TableWriter

        self.keepers: list[Keeper] = []
        try:
            if tables is not None:
                self.keepers.append(TableWriter(tables))
            if pages is not None:
                self.keepers.append(PageWriter(pages))
        except BaseException:
            self.close()
            raise

    def begin_file(self, source: str, sha256: str) -> None:
        for k in self.keepers:
            k.begin_file(source, sha256)

    def add(self, page: Page) -> None:
        for k in self.keepers:
            k.add(page)

    def end_file(self) -> None:
        for k in self.keepers:
            k.end_file()

    def drop_file(self) -> None:
        for k in self.keepers:
            k.drop_file()

    def after_commit(self, removed: Iterable[str], files: Mapping[str, str]) -> None:
        """The index committed: what this run removed, and what it now lists (source → sha256)."""
        removed = list(removed)
        for k in self.keepers:
            k.forget(removed)
            k.collect(files)

    def close(self) -> None:
        for k in self.keepers:
            k.close()

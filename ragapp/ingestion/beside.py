"""What ingest keeps beside the index, file by file: the tables (ragapp.tables.store) and the pages'
geometry (ragapp.show.store), written as pages are read and tidied after the index commits.

A store fails per file, as a parser does: a table SQLite cannot hold (a header with a NUL, 2,100
columns) costs that file its tables, reported by name with the reason, never its text nor the rest
of the folder. A full disk stops the ingest (IndexWriteError), as it does when the index is written."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Protocol

from ragapp.errors import disk_full, write_failure
from ragapp.records import Page

log = logging.getLogger(__name__)
Problem = Callable[[str, str], None]  # (source, reason)


class Keeper(Protocol):
    """A store written beside the index (one per kind of thing kept)."""

    what: str  # what it keeps, as a report says it ("tables", "page geometry")

    def begin_file(self, source: str, sha256: str) -> None: ...
    def add(self, page: Page) -> None: ...
    def end_file(self) -> object: ...
    def drop_file(self) -> None: ...
    def forget(self, sources: Iterable[str]) -> None: ...
    def collect(self, files: Mapping[str, str]) -> None: ...
    def close(self) -> None: ...


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


class Beside:
    """Every store of one ingest run, told the same things in the same order; a store that fails on a
    file is left out for the rest of that file and its part of the file dropped (`on_problem` hears why)."""

    def __init__(self, tables: Path | None = None, pages: Path | None = None, on_problem: Problem | None = None) -> None:
        from ragapp.show.store import PageWriter
        from ragapp.tables.store import TableWriter

        self.keepers: list[Keeper] = []
        self.folders: list[Path] = []
        self.on_problem: Problem = on_problem or (lambda source, reason: None)
        self.source = ""
        self.failed: set[int] = set()  # indices of the keepers that failed on the current file
        try:
            if tables is not None:
                self.keepers.append(TableWriter(tables))
                self.folders.append(tables)
            if pages is not None:
                self.keepers.append(PageWriter(pages))
                self.folders.append(pages)
        except BaseException:
            self.close()
            raise

    def _each(self, step: Callable[[Keeper], object]) -> None:
        for n, k in enumerate(self.keepers):
            if n in self.failed:
                continue
            try:
                step(k)
            except (MemoryError, KeyboardInterrupt):
                raise
            except Exception as exc:  # one file's tables or pages, not the file nor the folder
                if disk_full(exc):  # nor would the next file's: the whole ingest stops (and drops this file's rows)
                    raise write_failure(f"the {k.what} of {self.source}", self.folders[n], exc) from exc
                self.failed.add(n)
                log.debug("%s of %s not kept", k.what, self.source, exc_info=True)
                self.on_problem(self.source, f"its {k.what} were not kept ({_reason(exc)}); its text is indexed")
                self._drop(k)

    def _drop(self, keeper: Keeper) -> None:
        try:
            keeper.drop_file()
        except Exception:  # what is left is marked incomplete: readers never see it, the next ingest tidies it
            log.warning("could not drop the %s of %s", keeper.what, self.source, exc_info=True)

    def begin_file(self, source: str, sha256: str) -> None:
        self.source, self.failed = source, set()
        self._each(lambda k: k.begin_file(source, sha256))

    def add(self, page: Page) -> None:
        self._each(lambda k: k.add(page))

    def end_file(self) -> None:
        self._each(lambda k: k.end_file())

    def drop_file(self) -> None:
        for n, k in enumerate(self.keepers):
            if n not in self.failed:
                self._drop(k)

    def after_commit(self, removed: Iterable[str], files: Mapping[str, str]) -> None:
        """The index committed: what this run removed, and what it now lists (source → sha256). A store
        that cannot tidy up now does it at the next ingest (readers use only what the index lists)."""
        removed = list(removed)
        for k in self.keepers:
            try:
                k.forget(removed)
                k.collect(files)
            except (MemoryError, KeyboardInterrupt):
                raise
            except Exception as exc:
                log.warning("could not tidy the %s after the commit", k.what, exc_info=True)
                self.on_problem(k.what, f"not tidied after the commit ({_reason(exc)}); the next ingest does it")

    def close(self) -> None:
        for k in self.keepers:
            try:
                k.close()
            except Exception:
                log.warning("could not close the %s", k.what, exc_info=True)

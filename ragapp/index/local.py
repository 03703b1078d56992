"""The default index: FAISS, BM25 and the chunk store in a folder on this machine, written by generations."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from ragapp.index.folder import check_index_folder
from ragapp.index.lock import write_lock
from ragapp.index.manifest import MANIFEST, Manifest, read_manifest
from ragapp.index.protocols import IndexReader
from ragapp.index.reader import LocalReader
from ragapp.index.writer import GenerationWriter


class LocalIndex:
    """An index in a folder on this machine: FAISS, BM25 and the chunk store, written by generations."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)

    def exists(self) -> bool:
        """True once a manifest has been committed."""
        return (self.path / MANIFEST).exists()

    def check_writable(self) -> None:
        """Raise NotAnIndexError unless the folder is new, empty or ragapp's."""
        check_index_folder(self.path)

    def stamp(self) -> tuple[int, int] | None:
        """Changes whenever a new generation is committed (None: no index yet)."""
        try:
            st = os.stat(self.path / MANIFEST)
            return (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            return None

    def manifest(self) -> Manifest:
        """The committed manifest."""
        return read_manifest(self.path)

    def open(self) -> LocalReader:
        """Load the committed generation, every part checked."""
        return LocalReader.open(self.path)

    def lock(self, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> AbstractContextManager:
        """The writer lock (one ingest at a time)."""
        return write_lock(self.path, wait, on_wait)

    def writer(self, dimension: int, bm25: dict, previous: IndexReader | None, rebuild: bool = False) -> GenerationWriter:
        """A new generation; `previous` (a LocalReader of this folder) provides the chunks carried over
        (the writer lock makes `rebuild` the same as no `previous`)."""
        if previous is not None and not isinstance(previous, LocalReader):
            raise TypeError("a local index carries rows over only from a local index")
        return GenerationWriter(self.path, dimension, bm25, previous)

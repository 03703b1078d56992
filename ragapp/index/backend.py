"""The boundary between the pipeline / query path and where an index lives.

`IndexBackend` is what ingest and search use; `LocalIndex` (FAISS + BM25 files in a folder, the
default) implements it, and another store (Milvus) plugs in by implementing the same three small
protocols without touching the pipeline or the query path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Hashable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ragapp.config import IndexConfig
from ragapp.index.folder import check_index_folder
from ragapp.index.lock import write_lock
from ragapp.index.manifest import MANIFEST, Manifest, read_manifest
from ragapp.index.reader import Index
from ragapp.index.writer import GenerationWriter
from ragapp.types import Chunk


@runtime_checkable
class IndexReader(Protocol):
    """A committed, read-only state of an index: what retrieval, reranking and citations read."""

    manifest: Manifest

    def __len__(self) -> int: ...
    def chunk(self, row: int) -> Chunk: ...
    def text_hash(self, row: int) -> str: ...
    def same_text_rows(self, row: int) -> list[int]: ...
    def row_of_text(self, text_hash: str, sentences: tuple[tuple[int, int], ...]) -> int | None: ...
    def dense_top_n(self, query_vector: np.ndarray, n: int) -> list[tuple[int, float]]: ...
    def bm25_top_n(self, terms: Sequence[str], n: int, text: str = "") -> list[tuple[int, float]]: ...
    def term_idf(self, term: str) -> float: ...
    def vector(self, row: int) -> np.ndarray: ...
    def chunk_sentence_vectors(self, row: int) -> np.ndarray: ...


@runtime_checkable
class IndexWriter(Protocol):
    """One ingest's changes, invisible to readers until `commit`."""

    @property
    def rows(self) -> int: ...
    def claim(self, source: str) -> bool: ...
    def has(self, text_hash: str, sentences: tuple[tuple[int, int], ...]) -> bool: ...
    def add(self, chunk: Chunk, text_hash: str, tokens: Sequence[str], vector: np.ndarray | None = None,
            sentence_vectors: np.ndarray | None = None) -> None: ...
    def mark(self) -> Hashable: ...
    def rollback(self, mark) -> None: ...
    def commit(self, manifest: Manifest, drop: Collection[str] = ()) -> Manifest: ...
    def abort(self) -> None: ...
    def __enter__(self) -> IndexWriter: ...
    def __exit__(self, kind, exc, tb) -> None: ...


@runtime_checkable
class IndexBackend(Protocol):
    """Where an index lives: its manifest, a reader of the committed state, a writer and a lock."""

    location: str

    def exists(self) -> bool: ...
    def check_writable(self) -> None: ...
    def stamp(self) -> Hashable | None: ...
    def manifest(self) -> Manifest: ...
    def open(self) -> IndexReader: ...
    def lock(self, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> AbstractContextManager: ...
    def writer(self, dimension: int, bm25: dict, previous: IndexReader | None) -> IndexWriter: ...


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

    def open(self) -> Index:
        """Load the committed generation, every part checked."""
        return Index.open(self.path)

    def lock(self, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> AbstractContextManager:
        """The writer lock (one ingest at a time)."""
        return write_lock(self.path, wait, on_wait)

    def writer(self, dimension: int, bm25: dict, previous: IndexReader | None) -> GenerationWriter:
        """A new generation; `previous` (an Index of this folder) provides the chunks carried over."""
        if previous is not None and not isinstance(previous, Index):
            raise TypeError("a local index carries rows over only from a local index")
        return GenerationWriter(self.path, dimension, bm25, previous)


def open_backend(index: str | Path, config: IndexConfig) -> IndexBackend:
    """The backend `[index]` names for the index folder `index` (a Milvus collection is named after
    the folder, and owned by it, unless `config.collection` names one)."""
    if config.backend == "local":
        return LocalIndex(index)
    from ragapp.index.milvus import MilvusIndex

    derived = not config.collection
    return MilvusIndex(config.uri, config.collection or collection_name(index), config.token_env, config.dense_index,
                       config.timeout_s, config.claim_timeout_s, config.bm25_terms,
                       owner=str(Path(index).resolve()) if derived else "",
                       legacy=_legacy_collection_name(index) if derived else "")


def collection_name(index: str | Path) -> str:
    """The Milvus collection of an index folder: its name in ASCII letters, digits and _, then a hash
    of its full resolved path, so two folders never share one ("a/index" and "b/index" differ)."""
    import hashlib

    path = Path(index).resolve()
    clean = "".join(c if c.isascii() and c.isalnum() else "_" for c in path.name)[:40]
    digest = hashlib.sha256(str(path).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{clean}_{digest}" if clean[:1].isalpha() else f"kb_{clean}_{digest}"


def _legacy_collection_name(index: str | Path) -> str:
    """The name ragapp before 0.2 gave the collection (the folder's last name only), to point at it."""
    import hashlib

    raw = Path(index).resolve().name
    clean = "".join(c if c.isascii() and c.isalnum() else "_" for c in raw)
    if clean == raw and clean[:1].isalpha():
        return clean
    return f"kb_{clean[:40]}_{hashlib.sha256(raw.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"

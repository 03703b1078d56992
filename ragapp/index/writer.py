"""Writing a new generation of a local index, chunk by chunk, made current in one atomic commit."""

from __future__ import annotations

import shutil
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from ragapp.digest import file_sha256
from ragapp.errors import IndexCorruptError, IndexMismatchError, write_failure
from ragapp.index.bm25 import BM25Writer
from ragapp.index.chunkstore import ChunkStoreWriter
from ragapp.index.dense import dense_shape, dense_spool, write_pq
from ragapp.index.folder import check_index_folder, generation_name, generations, highest_generation
from ragapp.index.manifest import MANIFEST, SCHEMA_VERSION, Manifest, read_manifest, write_manifest
from ragapp.index.reader import LocalReader
from ragapp.index.scope import AbortUnlessCommitted
from ragapp.records import Chunk
from ragapp.spool import fsync_dir, fsync_file, npy_spool

Mark = tuple[int, int]


def _previous(path: Path) -> Manifest | None:
    try:
        return read_manifest(path) if (path / MANIFEST).exists() else None
    except (IndexCorruptError, IndexMismatchError):  # `ingest --rebuild` replaces an unreadable index
        return None


class GenerationWriter(AbortUnlessCommitted):
    """Writes a new generation chunk by chunk, straight to disk, and makes it current atomically
    (implements `IndexWriter`).

    Memory does not grow with the text: chunk records, vectors, sentence vectors and BM25 counts
    are appended to their files as they come (what stays in memory is a row pointer per chunk and
    a dedup entry per distinct text); chunks with the same text share their sentence vectors.
    Nothing is visible to readers until `commit` renames the manifest; `abort` (or an exception
    inside `with`) deletes the unfinished generation. Use while holding `write_lock`.
    """

    def __init__(self, path: str | Path, dimension: int, bm25: dict, previous: LocalReader | None = None) -> None:
        self.path = Path(path)
        check_index_folder(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.previous_manifest = _previous(self.path)
        self.previous = previous
        self.generation = max(self.previous_manifest.generation if self.previous_manifest else 0,
                              highest_generation(self.path)) + 1
        self.directory = generation_name(self.generation)
        self.folder = self.path / self.directory
        self.dimension = dimension
        self._done = self._made = False
        # (text hash, sentence spans) → (row, first sentence vector, sentence count) of the first such chunk
        self._texts: dict[tuple[str, int], tuple[int, int, int]] = {}
        try:
            self.folder.mkdir()
            self._made = True
            self.chunks = ChunkStoreWriter(self.folder)
            self.dense = dense_spool(self.folder, dimension)
            self.sentences = npy_spool(self.folder / "sentences.npy", np.float16, dimension)
            self.bm25 = BM25Writer(self.folder, previous.bm25.vocab if previous else None, bm25["k1"], bm25["b"], bm25["epsilon"])
        except OSError as exc:
            self._fail(exc)

    @property
    def rows(self) -> int:
        """Chunks written so far."""
        return self.bm25.rows

    def claim(self, source: str, sha256: str = "") -> bool:
        """Always True: the writer lock makes this the only writer."""
        return True

    def has(self, text_hash: str, sentences: tuple[tuple[int, int], ...]) -> bool:
        """True if a chunk with this text and these sentences is already written (its vectors can be shared)."""
        return (text_hash, hash(sentences)) in self._texts

    def add(self, chunk: Chunk, text_hash: str, tokens: Sequence[str], vector: np.ndarray | None = None,
            sentence_vectors: np.ndarray | None = None) -> None:
        """Append one chunk. Vectors may be left out when `has` says its text was added before."""
        try:
            self._add(chunk, text_hash, self.bm25.term_row(tokens), vector, sentence_vectors)
        except OSError as exc:
            self._fail(exc)

    def _add(self, chunk: Chunk, text_hash: str, terms: tuple[np.ndarray, np.ndarray], vector: np.ndarray | None,
             sentence_vectors: np.ndarray | None) -> None:
        key = (text_hash, hash(chunk.sentences))
        shared = self._texts.get(key)
        if shared is not None:
            row, first, _ = shared
            vector = self.dense.read(row, row + 1)[0]
        else:
            if vector is None or sentence_vectors is None or len(sentence_vectors) != len(chunk.sentences):
                raise ValueError(f"chunk {chunk.id}: vectors missing or not one per sentence")
            first = self.sentences.rows
            self.sentences.append(sentence_vectors)
            self._texts[key] = (self.rows, first, len(sentence_vectors))
        self.dense.append(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        self.chunks.add(chunk, text_hash, first)
        self.bm25.add(*terms)

    def mark(self) -> Mark:
        """A point to roll back to (see `rollback`)."""
        try:
            self.bm25.flush()
            self.chunks.mark()
        except OSError as exc:
            self._fail(exc)
        return self.rows, self.sentences.rows

    def rollback(self, mark: Mark) -> None:
        """Forget every chunk added after `mark` (a file that failed half way through)."""
        rows, sentence_rows = mark
        try:
            self.bm25.rollback(rows)
            self.dense.truncate(rows)
            self.sentences.truncate(sentence_rows)
            self.chunks.rollback(rows)
            self._texts = {h: v for h, v in self._texts.items() if v[0] < rows}
        except OSError as exc:
            self._fail(exc)

    def commit(self, manifest: Manifest, drop: Collection[str] = ()) -> Manifest:
        """Carry over the previous generation's chunks except those of the sources in `drop`, finish
        every file, fsync, and make this generation current by renaming the manifest."""
        try:
            self._carry_over(set(drop))
            names = self._finish_files()
            self._stamp(manifest, names)
            write_manifest(self.path, manifest)
        except OSError as exc:
            self._fail(exc)
        self._done = True
        # Keep the previous generation for readers that are opening it right now; drop older ones.
        keep = {self.directory, self.previous_manifest.directory if self.previous_manifest else ""}
        for old in generations(self.path):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
        return manifest

    def _carry_over(self, drop: set[str]) -> None:
        old = self.previous
        if old is None:
            return
        old.verify_all()  # large parts are checked only by size at open: check them before copying from them
        for row, chunk, h in old.rows():
            if chunk.source in drop:
                continue
            if self.has(h, chunk.sentences):
                self._add(chunk, h, old.term_row(row), None, None)
            else:
                self._add(chunk, h, old.term_row(row), old.vector(row), old.chunk_sentence_vectors(row))

    def _finish_files(self) -> list[str]:
        names = [*self.chunks.finish(), "dense.faiss", "sentences.npy", *self.bm25.finish()]
        self.dense.finish()
        self.sentences.finish()
        self.dense_index = dense_shape(self.rows, self.dimension)
        if self.dense_index:
            names += write_pq(self.folder, self.dimension, self.rows, self.dense_index)
        for name in names:
            fsync_file(self.folder / name)
        fsync_dir(self.folder)
        return names

    def _stamp(self, manifest: Manifest, names: list[str]) -> None:
        from ragapp.version import __version__

        now = time.time()
        manifest.schema_version = SCHEMA_VERSION
        manifest.generation = self.generation
        manifest.directory = self.directory
        manifest.ragapp_version = __version__
        manifest.created_at = self.previous_manifest.created_at if self.previous_manifest else now
        manifest.updated_at = now
        manifest.chunks = self.rows
        manifest.sentences = self.sentences.rows
        manifest.dense = self.dense_index
        manifest.checksums = {name: file_sha256(self.folder / name) for name in names}

    def abort(self) -> None:
        """Delete the unfinished generation; the current one stays as it was."""
        self._done = True
        for part in ("chunks", "dense", "sentences", "bm25"):
            if getattr(self, part, None) is not None:
                getattr(self, part).close()
        landed = _previous(self.path)
        if (landed is None or landed.directory != self.directory) and self._made:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _fail(self, exc: OSError) -> None:
        """A failed write (disk full, permissions): remove what was written and say so."""
        self.abort()
        raise write_failure("the index", self.path, exc) from exc

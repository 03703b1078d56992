"""Reading a committed generation: chunks, vectors, sentence vectors and BM25, every part checked.

Opening costs the same at a thousand chunks and at a million: chunk records, vectors and BM25
weights are memory-mapped and read as they are asked for; what is read is checked then (a damaged
record is IndexCorruptError at that point). Parts up to VERIFY_MAX_BYTES are checked against their
checksums at open; larger ones by their exact sizes at open and by their checksums before an ingest
copies anything out of them (`verify_all`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ragapp.digest import file_sha256
from ragapp.errors import IndexCorruptError
from ragapp.index.bm25 import BM25Index
from ragapp.index.chunkstore import ChunkStore
from ragapp.index.dense import DenseVectors
from ragapp.index.manifest import Manifest, is_regular, read_manifest, rebuild_hint
from ragapp.records import Chunk
from ragapp.spool import load_npy

_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, RecursionError, AttributeError, IndexError)
VERIFY_MAX_BYTES = 64 << 20  # parts up to this size are checksummed at every open


def _check_parts(gen: Path, manifest: Manifest, verify: bool, hint: str, limit: int = VERIFY_MAX_BYTES) -> None:
    if not gen.is_dir() or gen.is_symlink():
        raise IndexCorruptError(f"{gen}: generation folder missing; {hint}")
    for name, digest in manifest.checksums.items():
        part = gen / name
        if not part.exists():
            raise IndexCorruptError(f"{part}: index file missing; {hint}")
        if not is_regular(part):
            raise IndexCorruptError(f"{part}: not a regular file; {hint}")
        if verify and part.stat().st_size <= limit and file_sha256(part) != digest:
            raise IndexCorruptError(f"{part}: checksum mismatch (truncated or altered); {hint}")


def _legacy_starts(store: ChunkStore) -> np.ndarray:
    """Schema 1: sentence vectors in chunk order, one per chunk sentence."""
    counts = np.array([len(store.record(r)[0].sentences) for r in range(len(store))], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts


class LocalReader:
    """A loaded, read-only generation of a local index (implements `IndexReader`)."""

    def __init__(self, path: Path, manifest: Manifest, store: ChunkStore, dense: DenseVectors,
                 sentence_vectors: np.ndarray, bm25: BM25Index) -> None:
        self.path = path
        self.manifest = manifest
        self.store = store
        self.dense = dense
        self.sentence_vectors = sentence_vectors  # memory-mapped: pages load as the reranker reads them
        self.bm25 = bm25
        self._starts = _legacy_starts(store) if manifest.schema_version == 1 else None
        self._rows_by_text: dict[tuple[str, int], int] | None = None

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> LocalReader:
        """Open the committed generation; with `verify`, check parts up to VERIFY_MAX_BYTES against
        their manifest checksums (and every part's size and structure always)."""
        path = Path(path)
        manifest = read_manifest(path)
        gen = path / manifest.directory
        hint = rebuild_hint(path)
        _check_parts(gen, manifest, verify, hint)
        try:
            store = ChunkStore(gen, manifest.chunks, indexed=manifest.schema_version >= 4)
            dimension = manifest.embedding["dimension"]
            dense = DenseVectors(gen, dimension, manifest.chunks, manifest.dense or None)
            sentence_vectors = load_npy(gen / "sentences.npy", np.float16, ndim=2, mmap=True)
            if sentence_vectors.shape != (manifest.sentences, dimension):
                raise ValueError(f"sentences.npy holds {sentence_vectors.shape}")
            b = manifest.bm25
            bm25 = BM25Index.load(gen, b["k1"], b["b"], b["epsilon"], weights=manifest.schema_version >= 3)
            index = cls(path, manifest, store, dense, sentence_vectors, bm25)
        except _LOAD_ERRORS as exc:
            raise IndexCorruptError(f"{gen}: cannot load index ({exc}); {hint}") from exc
        if not (len(store) == len(dense) == len(bm25) == manifest.chunks):
            raise IndexCorruptError(f"{gen}: parts disagree (chunks {len(store)}, vectors {len(dense)}, bm25 {len(bm25)}); {hint}")
        return index

    def verify_all(self) -> None:
        """Check every part against its checksum (before an ingest copies rows out of this index)."""
        _check_parts(self.path / self.manifest.directory, self.manifest, True, rebuild_hint(self.path), limit=1 << 62)

    def _corrupt(self, exc: Exception) -> IndexCorruptError:
        return IndexCorruptError(f"{self.path / self.manifest.directory}: cannot load index ({exc}); {rebuild_hint(self.path)}")

    def __len__(self) -> int:
        return len(self.store)

    def _record(self, row: int) -> tuple[Chunk, int]:
        try:
            chunk, first = self.store.record(row)
        except _LOAD_ERRORS as exc:
            raise self._corrupt(exc) from exc
        if self._starts is not None:
            first = int(self._starts[row])
        if first < 0 or first + len(chunk.sentences) > len(self.sentence_vectors):
            raise self._corrupt(ValueError(f"chunk {row}: sentence vectors {first}+{len(chunk.sentences)} out of range"))
        return chunk, first

    def chunk(self, row: int) -> Chunk:
        """The chunk at `row`."""
        return self._record(row)[0]

    def text_hash(self, row: int) -> str:
        """Content hash of the chunk at `row` (equal texts, equal hashes)."""
        return self.store.text_hash(row)

    def same_text_rows(self, row: int) -> list[int]:
        """Every row whose chunk text equals that of `row` (copies of a file), `row` first."""
        return self.store.same_text_rows(row)

    def row_of_text(self, text_hash: str, sentences: tuple[tuple[int, int], ...]) -> int | None:
        """A row holding this text cut into these sentences (its vectors can be reused), or None."""
        if self._rows_by_text is None:
            self._rows_by_text = {}
            for row, chunk, h in self.rows():
                self._rows_by_text.setdefault((h, hash(chunk.sentences)), row)
        return self._rows_by_text.get((text_hash, hash(sentences)))

    def dense_top_n(self, query_vector: np.ndarray, n: int) -> list[tuple[int, float]]:
        """Best `n` chunks by inner product (cosine on normalised vectors), as (row, score)."""
        try:
            return self.dense.top_n(query_vector, n)
        except _LOAD_ERRORS as exc:
            raise self._corrupt(exc) from exc

    def bm25_top_n(self, terms: Sequence[str], n: int, text: str = "") -> list[tuple[int, float]]:
        """Best `n` chunks by BM25 with a positive score, as (row, score) (`text`, the query as
        written, is for backends that tokenise themselves)."""
        try:
            return self.bm25.top_n(terms, n)
        except _LOAD_ERRORS as exc:
            raise self._corrupt(exc) from exc

    def term_idf(self, term: str) -> float:
        """BM25 idf of a term (0 for a term the index has never seen)."""
        return self.bm25.term_idf(term)

    def chunk_sentence_vectors(self, row: int) -> np.ndarray:
        """Sentence vectors of one chunk (float32)."""
        chunk, first = self._record(row)
        return self.sentence_vectors[first : first + len(chunk.sentences)].astype(np.float32)

    def vector(self, row: int) -> np.ndarray:
        """The dense vector of one chunk."""
        return self.dense.vector(row)

    def term_row(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """BM25 term ids (into this index's vocabulary) and counts of one chunk (the counts are read,
        and checked, on first use: only an ingest that carries rows over needs them)."""
        try:
            counts = self.bm25.counts
        except _LOAD_ERRORS as exc:
            raise self._corrupt(exc) from exc
        a, b = counts.indptr[row], counts.indptr[row + 1]
        return counts.indices[a:b], counts.data[a:b]

    def rows(self) -> Iterator[tuple[int, Chunk, str]]:
        """Every (row, chunk, text hash), in order."""
        return ((row, self.chunk(row), self.store.text_hash(row)) for row in range(len(self)))

"""Reading a committed generation: chunks, FAISS, sentence vectors and BM25, every part checked."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ragapp.bm25 import BM25Index
from ragapp.digest import file_sha256
from ragapp.errors import IndexCorruptError
from ragapp.index.dense import read_flat_ip
from ragapp.index.manifest import Manifest, is_regular, read_manifest, rebuild_hint
from ragapp.spool import load_npy
from ragapp.types import Chunk

_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, RecursionError, AttributeError)


def _check_parts(gen: Path, manifest: Manifest, verify: bool, hint: str) -> None:
    if not gen.is_dir() or gen.is_symlink():
        raise IndexCorruptError(f"{gen}: generation folder missing; {hint}")
    for name, digest in manifest.checksums.items():
        part = gen / name
        if not part.exists():
            raise IndexCorruptError(f"{part}: index file missing; {hint}")
        if not is_regular(part):
            raise IndexCorruptError(f"{part}: not a regular file; {hint}")
        if verify and file_sha256(part) != digest:
            raise IndexCorruptError(f"{part}: checksum mismatch (truncated or altered); {hint}")


def _read_chunks(file: Path, schema_version: int) -> tuple[list[Chunk], list[str], np.ndarray]:
    """Chunks, their text hashes, and the row of each chunk's first sentence vector."""
    chunks, hashes, starts = [], [], []
    with open(file, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            hashes.append(d.pop("hash"))
            starts.append(d.pop("sv", -1))
            d["sentences"] = tuple(tuple(s) for s in d["sentences"])
            chunks.append(Chunk(**d))
    if schema_version == 1:  # sentence vectors in chunk order, one per chunk sentence
        counts = np.array([len(c.sentences) for c in chunks], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if chunks else counts
    return chunks, hashes, np.asarray(starts, dtype=np.int64)


class Index:
    """A loaded, read-only generation of a local index (implements `IndexReader`)."""

    def __init__(self, path: Path, manifest: Manifest, chunks: list[Chunk], hashes: list[str], dense,
                 sentence_vectors: np.ndarray, sentence_starts: np.ndarray, bm25: BM25Index) -> None:
        self.path = path
        self.manifest = manifest
        self.chunks = chunks
        self.hashes = hashes
        self.dense = dense
        self.sentence_vectors = sentence_vectors  # read through a memory map: pages load as the reranker reads them
        self.sentence_starts = sentence_starts  # row of each chunk's first sentence vector
        self.bm25 = bm25
        self._rows_by_hash: dict[str, list[int]] | None = None
        self._rows_by_text: dict[tuple[str, int], int] | None = None

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> Index:
        """Load the committed generation; with `verify`, check every part against its manifest checksum."""
        path = Path(path)
        manifest = read_manifest(path)
        gen = path / manifest.directory
        hint = rebuild_hint(path)
        _check_parts(gen, manifest, verify, hint)
        try:
            chunks, hashes, starts = _read_chunks(gen / "chunks.jsonl", manifest.schema_version)
            dimension = manifest.embedding["dimension"]
            dense = read_flat_ip(gen / "dense.faiss", dimension, manifest.chunks)
            sentence_vectors = load_npy(gen / "sentences.npy", np.float16, ndim=2, mmap=True)
            if sentence_vectors.shape != (manifest.sentences, dimension):
                raise ValueError(f"sentences.npy holds {sentence_vectors.shape}")
            b = manifest.bm25
            bm25 = BM25Index.load(gen, b["k1"], b["b"], b["epsilon"], weights=manifest.schema_version >= 3)
        except _LOAD_ERRORS as exc:
            raise IndexCorruptError(f"{gen}: cannot load index ({exc}); {hint}") from exc
        if not (len(chunks) == dense.ntotal == len(bm25) == manifest.chunks):
            raise IndexCorruptError(f"{gen}: parts disagree (chunks {len(chunks)}, vectors {dense.ntotal}, bm25 {len(bm25)}); {hint}")
        counts = np.array([len(c.sentences) for c in chunks], dtype=np.int64)
        if len(chunks) and (starts.min() < 0 or (starts + counts).max() > len(sentence_vectors)):
            raise IndexCorruptError(f"{gen}: sentence vectors do not match chunks; {hint}")
        return cls(path, manifest, chunks, hashes, dense, sentence_vectors, starts, bm25)

    def __len__(self) -> int:
        return len(self.chunks)

    def chunk(self, row: int) -> Chunk:
        """The chunk at `row`."""
        return self.chunks[row]

    def text_hash(self, row: int) -> str:
        """Content hash of the chunk at `row` (equal texts, equal hashes)."""
        return self.hashes[row]

    def same_text_rows(self, row: int) -> list[int]:
        """Every row whose chunk text equals that of `row` (copies of a file), `row` first."""
        if self._rows_by_hash is None:
            groups: dict[str, list[int]] = {}
            for i, h in enumerate(self.hashes):
                groups.setdefault(h, []).append(i)
            self._rows_by_hash = {h: rows for h, rows in groups.items() if len(rows) > 1}
        others = self._rows_by_hash.get(self.hashes[row], [])
        return [row] + [r for r in others if r != row]

    def row_of_text(self, text_hash: str, sentences: tuple[tuple[int, int], ...]) -> int | None:
        """A row holding this text cut into these sentences (its vectors can be reused), or None."""
        if self._rows_by_text is None:
            self._rows_by_text = {}
            for row, (h, chunk) in enumerate(zip(self.hashes, self.chunks)):
                self._rows_by_text.setdefault((h, hash(chunk.sentences)), row)
        return self._rows_by_text.get((text_hash, hash(sentences)))

    def dense_top_n(self, query_vector: np.ndarray, n: int) -> list[tuple[int, float]]:
        """Best `n` chunks by inner product (cosine on normalised vectors), as (row, score)."""
        if len(self) == 0:
            return []
        scores, ids = self.dense.search(np.ascontiguousarray(query_vector.reshape(1, -1), dtype=np.float32), min(n, len(self)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def bm25_top_n(self, terms: Sequence[str], n: int) -> list[tuple[int, float]]:
        """Best `n` chunks by BM25 with a positive score, as (row, score)."""
        return self.bm25.top_n(terms, n)

    def term_idf(self, term: str) -> float:
        """BM25 idf of a term (0 for a term the index has never seen)."""
        return self.bm25.term_idf(term)

    def chunk_sentence_vectors(self, row: int) -> np.ndarray:
        """Sentence vectors of one chunk (float32)."""
        a = self.sentence_starts[row]
        return self.sentence_vectors[a : a + len(self.chunks[row].sentences)].astype(np.float32)

    def vector(self, row: int) -> np.ndarray:
        """The dense vector of one chunk."""
        return self.dense.reconstruct(int(row))

    def term_row(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """BM25 term ids (into this index's vocabulary) and counts of one chunk (the counts are read,
        and checked, on first use: only an ingest that carries rows over needs them)."""
        try:
            counts = self.bm25.counts
        except _LOAD_ERRORS as exc:
            raise IndexCorruptError(f"{self.path / self.manifest.directory}: cannot load index ({exc}); "
                                    f"{rebuild_hint(self.path)}") from exc
        a, b = counts.indptr[row], counts.indptr[row + 1]
        return counts.indices[a:b], counts.data[a:b]

    def rows(self) -> Iterator[tuple[int, Chunk, str]]:
        """Every (row, chunk, text hash), in order."""
        return ((i, c, h) for i, (c, h) in enumerate(zip(self.chunks, self.hashes)))

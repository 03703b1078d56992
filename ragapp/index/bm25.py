"""BM25 served from a sparse matrix: rank-bm25's BM25Okapi scores, vectorised, and the owner of the
BM25 files in an index generation.

rank-bm25 scores every document in a Python loop (docs/benchmarks.md, "Speed"). Here the
per-(term, document) weights are computed once, at ingest, into a CSC matrix saved beside the
counts, so opening an index memory-maps them (as bm25s does: open time and memory do not grow with
the corpus) and a query adds up one column slice per term: the same numbers (tests compare against
rank-bm25), summed by a compiled kernel (ragapp.index.bm25_topk). Persisted as plain .npy arrays and a JSON
vocabulary (no pickle).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ragapp.spool import Spool, load_npy, npy_spool

if TYPE_CHECKING:  # scipy loads only where a matrix is built: a query reads the plain arrays
    from scipy import sparse

# Up to this many rows a query's scores are summed by numpy's bincount (well under a millisecond) and the
# compiled kernel is not loaded: numba's import and cached kernel cost a cold query about 0.3 s.
_NUMPY_ROWS = 1 << 16

# Counts (documents × terms, CSR) and vocabulary: what a later ingest carries rows over from.
COUNT_FILES = ("bm25_data.npy", "bm25_indices.npy", "bm25_indptr.npy", "bm25_vocab.json")
# Weights (terms × documents, CSC) and idf, computed at ingest since index schema 3.
WEIGHT_FILES = ("bm25_weights.npy", "bm25_rows.npy", "bm25_colptr.npy", "bm25_idf.npy")
FILES = COUNT_FILES + WEIGHT_FILES
_FLUSH = 1 << 20  # term entries buffered before they are appended to disk
_STEP = 1 << 24  # term entries relabelled at a time when unused terms are dropped


def term_counts(docs: Sequence[Sequence[str]], vocab: dict[str, int]) -> sparse.csr_matrix:
    from scipy import sparse

    """Documents × terms count matrix; new terms are appended to `vocab` in place."""
    rows = [term_row(tokens, vocab) for tokens in docs]
    indptr = np.concatenate([[0], np.cumsum([len(ids) for ids, _ in rows])]).astype(np.int64)
    indices = np.concatenate([ids for ids, _ in rows]) if rows else np.zeros(0, np.int32)
    data = np.concatenate([c for _, c in rows]) if rows else np.zeros(0, np.int32)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(docs), len(vocab)))


def term_row(tokens: Sequence[str], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Term ids and counts of one tokenised document (new terms join `vocab`)."""
    counts = Counter(tokens)
    ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in counts), dtype=np.int32, count=len(counts))
    return ids, np.fromiter(counts.values(), dtype=np.int32, count=len(counts))


def bm25_weights(counts: sparse.csr_matrix, k1: float, b: float, epsilon: float) -> tuple[sparse.csc_matrix, np.ndarray]:
    from scipy import sparse

    """Per-(document, term) BM25Okapi weights as a CSC matrix, and the idf of every term."""
    n_docs = counts.shape[0]
    if n_docs == 0 or counts.nnz == 0:
        return sparse.csc_matrix(counts.shape, dtype=np.float64), np.zeros(counts.shape[1])
    doc_len = np.asarray(counts.sum(axis=1)).ravel().astype(np.float64)
    avgdl = doc_len.sum() / n_docs
    df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
    idf = np.log(n_docs - df + 0.5) - np.log(df + 0.5)
    # rank-bm25: the average is over every vocabulary term; negative idfs become epsilon * average.
    idf = np.where(idf < 0, epsilon * idf.mean(), idf)
    tf = counts.data.astype(np.float64)
    rows = np.repeat(np.arange(n_docs), np.diff(counts.indptr))
    norm = k1 * (1 - b + b * doc_len[rows] / avgdl)
    data = idf[counts.indices] * tf * (k1 + 1) / (tf + norm)
    return sparse.csr_matrix((data, counts.indices, counts.indptr), shape=counts.shape).tocsc(), idf


class BM25Index:
    """BM25Okapi (k1, b, epsilon as in rank-bm25) over precomputed weights; the counts they came
    from are read only when asked for (a later ingest carries rows over from them)."""

    def __init__(self, weights: sparse.csc_matrix | tuple[np.ndarray, np.ndarray, np.ndarray, int], idf: np.ndarray,
                 vocab: dict[str, int], counts: sparse.csr_matrix | Path) -> None:
        if not isinstance(weights, tuple):  # a scipy.sparse.csc_matrix
            weights = (weights.indptr, weights.indices, weights.data, weights.shape[0])
        colptr, rows, data, docs = weights
        self._docs: int = docs
        # One dtype each, so the kernel is compiled once (the saved arrays already have them: no copy).
        self._colptr, self._rows, self._weights = (x if x.dtype == t else x.astype(t) for x, t in
                                                   ((colptr, np.int64), (rows, np.int32), (data, np.float64)))
        self.idf = idf
        self.vocab = vocab
        self._counts = counts

    @classmethod
    def build(cls, docs: Sequence[Sequence[str]], k1: float = 0.9, b: float = 0.4, epsilon: float = 0.25) -> BM25Index:
        """Index tokenised documents in memory."""
        vocab: dict[str, int] = {}
        counts = term_counts(docs, vocab)
        return cls(*bm25_weights(counts, k1, b, epsilon), vocab, counts)

    def __len__(self) -> int:
        return self._docs

    @property
    def counts(self) -> sparse.csr_matrix:
        """Documents × terms counts (read from the index folder on first use)."""
        if isinstance(self._counts, Path):
            self._counts = _load_counts(self._counts, len(self.vocab))
            if self._counts.shape[0] != len(self):
                raise ValueError("BM25 counts and weights disagree in rows")
        return self._counts

    def scores(self, query: Sequence[str]) -> np.ndarray:
        """Score of every document (repeated query terms count again, as in rank-bm25)."""
        counts = Counter(t for t in query if t in self.vocab)
        if not counts or len(self) == 0:
            return np.zeros(len(self), dtype=np.float64)
        rows, weights = [], []
        for term, mult in counts.items():
            a, b = self._colptr[self.vocab[term]], self._colptr[self.vocab[term] + 1]
            rows.append(self._rows[a:b])
            weights.append(self._weights[a:b] * mult)
        found = np.concatenate(rows)
        if len(found) and (found.min() < 0 or found.max() >= len(self)):  # files read lazily: checked as used
            raise ValueError("a BM25 column names a row outside the index")
        return np.bincount(found, weights=np.concatenate(weights), minlength=len(self))

    def term_idf(self, term: str) -> float:
        """IDF of a term (0 for a term the index has never seen)."""
        i = self.vocab.get(term)
        return float(self.idf[i]) if i is not None else 0.0

    def top_n(self, query: Sequence[str], n: int) -> list[tuple[int, float]]:
        """Best `n` documents with a positive score, as (row, score), best first (equal scores: lower row first)."""
        counts = Counter(t for t in query if t in self.vocab)
        if not counts or len(self) == 0 or n <= 0:
            return []
        if len(self) <= _NUMPY_ROWS:
            scores = self.scores(query)
            rows = np.flatnonzero(scores > 0)
            order = np.lexsort((rows, -scores[rows]))[:n]
            return [(int(rows[i]), float(scores[rows[i]])) for i in order]
        from ragapp.index.bm25_topk import top_n_columns

        cols = np.fromiter((self.vocab[t] for t in counts), dtype=np.int64, count=len(counts))
        mults = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        rows, scores, ok = top_n_columns(self._colptr, self._rows, self._weights, cols, mults, len(self), n)
        if not ok:  # files read lazily: checked as used
            raise ValueError("a BM25 column names a row outside the index or out of order")
        order = np.lexsort((rows, -scores))
        return [(int(rows[i]), float(scores[i])) for i in order]

    @classmethod
    def load(cls, folder: Path, k1: float, b: float, epsilon: float, weights: bool = True) -> BM25Index:
        """Read what BM25Writer wrote; without `weights` (indexes of schema 1-2) they are computed
        from the counts. Every array is checked before use (an index folder is untrusted input):
        dtypes, sizes against the file lengths, and every index within bounds."""
        terms = json.loads((folder / "bm25_vocab.json").read_text(encoding="utf-8"))
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise ValueError("bm25_vocab.json is not a list of terms")
        vocab = {t: i for i, t in enumerate(terms)}
        if not weights:
            counts = _load_counts(folder, len(terms))
            return cls(*bm25_weights(counts, k1, b, epsilon), vocab, counts)
        colptr = load_npy(folder / "bm25_colptr.npy", np.int64)
        data = load_npy(folder / "bm25_weights.npy", np.float64, mmap=True)
        rows = load_npy(folder / "bm25_rows.npy", np.int32, mmap=True)
        idf = load_npy(folder / "bm25_idf.npy", np.float64)
        n_docs = len(load_npy(folder / "bm25_indptr.npy", np.int64, mmap=True)) - 1
        if len(colptr) != len(terms) + 1 or len(idf) != len(terms) or n_docs < 0 or colptr[-1] != len(data) or len(data) != len(rows):
            raise ValueError("BM25 weight arrays disagree in length")
        if len(colptr) and (colptr[0] != 0 or np.any(np.diff(colptr) < 0)):
            raise ValueError("BM25 column pointers are not ascending")
        return cls((colptr, rows, data, n_docs), idf, vocab, folder)


def _load_counts(folder: Path, n_terms: int) -> sparse.csr_matrix:
    from scipy import sparse

    indptr = load_npy(folder / "bm25_indptr.npy", np.int64)
    data = load_npy(folder / "bm25_data.npy", np.int32)
    indices = load_npy(folder / "bm25_indices.npy", np.int32)
    if len(indptr) == 0 or indptr[0] != 0 or indptr[-1] != len(data) or len(data) != len(indices):
        raise ValueError("BM25 arrays disagree in length")
    counts = sparse.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, n_terms))
    counts.check_format(full_check=True)
    return counts


class BM25Writer:
    """Streams a documents × terms count matrix into a generation folder, a row per chunk, and
    finishes it with its vocabulary and weights (the only writer of the BM25 files)."""

    def __init__(self, folder: Path, vocab: dict[str, int] | None, k1: float, b: float, epsilon: float) -> None:
        self.folder = folder
        self.vocab = dict(vocab or {})
        self.params = (k1, b, epsilon)
        self.data: Spool = npy_spool(folder / "bm25_data.npy", np.int32)
        self.indices: Spool = npy_spool(folder / "bm25_indices.npy", np.int32)
        self.indptr: list[int] = [0]
        self._terms: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._pending = 0

    @property
    def rows(self) -> int:
        """Documents added so far."""
        return len(self.indptr) - 1

    def term_row(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Term ids and counts of one tokenised chunk (new terms join the vocabulary)."""
        return term_row(tokens, self.vocab)

    def add(self, ids: np.ndarray, counts: np.ndarray) -> None:
        """Append one document's row."""
        self._terms.append(ids)
        self._counts.append(counts)
        self._pending += len(ids)
        self.indptr.append(self.indptr[-1] + len(ids))
        if self._pending >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        """Append what is buffered to the files."""
        if self._terms:
            self.indices.append(np.concatenate(self._terms))
            self.data.append(np.concatenate(self._counts))
        self._terms, self._counts, self._pending = [], [], 0

    def rollback(self, rows: int) -> None:
        """Forget every row from `rows` on."""
        self.flush()
        del self.indptr[rows + 1 :]
        self.indices.truncate(self.indptr[-1])
        self.data.truncate(self.indptr[-1])

    def finish(self) -> list[str]:
        """Write every BM25 file (unused terms dropped, weights computed); returns their names."""
        self.flush()
        self.data.finish()
        self.indices.finish()
        terms = self._prune_vocabulary()
        np.save(self.folder / "bm25_indptr.npy", np.asarray(self.indptr, dtype=np.int64))
        (self.folder / "bm25_vocab.json").write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
        counts = _load_counts(self.folder, len(terms))
        weights, idf = bm25_weights(counts, *self.params)
        np.save(self.folder / "bm25_weights.npy", weights.data.astype(np.float64))
        np.save(self.folder / "bm25_rows.npy", weights.indices.astype(np.int32))
        np.save(self.folder / "bm25_colptr.npy", weights.indptr.astype(np.int64))
        np.save(self.folder / "bm25_idf.npy", idf.astype(np.float64))
        return list(FILES)

    def close(self) -> None:
        """Close the files without finishing (an aborted write)."""
        self.data.close()
        self.indices.close()

    def _prune_vocabulary(self) -> list[str]:
        """Drop terms no chunk uses any more (BM25 averages idf over the vocabulary, as rank-bm25 does)."""
        indices = np.load(self.folder / "bm25_indices.npy", mmap_mode="r+")
        used = np.zeros(len(self.vocab), dtype=bool)
        step = _STEP
        for a in range(0, len(indices), step):
            used[indices[a : a + step]] = True
        terms = [""] * len(self.vocab)
        for term, i in self.vocab.items():
            terms[i] = term
        if not used.all():
            remap = np.cumsum(used, dtype=np.int64).astype(np.int32) - 1
            for a in range(0, len(indices), step):
                indices[a : a + step] = remap[indices[a : a + step]]
            indices.flush()
            terms = [t for t, u in zip(terms, used) if u]
        del indices
        return terms

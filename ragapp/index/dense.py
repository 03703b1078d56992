"""Dense vectors of a generation (the only reader and writer of their files): dense.faiss, a FAISS
IndexFlatIP written row by row and read back only after ragapp has validated it (FAISS's own parser
never sees an untrusted file), searched straight from a memory map; and, for large indexes, 4-bit
product-quantisation codes of every vector (pq_*.npy: the codebooks and the codes, plain arrays ragapp
hands to FAISS's fast-scan kernel) whose best candidates are re-scored exactly against the stored
vectors."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ragapp.spool import Spool, load_npy, npy_spool

FILE = "dense.faiss"
PQ_FILES = ("pq_centroids.npy", "pq_codes.npy")
# What indexes of 200,000+ chunks held before the PQ codes: still accepted in a manifest, searched exactly.
IVF_FILES = ("ivf_centroids.npy", "ivf_offsets.npy", "ivf_rows.npy", "ivf_vectors.npy")
# From this many chunks an index gets PQ codes: their fast scan plus an exact re-score of the best
# candidates is a tenth of an exact scan's time at a million chunks, with nearly the same results
# (docs/benchmarks.md, "Dense search: PQ codes + exact re-score"; python bench/scale.py recall).
PQ_MIN_ROWS = 200_000
PQ_BITS = 4  # FAISS's fast-scan kernel (SIMD lookup tables in registers) is for 4-bit codes
PQ_TRAIN_ROWS = 1 << 16  # codebook training sample
# Candidates the codes propose for exact re-scoring: this many per result asked for, at least PQ_RESCORE_MIN.
PQ_RESCORE = 40
PQ_RESCORE_MIN = 1000
_ENCODE_ROWS = 1 << 16  # vectors encoded per step when the codes are written


def _header(dimension: int) -> Callable[[int], bytes]:
    """Header of a serialised faiss IndexFlatIP holding `rows` vectors: faiss's own header for an
    empty index with its vector count and its float count filled in."""
    import faiss

    empty = bytearray(faiss.serialize_index(faiss.IndexFlatIP(dimension)).tobytes())

    def header(rows: int) -> bytes:
        head = bytearray(empty)
        head[8:16] = struct.pack("<q", rows)
        head[-8:] = struct.pack("<Q", rows * dimension)
        return bytes(head)
    return header


def dense_spool(folder: Path, dimension: int) -> Spool:
    """A spool that becomes `folder`/dense.faiss, one float32 vector per row."""
    return Spool(folder / FILE, np.float32, dimension, _header(dimension))


def _mapped_floats(path: Path, dimension: int, rows: int) -> np.ndarray:
    """The vectors of a dense.faiss ragapp wrote, memory-mapped, after checking the header is exactly
    the one ragapp writes for `rows` vectors of `dimension` and the file exactly that long (a crafted
    file, any other index type or sizes that promise terabytes, is a ValueError)."""
    expected = _header(dimension)(rows)
    size = os.lstat(path).st_size
    if size != len(expected) + 4 * rows * dimension:
        raise ValueError(f"{FILE} is {size} bytes, not the {len(expected) + 4 * rows * dimension} of {rows} vectors")
    with open(path, "rb") as f:
        if f.read(len(expected)) != expected:
            raise ValueError(f"{FILE} does not start with ragapp's IndexFlatIP header")
    if not rows:
        return np.zeros((0, dimension), np.float32)
    return np.memmap(path, dtype="<f4", mode="r", offset=len(expected), shape=(rows, dimension))


def _top(scores: np.ndarray, rows: np.ndarray, n: int) -> list[tuple[int, float]]:
    if len(scores) > n:
        keep = np.argpartition(-scores, n - 1)[:n]
        scores, rows = scores[keep], rows[keep]
    order = np.argsort(-scores, kind="stable")
    return [(int(rows[i]), float(scores[i])) for i in order]


class DenseVectors:
    """Inner-product search over a generation's vectors: exact (FAISS's kernel over the memory map) or,
    when the generation has PQ codes, the codes' best candidates re-scored exactly."""

    def __init__(self, folder: Path, dimension: int, rows: int, shape: dict | None = None) -> None:
        self.vectors = _mapped_floats(folder / FILE, dimension, rows)
        shape = shape or {}
        self.pq = _PQCodes(folder, dimension, rows, shape["m"], shape["nbits"]) if shape.get("type") == "pq" else None

    def __len__(self) -> int:
        return len(self.vectors)

    def top_n(self, query: np.ndarray, n: int) -> list[tuple[int, float]]:
        """Best `n` rows by inner product, as (row, score)."""
        import faiss

        if len(self) == 0:
            return []
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if self.pq is None:
            scores, ids = faiss.knn(q, self.vectors, min(n, len(self)), metric=faiss.METRIC_INNER_PRODUCT)
            return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        rows = self.pq.candidates(q, min(len(self), max(PQ_RESCORE_MIN, PQ_RESCORE * n)))
        return _top(np.asarray(self.vectors[rows] @ q[0], dtype=np.float32), rows, n)

    def vector(self, row: int) -> np.ndarray:
        """One row's vector."""
        return np.array(self.vectors[row], dtype=np.float32)


class _PQCodes:
    """The codes in FAISS's fast-scan layout, made from ragapp's checked arrays (not FAISS's parser)."""

    def __init__(self, folder: Path, dimension: int, rows: int, m: int, nbits: int) -> None:
        import faiss

        centroids = load_npy(folder / PQ_FILES[0], np.float32, ndim=3, mmap=True)  # shapes checked before reading
        codes = load_npy(folder / PQ_FILES[1], np.uint8, ndim=2, mmap=True)
        if nbits != PQ_BITS or dimension % m or centroids.shape != (m, 1 << nbits, dimension // m) \
                or codes.shape != (rows, (m * nbits + 7) // 8):
            raise ValueError("PQ arrays disagree with the manifest")
        centroids = np.array(centroids)
        if not np.isfinite(centroids).all():
            raise ValueError("PQ codebooks hold non-finite numbers")
        flat = faiss.IndexPQ(dimension, m, nbits, faiss.METRIC_INNER_PRODUCT)
        faiss.copy_array_to_vector(centroids.ravel(), flat.pq.centroids)
        flat.is_trained = True
        flat.add_sa_codes(np.ascontiguousarray(codes))
        self.index = faiss.IndexPQFastScan(flat)  # type: ignore[arg-type]  # FAISS's stubs list only the (d, M, nbits) form

    def candidates(self, query: np.ndarray, k: int) -> np.ndarray:
        """The `k` rows the codes score highest, ascending (for reading the vectors in file order)."""
        ids = self.index.search(query, k)[1][0]
        return np.sort(ids[ids >= 0])


def dense_shape(rows: int, dimension: int) -> dict:
    """How a generation of `rows` vectors is searched, as the manifest records it ({}: exact)."""
    if rows < PQ_MIN_ROWS:
        return {}
    return {"type": "pq", "m": dimension // 2 if dimension % 2 == 0 else dimension, "nbits": PQ_BITS}


def write_pq(folder: Path, dimension: int, rows: int, shape: dict, seed: int = 0) -> list[str]:
    """Train the codebooks on a sample of the generation's vectors and encode every row; returns the
    file names."""
    import faiss

    vectors = _mapped_floats(folder / FILE, dimension, rows)
    pq = faiss.ProductQuantizer(dimension, shape["m"], shape["nbits"])
    sample = np.sort(np.random.default_rng(seed).choice(rows, min(rows, PQ_TRAIN_ROWS), replace=False))
    pq.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    codes = npy_spool(folder / PQ_FILES[1], np.uint8, pq.code_size)
    for a in range(0, rows, _ENCODE_ROWS):
        codes.append(pq.compute_codes(np.ascontiguousarray(vectors[a : a + _ENCODE_ROWS], dtype=np.float32)))
    codes.finish()
    centroids = faiss.vector_to_array(pq.centroids).reshape(shape["m"], 1 << shape["nbits"], -1)
    np.save(folder / PQ_FILES[0], centroids.astype(np.float32))
    return list(PQ_FILES)

"""Dense vectors of a generation (the only reader and writer of their files): dense.faiss, a FAISS
IndexFlatIP written row by row and read back only after ragapp has validated it (FAISS's own parser
never sees an untrusted file), searched straight from a memory map; and, for large indexes, an
inverted file (IVF) over it: k-means centroids, and each list's rows and vectors stored together
(ivf_*.npy: a second copy of the vectors, in list order, so a query reads a few contiguous runs)."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ragapp.spool import Spool, load_npy, npy_spool

FILE = "dense.faiss"
IVF_FILES = ("ivf_centroids.npy", "ivf_offsets.npy", "ivf_rows.npy", "ivf_vectors.npy")
# From this many chunks an index gets an IVF: at a million chunks exact search over the memory map
# takes 113 ms a query on one thread and the IVF 79 ms (bench/scale.py search; README "Ingest speed and index scale").
IVF_MIN_ROWS = 200_000
IVF_TRAIN_PER_LIST = 40  # k-means training sample: this many vectors per list
# Lists searched per query, as a share of the lists: e5's vectors are anisotropic (unrelated texts
# still score a cosine of about 0.7), so k-means lists hold near neighbours poorly; recall@10 against
# exact search on SciFact's real chunk and sentence vectors is 0.78 at 2 %, 0.92 at 10 %, 0.982 at
# 30 % (bench/scale.py recall).
IVF_PROBE_SHARE = 0.3
_ASSIGN_ROWS = 1 << 16  # vectors assigned to their lists per step when the IVF is built


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
    when the generation has an IVF, over the `nprobe` lists whose centroids are nearest the query."""

    def __init__(self, folder: Path, dimension: int, rows: int, ivf: dict | None = None) -> None:
        self.vectors = _mapped_floats(folder / FILE, dimension, rows)
        self.ivf = _IVF(folder, dimension, rows, ivf["nlist"], ivf["nprobe"]) if ivf else None

    def __len__(self) -> int:
        return len(self.vectors)

    def top_n(self, query: np.ndarray, n: int) -> list[tuple[int, float]]:
        """Best `n` rows by inner product, as (row, score)."""
        import faiss

        if len(self) == 0:
            return []
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if self.ivf is None:
            scores, ids = faiss.knn(q, self.vectors, min(n, len(self)), metric=faiss.METRIC_INNER_PRODUCT)
            return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        rows, scores = self.ivf.search(q[0])
        return _top(scores, rows, n)

    def vector(self, row: int) -> np.ndarray:
        """One row's vector."""
        return np.array(self.vectors[row], dtype=np.float32)


class _IVF:
    """The lists of an inverted file; every slice read is bounds-checked before it is used."""

    def __init__(self, folder: Path, dimension: int, rows: int, nlist: int, nprobe: int) -> None:
        self.centroids = load_npy(folder / IVF_FILES[0], np.float32, ndim=2)
        self.offsets = load_npy(folder / IVF_FILES[1], np.int64)
        self.rows = load_npy(folder / IVF_FILES[2], np.int64, mmap=True)
        self.vectors = load_npy(folder / IVF_FILES[3], np.float32, ndim=2, mmap=True)
        if self.centroids.shape != (nlist, dimension) or len(self.offsets) != nlist + 1 or len(self.rows) != rows \
                or self.vectors.shape != (rows, dimension):
            raise ValueError("IVF arrays disagree with the manifest")
        if self.offsets[0] != 0 or self.offsets[-1] != rows or np.any(np.diff(self.offsets) < 0):
            raise ValueError("IVF list offsets are not ascending over every row")
        if not 0 < nprobe <= nlist:
            raise ValueError(f"IVF nprobe {nprobe} of {nlist} lists")
        self.total, self.nprobe = rows, nprobe

    def search(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the lists nearest the query and their inner products with it."""
        near = np.argpartition(-(self.centroids @ query), self.nprobe - 1)[: self.nprobe]
        spans = [(self.offsets[i], self.offsets[i + 1]) for i in near]
        rows = np.concatenate([self.rows[a:b] for a, b in spans])
        if len(rows) and (rows.min() < 0 or rows.max() >= self.total):
            raise ValueError("IVF list holds a row outside the index")
        scores = np.concatenate([self.vectors[a:b] @ query for a, b in spans])
        return rows, scores.astype(np.float32)


def ivf_shape(rows: int) -> dict | None:
    """The IVF a generation of `rows` vectors gets (None: exact search), as the manifest records it."""
    if rows < IVF_MIN_ROWS:
        return None
    nlist = min(rows, int(4 * np.sqrt(rows)))
    return {"type": "ivf", "nlist": nlist, "nprobe": max(1, int(round(nlist * IVF_PROBE_SHARE)))}


def write_ivf(folder: Path, dimension: int, rows: int, shape: dict, seed: int = 0) -> list[str]:
    """Train k-means on a sample of the generation's vectors, assign every row to its nearest
    centroid, and write the lists; returns the file names."""
    import faiss

    vectors = _mapped_floats(folder / FILE, dimension, rows)
    nlist = shape["nlist"]
    sample = np.random.default_rng(seed).choice(rows, min(rows, nlist * IVF_TRAIN_PER_LIST), replace=False)
    kmeans = faiss.Kmeans(dimension, nlist, niter=10, seed=seed, spherical=True, max_points_per_centroid=IVF_TRAIN_PER_LIST)
    kmeans.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
    quantizer = faiss.IndexFlatIP(dimension)
    quantizer.add(kmeans.centroids)
    lists = np.empty(rows, dtype=np.int64)
    for a in range(0, rows, _ASSIGN_ROWS):
        lists[a : a + _ASSIGN_ROWS] = quantizer.search(np.ascontiguousarray(vectors[a : a + _ASSIGN_ROWS]), 1)[1][:, 0]
    order = np.argsort(lists, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(lists, minlength=nlist))]).astype(np.int64)
    np.save(folder / IVF_FILES[0], np.ascontiguousarray(kmeans.centroids, dtype=np.float32))
    np.save(folder / IVF_FILES[1], offsets)
    np.save(folder / IVF_FILES[2], order.astype(np.int64))
    copy = npy_spool(folder / IVF_FILES[3], np.float32, dimension)
    for a in range(0, rows, _ASSIGN_ROWS):
        copy.append(vectors[order[a : a + _ASSIGN_ROWS]])  # the vectors of list 0, then of list 1, ...
    copy.finish()
    return list(IVF_FILES)

"""The BM25 query kernel, compiled by numba: the top-n rows of a sum of weight columns.

Adding up the columns of the query's terms is a scatter over every posting of every term (577k at the
median for SciFact queries at a million chunks); in numpy it takes a concatenation, a bincount into a
vector as long as the index and a scan of that vector for the best scores (8.7 ms at the median). Here
one compiled loop adds each posting into the accumulator, remembers the rows it touched and keeps the
best `n` in a heap (bench/scale.py search). The sums are made in the same order as numpy's bincount,
so the scores are the same numbers. Compiled once, cached on disk by numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _weaker(hs, hr, a, b):
    """Heap order: a lower score, or an equal score on a later row, is weaker."""
    return hs[a] < hs[b] or (hs[a] == hs[b] and hr[a] > hr[b])


@njit(cache=True, nogil=True)
def _sift_down(hs, hr, i, size):
    while True:
        child = 2 * i + 1
        if child >= size:
            return
        if child + 1 < size and _weaker(hs, hr, child + 1, child):
            child += 1
        if not _weaker(hs, hr, child, i):
            return
        hs[i], hs[child] = hs[child], hs[i]
        hr[i], hr[child] = hr[child], hr[i]
        i = child


@njit(cache=True, nogil=True)
def top_n_columns(colptr, rows, weights, cols, mults, n_rows, n):
    """Rows and scores of the best `n` positive sums of `weights` over the columns `cols` (each
    multiplied by `mults`), unordered; `ok` is False when a column names a row outside [0, n_rows)."""
    total = 0
    for j in range(len(cols)):
        total += colptr[cols[j] + 1] - colptr[cols[j]]
    acc = np.zeros(n_rows)
    seen = np.zeros(n_rows, np.bool_)
    touched = np.empty(total, np.int64)
    m = 0
    for j in range(len(cols)):
        for k in range(colptr[cols[j]], colptr[cols[j] + 1]):
            r = rows[k]
            if r < 0 or r >= n_rows:
                return np.empty(0, np.int64), np.empty(0), False
            if not seen[r]:
                seen[r] = True
                touched[m] = r
                m += 1
            acc[r] += weights[k] * mults[j]
    hs = np.empty(n)
    hr = np.empty(n, np.int64)
    size = 0
    for t in range(m):
        r = touched[t]
        if acc[r] <= 0:
            continue
        if size < n:
            hs[size], hr[size] = acc[r], r
            size += 1
            if size == n:
                for i in range(n // 2 - 1, -1, -1):
                    _sift_down(hs, hr, i, size)
        elif acc[r] > hs[0] or (acc[r] == hs[0] and r < hr[0]):
            hs[0], hr[0] = acc[r], r
            _sift_down(hs, hr, 0, size)
    return hr[:size].copy(), hs[:size].copy(), True

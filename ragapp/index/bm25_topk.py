"""The BM25 query kernel, compiled by numba: the top-n rows of a sum of weight columns.

Adding up the columns of the query's terms touches every posting of every term (577k at the median for
SciFact queries at a million chunks). In numpy that is a concatenation, a bincount into a vector as
long as the index and a scan of it for the best scores (8-9 ms at the median, bench/scale.py search).
Here the rows are taken a block at a time: each column's postings that fall in the block (columns are
sorted by row) are added into a block-sized accumulator that stays in the CPU cache, then the block's
sums above the heap's weakest are offered to a heap of the best `n` (one well-predicted branch a row)
and the accumulator is zeroed for the next block (2.2 ms at the median). Each row's terms are added in
the same order as numpy's bincount adds them, so the scores are the same numbers. Compiled once,
cached on disk by numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit

BLOCK = 1 << 16  # rows summed at a time: a 512 KB accumulator


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
def _offer(hs, hr, size, score, row):
    """Keep (score, row) among the best len(hs); rows come in ascending order, so an equal score
    never displaces the row already kept. Returns the new size."""
    n = len(hs)
    if size < n:
        hs[size], hr[size] = score, row
        size += 1
        if size == n:
            for i in range(n // 2 - 1, -1, -1):
                _sift_down(hs, hr, i, size)
    elif score > hs[0]:
        hs[0], hr[0] = score, row
        _sift_down(hs, hr, 0, size)
    return size


@njit(cache=True, nogil=True)
def _add_block(colptr, rows, weights, cols, mults, pos, b0, b1, acc):
    """Add every posting of the columns with a row in [b0, b1) into acc; False if a row is out of order."""
    touched = False
    for j in range(len(cols)):
        k, end = pos[j], colptr[cols[j] + 1]
        while k < end and rows[k] < b1:
            if rows[k] < b0:
                return False, touched
            acc[rows[k] - b0] += weights[k] * mults[j]
            k += 1
        touched = touched or k > pos[j]
        pos[j] = k
    return True, touched


@njit(cache=True, nogil=True)
def top_n_columns(colptr, rows, weights, cols, mults, n_rows, n, block=BLOCK):
    """Rows and scores of the best `n` positive sums of `weights` over the columns `cols` (each
    multiplied by `mults`), unordered; `ok` is False when a column's rows are not ascending within
    [0, n_rows) (a crafted file)."""
    pos = colptr[cols].copy()
    acc = np.zeros(min(block, max(n_rows, 1)))
    hs, hr, size = np.empty(n), np.empty(n, np.int64), 0
    floor = 0.0  # what a sum must beat: 0 until the heap is full, then its weakest (one well-predicted branch)
    for b0 in range(0, n_rows, block):
        b1 = min(b0 + block, n_rows)
        ordered, touched = _add_block(colptr, rows, weights, cols, mults, pos, b0, b1, acc)
        if not ordered:
            return hr[:0].copy(), hs[:0].copy(), False
        if touched:
            for i in range(b1 - b0):
                if acc[i] > floor:
                    size = _offer(hs, hr, size, acc[i], b0 + i)
                    if size == n:
                        floor = hs[0]
            acc[:] = 0.0
    for j in range(len(cols)):
        if pos[j] < colptr[cols[j] + 1]:  # rows past the last one
            return hr[:0].copy(), hs[:0].copy(), False
    return hr[:size].copy(), hs[:size].copy(), True

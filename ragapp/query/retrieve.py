"""Retrieve stage: BM25 top-n and dense top-n, fused (reciprocal rank fusion or weighted scores)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ragapp.config import RetrieveConfig
from ragapp.index import IndexReader
from ragapp.records import Chunk, Hit, Query


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = 60, weights: Sequence[float] | None = None) -> dict[int, float]:
    """RRF: each list adds weight / (k + rank) (rank from 1) to the items it holds."""
    weights = weights or [1.0] * len(rankings)
    fused: dict[int, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + w / (k + rank)
    return fused


def weighted_fusion(scored: Sequence[Sequence[tuple[int, float]]], weights: Sequence[float]) -> dict[int, float]:
    """Convex combination of min-max normalised scores; an item missing from a list gets 0 from it."""
    fused: dict[int, float] = {}
    for pairs, w in zip(scored, weights):
        if not pairs:
            continue
        values = np.array([s for _, s in pairs], dtype=np.float64)
        lo, hi = values.min(), values.max()
        span = hi - lo if hi > lo else 1.0
        for (item, s) in pairs:
            fused[item] = fused.get(item, 0.0) + w * (s - lo) / span
    return fused


def _place(chunk: Chunk) -> tuple[str, int, int]:
    return chunk.source, chunk.page or 0, chunk.start


def _in_order(index: IndexReader, fused: dict[int, float]) -> Iterator[tuple[int, float, Chunk]]:
    """Rows best first, equal scores (a BM25 and a dense rank swapped) in document order on every
    backend's row ids; a record is read only when its row is reached."""
    ranked = sorted(fused.items(), key=lambda kv: -kv[1])
    start = 0
    while start < len(ranked):
        end = start + 1
        while end < len(ranked) and ranked[end][1] == ranked[start][1]:
            end += 1
        group = [(row, score, index.chunk(row)) for row, score in ranked[start:end]]
        yield from sorted(group, key=lambda g: (_place(g[2]), g[0]))
        start = end


def hybrid_search(index: IndexReader, query: Query, config: RetrieveConfig, candidates: int | None = None,
                  bm25: Sequence[tuple[int, float]] | None = None, limit: int | None = None,
                  keep: Callable[[int], bool] | None = None) -> list[Hit]:
    """Fused candidates, best first, each with its BM25 and dense rank and score; deduplicated by chunk
    text. `bm25`: the BM25 top `candidates` if already found (RAG looks them up while it embeds the
    query); `limit`: at most this many hits, 1 or more (the reranker reads only its candidates);
    `keep`: only rows it accepts take part (a search that leaves some documents out)."""
    n = candidates or config.candidates
    if bm25 is None:
        bm25 = index.bm25_top_n(query.terms, n, text=query.text)
    dense = index.dense_top_n(query.vector, n)
    if keep is not None:
        bm25, dense = [p for p in bm25 if keep(p[0])], [p for p in dense if keep(p[0])]
    if config.fusion == "rrf":
        fused = reciprocal_rank_fusion([[i for i, _ in bm25], [i for i, _ in dense]], config.rrf_k,
                                       [config.bm25_weight, config.dense_weight])
    else:
        fused = weighted_fusion([bm25, dense], [config.bm25_weight, config.dense_weight])
    bm25_at = {i: (r, s) for r, (i, s) in enumerate(bm25, start=1)}
    dense_at = {i: (r, s) for r, (i, s) in enumerate(dense, start=1)}
    hits: list[Hit] = []
    seen: set[str] = set()
    for row, score, chunk in _in_order(index, fused):
        # The same text indexed twice (a copied file) would crowd out other evidence.
        if index.text_hash(row) in seen:
            continue
        seen.add(index.text_hash(row))
        b, d = bm25_at.get(row), dense_at.get(row)
        hits.append(Hit(chunk=chunk, score=score, row=row,
                        bm25_rank=b[0] if b else None, bm25_score=b[1] if b else None,
                        dense_rank=d[0] if d else None, dense_score=d[1] if d else None, fused_score=score,
                        also=tuple(index.chunk(r) for r in index.same_text_rows(row)[1:])))
        if len(hits) == limit:
            break
    return hits

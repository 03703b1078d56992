"""The offline default second stage: each candidate read at sentence level with the packaged embedder's vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ragapp.index.protocols import IndexReader
from ragapp.query.retrieve import reciprocal_rank_fusion
from ragapp.records import Hit, Query
from ragapp.rerank.order import query_coverage
from ragapp.terms import Tokenizer


class SentenceReranker:
    """Offline second stage: reads each candidate at sentence level with the packaged embedder.

    For each of the top candidates: the best-matching sentence (cosine of the question to the
    sentence vectors stored at ingest), the chunk's own cosine, and the IDF-weighted share of the
    question's terms the chunk contains. The relevance score (used for refusals) is
    mean(best sentence, chunk cosine) + coverage_weight x coverage; the order is reciprocal rank
    fusion of the fused retrieval order with the relevance order.
    """

    def __init__(self, tokenizer: Tokenizer, candidates: int = 30, coverage_weight: float = 0.1, rrf_k: int = 60) -> None:
        self.tokenizer = tokenizer
        self.candidates = candidates
        self.coverage_weight = coverage_weight
        self.rrf_k = rrf_k

    def relevance(self, query: Query, hit: Hit, index: IndexReader) -> tuple[float, tuple[int, int] | None, dict]:
        """Relevance of one hit, its best sentence, and the features behind it."""
        q = query.vector.astype(np.float32).ravel()
        chunk_cos = hit.dense_score if hit.dense_score is not None else float(index.vector(hit.row) @ q)
        vectors = index.chunk_sentence_vectors(hit.row)
        if len(vectors):
            sims = vectors @ q
            k = int(np.argmax(sims))
            sentence_cos, support = float(sims[k]), hit.chunk.sentences[k]
        else:
            sentence_cos, support = chunk_cos, None
        coverage = query_coverage(query.terms, set(self.tokenizer(hit.chunk.text)), index.term_idf)
        score = (sentence_cos + chunk_cos) / 2 + self.coverage_weight * coverage
        return score, support, {"sentence": sentence_cos, "chunk": chunk_cos, "coverage": coverage}

    def rerank(self, query: Query, hits: Sequence[Hit], index: IndexReader) -> list[Hit]:
        """Candidates reordered; every returned hit has rerank_score and support set."""
        head = list(hits[: self.candidates])
        scored = [self.relevance(query, h, index) for h in head]
        by_relevance = sorted(range(len(head)), key=lambda i: -scored[i][0])
        fused = reciprocal_rank_fusion([list(range(len(head))), by_relevance], self.rrf_k)
        order = sorted(range(len(head)), key=lambda i: (-fused[i], i))
        return [replace(head[i], score=fused[i], rerank_score=scored[i][0], support=scored[i][1]) for i in order]

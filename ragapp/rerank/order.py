"""What the rerankers share: the score a hit was ranked by, the lexical choice of a support sentence,
and one way to order candidates by their scores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from ragapp.records import Hit
from ragapp.terms import Tokenizer


def final_score(hit: Hit) -> float:
    """The score a hit was ranked by last: the reranker's, else the fused one."""
    return hit.rerank_score if hit.rerank_score is not None else hit.score


def query_coverage(query_terms: Sequence[str], text_terms: set[str], idf: Callable[[str], float]) -> float:
    """IDF-weighted share of the query's distinct terms that occur in a text."""
    terms = set(query_terms)
    total = sum(idf(t) for t in terms)
    if total <= 0:
        return 0.0
    return sum(idf(t) for t in terms if t in text_terms) / total


def best_sentence(hit: Hit, query_terms: Sequence[str], tokenizer: Tokenizer,
                  idf: Callable[[str], float]) -> tuple[int, int] | None:
    """The sentence of a chunk that covers the most query terms (lexical; for rerankers without sentence vectors)."""
    best, best_score = None, -1.0
    for a, b in hit.chunk.sentences:
        score = query_coverage(query_terms, set(tokenizer(hit.chunk.text[a:b])), idf)
        if score > best_score:
            best, best_score = (a, b), score
    return best


def by_score(head: Sequence[Hit], scores: np.ndarray, query_terms: Sequence[str], tokenizer: Tokenizer,
             idf: Callable[[str], float]) -> list[Hit]:
    """Candidates ordered by one relevance score each (ties in candidate order), the score set as both
    `score` and `rerank_score`, the support sentence chosen lexically."""
    order = sorted(range(len(head)), key=lambda i: (-scores[i], i))
    return [replace(head[i], score=float(scores[i]), rerank_score=float(scores[i]),
                    support=best_sentence(head[i], query_terms, tokenizer, idf)) for i in order]

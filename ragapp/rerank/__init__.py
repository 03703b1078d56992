"""Rerank stage: the Reranker protocol and one module per reranker (sentence, cross_encoder, http,
none), sharing the ordering helpers in order.py. The refusal decision that reads their scores lives
in ragapp/query/refusal.py."""

from __future__ import annotations

from ragapp.config import ModelsConfig, RerankConfig
from ragapp.rerank.base import Reranker
from ragapp.rerank.cross_encoder import CrossEncoderReranker
from ragapp.rerank.http import HttpReranker
from ragapp.rerank.none import FusionOnly
from ragapp.rerank.order import best_sentence, final_score, query_coverage
from ragapp.rerank.sentence import SentenceReranker
from ragapp.terms import Tokenizer

__all__ = ["Reranker", "SentenceReranker", "CrossEncoderReranker", "HttpReranker", "FusionOnly", "build_reranker",
           "best_sentence", "final_score", "query_coverage"]


def build_reranker(config: RerankConfig, tokenizer: Tokenizer, threads: int, policy: ModelsConfig) -> Reranker:
    """The configured second stage."""
    if config.kind == "sentence":
        return SentenceReranker(tokenizer, config.candidates)
    if config.kind == "cross-encoder":
        return CrossEncoderReranker(config.model or "", tokenizer, config.candidates, threads, policy=policy)
    if config.kind == "http":
        return HttpReranker(config, tokenizer)
    return FusionOnly(tokenizer)

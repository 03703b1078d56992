"""Rerank stage: the Reranker protocol, the offline sentence-level reranker and a CrossEncoder reranker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

import numpy as np

from ragapp.config import ModelsConfig, RerankConfig
from ragapp.errors import ConfigError, ModelNotAvailableError, ModelServerError
from ragapp.index import IndexReader
from ragapp.remote import ServerBacked
from ragapp.retrieve import reciprocal_rank_fusion
from ragapp.runtime import torch_threads
from ragapp.tokenize import Tokenizer
from ragapp.types import Hit, Query

# Refusal thresholds on the sentence reranker's relevance score, per embedding model and question
# language, fitted by bench/calibrate.py on ../shared/eval (the 5th percentile of answerable questions'
# best score, on questions the end-to-end evaluation does not use); see README, "Refusals".
CALIBRATED_MIN_SCORE: dict[str, dict[str, float]] = {
    "multilingual-e5-small": {"en": 0.884, "zh": 0.924},  # int8 (the default); float32 0.885 / 0.926
}


@runtime_checkable
class Reranker(Protocol):
    """Reorders candidate hits; sets `rerank_score` (an absolute relevance) and `support` (a sentence)."""

    def rerank(self, query: Query, hits: Sequence[Hit], index: IndexReader) -> list[Hit]: ...


def final_score(hit: Hit) -> float:
    """The score a hit was ranked by last: the reranker's, else the fused one."""
    return hit.rerank_score if hit.rerank_score is not None else hit.score


def prompt_passages(hits: Sequence[Hit], threshold: float | None) -> list[Hit]:
    """The best passage, then only those that also clear the refusal threshold."""
    if threshold is None:
        return list(hits)
    return list(hits[:1]) + [h for h in hits[1:] if final_score(h) >= threshold]


def query_coverage(query_terms: Sequence[str], text_terms: set[str], idf) -> float:
    """IDF-weighted share of the query's distinct terms that occur in a text."""
    terms = set(query_terms)
    total = sum(idf(t) for t in terms)
    if total <= 0:
        return 0.0
    return sum(idf(t) for t in terms if t in text_terms) / total


def best_sentence(hit: Hit, query_terms: Sequence[str], tokenizer: Tokenizer, idf) -> tuple[int, int] | None:
    """The sentence of a chunk that covers the most query terms (lexical; for rerankers without sentence vectors)."""
    best, best_score = None, -1.0
    for a, b in hit.chunk.sentences:
        score = query_coverage(query_terms, set(tokenizer(hit.chunk.text[a:b])), idf)
        if score > best_score:
            best, best_score = (a, b), score
    return best


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


class CrossEncoderReranker:
    """Any sentence-transformers CrossEncoder: a local folder or a hub id (for users who have one)."""

    def __init__(self, model: str, tokenizer: Tokenizer, candidates: int = 30, threads: int = 1, batch_size: int = 16,
                 policy: ModelsConfig | None = None) -> None:
        self.model_name = model
        self.policy = policy or ModelsConfig()
        self.tokenizer = tokenizer
        self.candidates = candidates
        self.threads = threads
        self.batch_size = batch_size
        self._model = None

    def warm_up(self) -> None:
        """Load the cross-encoder (once)."""
        if self._model is not None:
            return
        from sentence_transformers import CrossEncoder

        from ragapp.models import model_folder

        folder = model_folder(self.model_name, self.policy, "cross-encoder")
        try:
            self._model = CrossEncoder(folder, device="cpu", local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ModelNotAvailableError(f"cannot load cross-encoder {self.model_name!r} offline ({exc}); pass a local folder") from exc

    def rerank(self, query: Query, hits: Sequence[Hit], index: IndexReader) -> list[Hit]:
        """Candidates ordered by the cross-encoder's score; the support sentence is chosen lexically."""
        self.warm_up()
        head = list(hits[: self.candidates])
        if not head:
            return []
        with torch_threads(self.threads):
            scores = self._model.predict([(query.text, h.chunk.text) for h in head], batch_size=self.batch_size,
                                         show_progress_bar=False)
        scores = np.asarray(scores, dtype=np.float64).ravel()
        order = sorted(range(len(head)), key=lambda i: (-scores[i], i))
        return [replace(head[i], score=float(scores[i]), rerank_score=float(scores[i]),
                        support=best_sentence(head[i], query.terms, self.tokenizer, index.term_idf)) for i in order]


class HttpReranker(ServerBacked):
    """The /rerank API of a server the user runs (TEI, infinity, Xinference, vLLM): query and candidate
    passages go out, one relevance score per passage comes back; the support sentence is chosen lexically."""

    setting = "rerank"

    def __init__(self, config: RerankConfig, tokenizer: Tokenizer) -> None:
        if not (config.base_url.startswith(("http://", "https://")) and config.model):
            raise ConfigError("rerank kind 'http' needs base_url = 'http://HOST:PORT/v1' and the server's model name")
        self.config = config
        self.tokenizer = tokenizer
        self.url = config.base_url.rstrip("/")
        self._client = None

    def scores(self, query: str, documents: list[str]) -> np.ndarray:
        """One score per document, in the documents' order."""
        import openai

        from ragapp import remote

        c = self.config
        self.warm_up()
        try:
            # "documents" for infinity, Xinference, vLLM and Jina/Cohere-style servers; "texts" for TEI.
            reply = self._client.post("/rerank", body={"model": c.model, "query": query, "documents": documents,
                                                       "texts": documents, "return_documents": False}, cast_to=object)
        except openai.APIError as exc:
            raise ModelServerError(remote.explain(exc, self.url, model=c.model or "", key_env=c.api_key_env,
                                                  timeout_s=c.timeout_s, retries=c.max_retries, setting="rerank")) from exc
        rows = reply.get("results") if isinstance(reply, dict) else reply
        out = np.full(len(documents), np.nan)
        try:
            for row in rows:
                out[int(row["index"])] = float(row["relevance_score"] if "relevance_score" in row else row["score"])
        except (TypeError, KeyError, ValueError, IndexError) as exc:
            raise ModelServerError(f"{self.url}/rerank sent a reply without an index and a score per document ({exc})") from exc
        if np.isnan(out).any():
            raise ModelServerError(f"{self.url}/rerank scored {int((~np.isnan(out)).sum())} of {len(documents)} documents")
        return out

    def rerank(self, query: Query, hits: Sequence[Hit], index: IndexReader) -> list[Hit]:
        """Candidates ordered by the server's scores."""
        head = list(hits[: self.config.candidates])
        if not head:
            return []
        scores = self.scores(query.text, [h.chunk.text for h in head])
        order = sorted(range(len(head)), key=lambda i: (-scores[i], i))
        return [replace(head[i], score=float(scores[i]), rerank_score=float(scores[i]),
                        support=best_sentence(head[i], query.terms, self.tokenizer, index.term_idf)) for i in order]


class FusionOnly:
    """No second stage: keep the fused order; the support sentence is chosen lexically."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def rerank(self, query: Query, hits: Sequence[Hit], index: IndexReader) -> list[Hit]:
        """Hits unchanged but for their support sentence."""
        return [replace(h, support=best_sentence(h, query.terms, self.tokenizer, index.term_idf)) for h in hits]


def refusal_threshold(config: RerankConfig, reranker: Reranker, embedding_model: str, language: str) -> float | None:
    """The best rerank score below which a question is refused before any model call: the
    configured `min_score`, else the calibrated one for the sentence reranker, else None (never)."""
    if config.min_score is not None:
        return config.min_score
    if isinstance(reranker, SentenceReranker):
        return CALIBRATED_MIN_SCORE.get(embedding_model, {}).get(language)
    return None


def build_reranker(config: RerankConfig, tokenizer: Tokenizer, threads: int, policy: ModelsConfig) -> Reranker:
    """The configured second stage."""
    if config.kind == "sentence":
        return SentenceReranker(tokenizer, config.candidates)
    if config.kind == "cross-encoder":
        return CrossEncoderReranker(config.model or "", tokenizer, config.candidates, threads, policy=policy)
    if config.kind == "http":
        return HttpReranker(config, tokenizer)
    return FusionOnly(tokenizer)

"""The /rerank API of a server the user runs (TEI, infinity, Xinference, vLLM) as the second stage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ragapp.config import RerankConfig
from ragapp.errors import ConfigError, ModelServerError
from ragapp.index.protocols import IndexReader
from ragapp.records import Hit, Query
from ragapp.remote import ServerBacked
from ragapp.rerank.order import by_score
from ragapp.terms import Tokenizer


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
        self._client: Any = None

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
        rows: Any = reply.get("results") if isinstance(reply, dict) else reply
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
        return by_score(head, self.scores(query.text, [h.chunk.text for h in head]), query.terms, self.tokenizer,
                        index.term_idf)

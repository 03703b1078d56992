"""Embeddings from a server the user runs, through the OpenAI-compatible /v1/embeddings API (TEI,
infinity, vLLM, Ollama, llama.cpp). The e5 prefixes are applied here, vectors are L2-normalised here,
and every failure is one line naming the URL (ragapp.remote)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragapp import remote
from ragapp.config import EmbedConfig, ModelsConfig
from ragapp.embed.base import Embedder, PrefixesFromSpec
from ragapp.embed.sentence_transformers import sentence_vectors
from ragapp.errors import ConfigError, ModelServerError
from ragapp.models import E5_NAME, EmbedderSpec

_PIECE = re.compile(r"[\u3400-\u9fff]|[A-Za-z0-9]+|[^\sA-Za-z0-9\u3400-\u9fff]")


class OpenAIEmbedder(remote.ServerBacked, PrefixesFromSpec, Embedder):
    """An embedding model behind an OpenAI-compatible `/v1/embeddings` endpoint."""

    setting = "embed"

    def __init__(self, config: EmbedConfig, cache_dir: str = "", policy: ModelsConfig | None = None) -> None:
        if not config.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"embed backend 'openai' needs base_url = 'http://HOST:PORT/v1'. Currently, it is {config.base_url!r}")
        self.config = config
        self.name = config.model
        self.backend = "openai"
        self.url = config.base_url.rstrip("/")
        lowered = config.model.lower()
        e5 = "e5" in lowered and "instruct" not in lowered
        self._spec = EmbedderSpec(config.model, self.url, "query: " if e5 else "", "passage: " if e5 else "")

        self._cache_dir, self._policy = cache_dir, policy or ModelsConfig()
        self._client: Any = None
        self._dimension: int | None = None
        self._tokenizer: Any = None

    @property
    def dimension(self) -> int:
        """Vector size (asked of the server once)."""
        if self._dimension is None:
            self._dimension = int(self._post(["dimension probe"]).shape[1])
        return self._dimension

    def _post(self, texts: list[str]) -> np.ndarray:
        import openai

        self.warm_up()
        out = []
        c = self.config
        for a in range(0, len(texts), max(1, c.batch_size * 4)):
            batch = texts[a : a + c.batch_size * 4]
            try:
                reply = self._client.embeddings.create(model=c.model, input=batch, encoding_format="float")
                rows = sorted(reply.data, key=lambda d: d.index)
                vectors = np.asarray([r.embedding for r in rows], dtype=np.float32)
            except openai.APIError as exc:
                raise ModelServerError(remote.explain(exc, self.url, model=c.model, key_env=c.api_key_env,
                                                      timeout_s=c.timeout_s, retries=c.max_retries, setting="embed")) from exc
            except (ValueError, TypeError, AttributeError) as exc:
                raise ModelServerError(f"{self.url} sent embeddings that are not OpenAI-compatible ({exc})"[:300]) from exc
            if vectors.ndim != 2 or len(vectors) != len(batch):
                raise ModelServerError(f"{self.url} sent {len(vectors)} embeddings for {len(batch)} texts")
            out.append(vectors)
        vectors = np.concatenate(out) if out else np.zeros((0, self._dimension or 0), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)

    @property
    def spec(self) -> EmbedderSpec:
        """The server's model and the e5 prefixes ragapp applies for it."""
        return self._spec

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for questions (with the model's query prefix)."""
        return self._post([self.spec.query_prefix + t for t in texts])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for chunks or sentences (with the model's passage prefix)."""
        return self._post([self.spec.passage_prefix + t for t in texts])

    def embed_chunks(self, texts: Sequence[str], sentences: Sequence[Sequence[tuple[int, int]]]) -> tuple[np.ndarray, np.ndarray]:
        """Chunk vectors and one vector per sentence span (see SentenceTransformerEmbedder.embed_chunks)."""
        return self.embed_passages(texts), sentence_vectors(self.embed_passages, texts, sentences)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text: the packaged e5 tokenizer for e5 models, else an estimate (a Han character,
        a word or a punctuation mark each count one), which is what chunk sizes then mean."""
        if self.config.model in (E5_NAME, "intfloat/multilingual-e5-small"):
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                from ragapp.models import resolve_embedder

                folder = resolve_embedder(E5_NAME, self._cache_dir, self._policy).path
                self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            if not texts:
                return []
            return [len(x) for x in self._tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]]
        return [len(_PIECE.findall(t)) for t in texts]

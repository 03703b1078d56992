"""Embed stage: the Embedder protocol and its backends, one module each.

- `sentence_transformers`: the model runs in this process (the packaged multilingual-e5-small by default)
- `openai`: the /v1/embeddings API of a server the user runs (TEI, infinity, vLLM, Ollama, llama.cpp)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ragapp.config import Config
from ragapp.embed.sentence_transformers import SentenceTransformerEmbedder


@runtime_checkable
class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors."""

    name: str

    @property
    def dimension(self) -> int: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def embed_chunks(self, texts: Sequence[str], sentences: Sequence[Sequence[tuple[int, int]]]) -> tuple[np.ndarray, np.ndarray]: ...


def build_embedder(config: Config) -> Embedder:
    """The embedder the settings name (`[embed] backend`); light: models load on first use."""
    if config.embed.backend == "openai":
        from ragapp.embed.openai import OpenAIEmbedder

        return OpenAIEmbedder(config.embed, config.cache_dir, config.models)
    return SentenceTransformerEmbedder(config.embed, config.cache_dir, config.threads, ingest_threads=config.ingest_threads,
                                       policy=config.models)


def embedding_record(embedder: Embedder) -> dict:
    """What the manifest records about the embedder an index is built with."""
    spec = getattr(embedder, "spec", None)
    return {"model": embedder.name, "backend": getattr(embedder, "backend", "sentence-transformers"),
            "dimension": embedder.dimension, "query_prefix": getattr(spec, "query_prefix", ""),
            "passage_prefix": getattr(spec, "passage_prefix", ""),
            "sentence_vectors": getattr(embedder, "sentence_mode", "separate")}


__all__ = ["Embedder", "SentenceTransformerEmbedder", "build_embedder", "embedding_record"]

"""Embed stage: the Embedder protocol and its backends, one module each.

- `sentence_transformers`: the model runs in this process (the packaged multilingual-e5-small by default)
- `openai`: the /v1/embeddings API of a server the user runs (TEI, infinity, vLLM, Ollama, llama.cpp)
"""

from __future__ import annotations

from ragapp.config import Config
from ragapp.embed.base import Embedder
from ragapp.embed.sentence_transformers import SentenceTransformerEmbedder


def build_embedder(config: Config) -> Embedder:
    """The embedder the settings name (`[embed] backend`); light: models load on first use."""
    if config.embed.backend == "openai":
        from ragapp.embed.openai import OpenAIEmbedder

        return OpenAIEmbedder(config.embed, config.cache_dir, config.models)
    return SentenceTransformerEmbedder(config.embed, config.cache_dir, config.threads, ingest_threads=config.ingest_threads,
                                       policy=config.models)


def embedding_record(embedder: Embedder) -> dict:
    """What the manifest records about the embedder an index is built with."""
    return {"model": embedder.name, "backend": embedder.backend, "dimension": embedder.dimension,
            "query_prefix": embedder.query_prefix, "passage_prefix": embedder.passage_prefix,
            "sentence_vectors": embedder.sentence_mode}


__all__ = ["Embedder", "SentenceTransformerEmbedder", "build_embedder", "embedding_record"]

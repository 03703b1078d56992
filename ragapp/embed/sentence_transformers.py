"""In-process sentence-transformers backend of the embed stage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragapp.config import EmbedConfig, ModelsConfig
from ragapp.errors import ModelNotAvailableError
from ragapp.lazy import LoadsOnce
from ragapp.models import EmbedderSpec, resolve_embedder
from ragapp.runtime import torch_threads


def sentence_vectors(encode, texts: Sequence[str], sentences: Sequence[Sequence[tuple[int, int]]]) -> np.ndarray:
    """One vector per sentence span, each distinct sentence encoded once (chunk overlap repeats them)."""
    unique: dict[str, int] = {}
    refs = [unique.setdefault(text[a:b], len(unique)) for text, spans in zip(texts, sentences) for a, b in spans]
    return encode(list(unique))[np.asarray(refs, dtype=np.int64)]


class SentenceTransformerEmbedder(LoadsOnce):
    """Any sentence-transformers model: a packaged name, a local folder or a hub id.

    Light to construct; the model loads on first use (`warm_up`).
    """

    def __init__(self, config: EmbedConfig | None = None, cache_dir: str = "", threads: int = 1,
                 spec: EmbedderSpec | None = None, ingest_threads: int | None = None,
                 policy: ModelsConfig | None = None) -> None:
        super().__init__()
        self.config = config or EmbedConfig()
        self._policy = policy or ModelsConfig()
        self._cache_dir = cache_dir
        self._threads = threads
        self._ingest_threads = ingest_threads or threads
        self._spec = spec
        self._tokenizer = None
        self.name = spec.name if spec else self.config.model
        self.backend = "sentence-transformers"

    @property
    def spec(self) -> EmbedderSpec:
        """The resolved model location and prefixes (converting a packaged model on first call)."""
        if self._spec is None:
            self._spec = resolve_embedder(self.config.model, self._cache_dir, self._policy)
            self.name = self._spec.name
        return self._spec

    def _load(self):
        import torch
        from sentence_transformers import SentenceTransformer

        dtype = torch.bfloat16 if self.config.dtype == "bfloat16" else torch.float32
        try:
            model = SentenceTransformer(self.spec.path, device="cpu", model_kwargs={"dtype": dtype},
                                        local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ModelNotAvailableError(
                f"cannot load embedding model {self.config.model!r} offline ({exc}); use a packaged name "
                "(multilingual-e5-small, all-MiniLM-L6-v2) or a local sentence-transformers folder") from exc
        model.max_seq_length = min(self.config.max_seq_length, model.max_seq_length or self.config.max_seq_length)
        return model

    @property
    def dimension(self) -> int:
        """Vector size."""
        self.warm_up()
        return int(self._model.get_embedding_dimension())

    def _encode(self, texts: Sequence[str], prefix: str, threads: int | None = None) -> np.ndarray:
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with torch_threads(threads or self._threads):
            vectors = self._model.encode([prefix + t for t in texts], batch_size=self.config.batch_size,
                                         normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for questions (with the model's query prefix)."""
        return self._encode(texts, self.spec.query_prefix)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for chunks or sentences (with the model's passage prefix)."""
        return self._encode(texts, self.spec.passage_prefix)

    def embed_chunks(self, texts: Sequence[str], sentences: Sequence[Sequence[tuple[int, int]]]) -> tuple[np.ndarray, np.ndarray]:
        """Chunk vectors, and one vector per sentence span (for sentence-level reranking and quotes).

        Sentences are embedded on their own (vectors pooled from the chunk's tokens were tried and
        blur neighbouring sentences together); a sentence repeated by chunk overlap is embedded once.
        """
        encode = lambda batch: self._encode(batch, self.spec.passage_prefix, self._ingest_threads)  # noqa: E731
        return encode(texts), sentence_vectors(encode, texts, sentences)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text takes in this model (no special tokens); loads only the tokenizer."""
        if self._tokenizer is None:
            if self._model is not None:
                self._tokenizer = self._model.tokenizer
            else:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self.spec.path, local_files_only=True,
                                                                trust_remote_code=False)
        if not texts:
            return []
        ids = self._tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(x) for x in ids]


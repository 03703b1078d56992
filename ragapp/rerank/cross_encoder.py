"""Any sentence-transformers CrossEncoder as the second stage (a local folder, or a hub id already on disk)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ragapp.config import ModelsConfig
from ragapp.errors import ModelNotAvailableError
from ragapp.index.protocols import IndexReader
from ragapp.records import Hit, Query
from ragapp.rerank.order import by_score
from ragapp.runtime import torch_threads
from ragapp.terms import Tokenizer


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
        self._model: Any = None

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
        return by_score(head, np.asarray(scores, dtype=np.float64).ravel(), query.terms, self.tokenizer, index.term_idf)

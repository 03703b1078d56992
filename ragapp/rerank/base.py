"""The Reranker protocol: what every second stage implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ragapp.index.protocols import IndexReader
from ragapp.records import Hit, Query


@runtime_checkable
class Reranker(Protocol):
    """Reorders candidate hits; sets `rerank_score` (an absolute relevance) and `support` (a sentence)."""

    def rerank(self, query: Query, hits: Sequence[Hit], index: IndexReader) -> list[Hit]: ...

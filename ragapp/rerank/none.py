"""No second stage: the fused order kept, a support sentence chosen lexically."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ragapp.index.protocols import IndexReader
from ragapp.records import Hit, Query
from ragapp.rerank.order import best_sentence
from ragapp.terms import Tokenizer


class FusionOnly:
    """No second stage: keep the fused order; the support sentence is chosen lexically."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def rerank(self, query: Query, hits: Sequence[Hit], index: IndexReader) -> list[Hit]:
        """Hits unchanged but for their support sentence."""
        return [replace(h, support=best_sentence(h, query.terms, self.tokenizer, index.term_idf)) for h in hits]

"""The Embedder protocol: every member ingest and the query path use, the optional ones with their
defaults. Subclass it to inherit the defaults; RAG checks an embedder has them all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ragapp.models.names import EmbedderSpec


@runtime_checkable
class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors."""

    name: str
    backend: str = "sentence-transformers"  # recorded in the manifest: an index is never queried through another

    @property
    def query_prefix(self) -> str:
        """What the model wants before a question (e5: "query: ")."""
        return ""

    @property
    def passage_prefix(self) -> str:
        """What the model wants before a passage (e5: "passage: ")."""
        return ""

    sentence_mode: str = "separate"  # how sentence vectors are made ([embed] sentence_vectors)

    @property
    def dimension(self) -> int: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def embed_chunks(self, texts: Sequence[str], sentences: Sequence[Sequence[tuple[int, int]]]) -> tuple[np.ndarray, np.ndarray]: ...

    @property
    def loaded(self) -> bool:
        """True once the model is in memory (a server's model always is)."""
        return True

    def warm_up(self) -> None:
        """Load the model now instead of on first use."""
        return None


class PrefixesFromSpec:
    """`query_prefix` and `passage_prefix` read from the embedder's resolved `spec` (e5's "query: " / "passage: ")."""

    @property
    def spec(self) -> EmbedderSpec:
        """The resolved model location and prefixes."""
        raise NotImplementedError

    @property
    def query_prefix(self) -> str:
        """What the model wants before a question."""
        return self.spec.query_prefix

    @property
    def passage_prefix(self) -> str:
        """What the model wants before a passage."""
        return self.spec.passage_prefix

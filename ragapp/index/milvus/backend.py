"""An index in Milvus (implements `IndexBackend`): the collections, with a reader and a writer."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from ragapp.errors import IndexMismatchError
from ragapp.index.milvus.connection import MilvusCollections
from ragapp.index.milvus.layout import STATE_ROW
from ragapp.index.milvus.reader import MilvusReader, visible_filter
from ragapp.index.milvus.writer import MilvusWriter
from ragapp.index.protocols import IndexReader


class MilvusIndex(MilvusCollections):
    """Where an index lives when `[index] backend = "milvus"`."""

    def open(self) -> MilvusReader:
        """A reader of what is committed now."""
        manifest = self.manifest()
        self._check_schema(manifest.embedding["dimension"])
        committed, hidden = {}, {}
        for row in self._file_rows():
            if row["pk"] == STATE_ROW:
                continue
            if row["gen"]:
                committed[row["pk"]] = row["gen"]
            if not row["gen"] or row["pending"] or row["retired"]:
                hidden[row["pk"]] = row["gen"]
        for part in self.names:
            self.loaded(part)
        return MilvusReader(self, manifest, visible_filter(committed, hidden))

    def _check_schema(self, dimension: int) -> None:
        fields = {f["name"]: f for f in self.call("describe_collection", self.client().describe_collection, self.name)["fields"]}
        wanted = {"pk", "sid", "gen", "hash", "text", "terms", "sparse", "dense", "record"}
        have = fields.get("dense", {}).get("params", {}).get("dim")
        if set(fields) != wanted or int(have or 0) != dimension:
            raise IndexMismatchError(f"Milvus collection {self.name!r} at {self.uri} has fields {sorted(fields)} (dense dim "
                                     f"{have}), not ragapp's for dimension {dimension}; rebuild with: ragapp ingest --rebuild PATH")

    def lock(self, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> AbstractContextManager:
        """No lock: writers in several processes divide the files by claims (see the module doc)."""
        return nullcontext()

    def writer(self, dimension: int, bm25: dict, previous: IndexReader | None, rebuild: bool = False) -> MilvusWriter:
        """One ingest's writer; with `rebuild` an existing collection is dropped first."""
        if previous is not None and not isinstance(previous, MilvusReader):
            raise TypeError("a Milvus index carries rows over only from a Milvus index")
        return MilvusWriter(self, dimension, bm25, previous, rebuild)



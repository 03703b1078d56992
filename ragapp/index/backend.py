"""Which store holds an index: `[index] backend` chooses the local folder or a Milvus collection."""

from __future__ import annotations

from pathlib import Path

from ragapp.config import IndexConfig
from ragapp.index.local import LocalIndex
from ragapp.index.protocols import IndexBackend


def open_backend(index: str | Path, config: IndexConfig) -> IndexBackend:
    """The backend `[index]` names for the index folder `index` (a Milvus collection is named after
    the folder, and owned by it, unless `config.collection` names one)."""
    if config.backend == "local":
        return LocalIndex(index)
    from ragapp.index.milvus import MilvusIndex, collection_name, legacy_collection_name

    derived = not config.collection
    return MilvusIndex(config.uri, config.collection or collection_name(index), config.token_env, config.dense_index,
                       config.timeout_s, config.claim_timeout_s, config.bm25_terms,
                       owner=str(Path(index).resolve()) if derived else "",
                       legacy=legacy_collection_name(index) if derived else "")

"""ragapp: local, offline question answering over your own documents, with citations and honest refusals.

    >>> from ragapp import RAG
    >>> rag = RAG("data/index")
    >>> rag.ingest(["data/samples"])          # doctest: +SKIP
    >>> print(rag.ask("Who founded the Duchy of Normandy?").text)  # doctest: +SKIP

The stages plug in through protocols: Embedder, Reranker, Generator and IndexBackend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragapp.version import __version__

# Lazy: `import ragapp` stays quick; torch, transformers and faiss load when first used.
_WHERE = {
    "RAG": "ragapp.rag", "AnswerStream": "ragapp.records", "Config": "ragapp.config", "Turn": "ragapp.query.conversation",
    "Answer": "ragapp.records", "Citation": "ragapp.records", "Chunk": "ragapp.records", "Hit": "ragapp.records",
    "IngestReport": "ragapp.records", "DocumentInfo": "ragapp.records", "IndexInfo": "ragapp.records",
    "Embedder": "ragapp.embed", "Generator": "ragapp.generate", "Reranker": "ragapp.rerank",
    "IndexBackend": "ragapp.index", "IndexReader": "ragapp.index", "IndexWriter": "ragapp.index",
    "LocalIndex": "ragapp.index", "is_index_folder": "ragapp.index", "FolderWatcher": "ragapp.watch",
    **{name: "ragapp.errors" for name in (
        "RagError", "ConfigError", "IndexNotFoundError", "IndexMismatchError", "IndexCorruptError",
        "ModelNotAvailableError", "DocumentError", "NoDocumentsError", "IndexLockedError", "IndexWriteError",
        "NotAnIndexError", "ModelServerError")},
}

__all__ = [*_WHERE, "__version__"]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names load on first use
    from ragapp.config import Config
    from ragapp.embed import Embedder
    from ragapp.errors import (
        ConfigError,
        DocumentError,
        IndexCorruptError,
        IndexLockedError,
        IndexMismatchError,
        IndexNotFoundError,
        IndexWriteError,
        ModelNotAvailableError,
        ModelServerError,
        NoDocumentsError,
        NotAnIndexError,
        RagError,
    )
    from ragapp.generate import Generator
    from ragapp.index import IndexBackend, IndexReader, IndexWriter, LocalIndex, is_index_folder
    from ragapp.query.conversation import Turn
    from ragapp.rag import RAG
    from ragapp.records import Answer, AnswerStream, Chunk, Citation, DocumentInfo, Hit, IndexInfo, IngestReport
    from ragapp.rerank import Reranker
    from ragapp.watch import FolderWatcher


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ragapp' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

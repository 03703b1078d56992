"""ragapp: local, offline question answering over your own documents, with citations and honest refusals.

    >>> from ragapp import RAG
    >>> rag = RAG("data/index")
    >>> rag.ingest(["data/samples"])          # doctest: +SKIP
    >>> print(rag.ask("Who founded the Duchy of Normandy?").text)  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["RAG", "Answer", "Citation", "Chunk", "Hit", "IngestReport", "Config", "Turn", "RagError", "is_index_folder",
           "__version__"]


def __getattr__(name: str):
    # Lazy: `import ragapp` stays quick; torch, transformers and faiss load when first used.
    if name == "RAG":
        from ragapp.rag import RAG

        return RAG
    if name == "Config":
        from ragapp.config import Config

        return Config
    if name == "Turn":
        from ragapp.conversation import Turn

        return Turn
    if name == "is_index_folder":
        from ragapp.index import is_index_folder

        return is_index_folder
    if name == "RagError":
        from ragapp.errors import RagError

        return RagError
    if name in ("Answer", "Citation", "Chunk", "Hit", "IngestReport"):
        from ragapp import types

        return getattr(types, name)
    raise AttributeError(f"module 'ragapp' has no attribute {name!r}")

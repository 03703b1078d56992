"""An index in Milvus: Milvus Lite for a local ``.db`` path, a Milvus server or cluster by ``http(s)://`` URI.
The only reader and writer of ragapp's Milvus collections: layout.py (collections, schemas, keys,
names), connection.py, reader.py, writer.py, backend.py (MilvusIndex).

Four collections per index (``NAME`` is ``[index] collection``):

    NAME            one row per chunk: text, ``terms`` (ragapp's BM25 terms, or the text for jieba:
                    Milvus's BM25 function fills ``sparse`` from it), dense vector, text hash, the
                    chunk record, source id, ingest version; keyed by ``row_key``
    NAME_sentences  the reranker's sentence vectors, one row per chunk sentence, keyed by chunk and position
    NAME_files      one row per document: its committed version and record, a writer's claim on it,
                    a version being retired; row 0 holds the commit stamp readers poll
    NAME_terms      document frequencies of ragapp's BM25 terms (the reranker's and citations' idf)

Versions keep ragapp's promise that a reader never sees half a file: each ingest writes under its own
version (microseconds at its start); a file's new rows become visible only when its files row is
upserted with that version, after the rows are flushed; its old rows are deleted after that. Readers
filter on the committed versions, and exclude every row of a file whose row says it is being written
or retired. Writers in several processes divide the work by claiming a file (its files row) before
reading it; a claim held by a live process (same host: its pid; elsewhere: younger than
``claim_timeout_s``) is left to it.
"""

from ragapp.index.milvus.backend import MilvusIndex
from ragapp.index.milvus.layout import BM25_TERMS, DENSE_INDEXES, collection_name, legacy_collection_name, source_id
from ragapp.index.milvus.reader import MilvusReader
from ragapp.index.milvus.writer import MilvusWriter

__all__ = ["BM25_TERMS", "DENSE_INDEXES", "MilvusIndex", "MilvusReader", "MilvusWriter", "collection_name",
           "legacy_collection_name", "source_id"]

"""ragapp's Milvus layout: the collections, their schemas and properties, row keys and records,
and how an index folder names its collection. Every other module of this package builds on these."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import asdict
from pathlib import Path

from ragapp.errors import IndexCorruptError
from ragapp.index.manifest import FileRecord
from ragapp.records import Chunk

LAYOUT = "1"  # ragapp's Milvus layout, in the chunk collection's properties
LAYOUT_KEY, SETTINGS_KEY, OWNER_KEY = "ragapp.layout", "ragapp.settings", "ragapp.owner"
BM25_TERMS = ("ragapp", "jieba")
# Milvus's vector indexes ragapp can ask for (DISKANN: a server only; sizes in docs/milvus.md).
DENSE_INDEXES = ("HNSW", "FLAT", "IVF_FLAT", "IVF_SQ8", "DISKANN", "AUTOINDEX")


def analyzer(bm25_terms: str, lite: bool) -> dict:
    """What Milvus's BM25 function tokenises: "ragapp" — the chunk's terms as ragapp's own BM25 makes
    them (English stemmed, stop words out, Chinese bigrams), joined by spaces, so split on white space
    (Milvus Lite has no "whitespace" tokenizer; its "standard" one does the same on such text, where
    every term is a run of word characters; a server's "standard" would cut Chinese bigrams apart);
    "jieba" — the chunk's text through jieba, lower-cased."""
    if bm25_terms == "jieba":
        return {"tokenizer": "jieba", "filter": ["lowercase"]}
    return {"tokenizer": "standard" if lite else "whitespace"}
MAX_TEXT_BYTES = 65_535  # a VARCHAR's limit
BATCH = 256  # rows per insert
QUERY_LIMIT = 16_384  # Milvus's largest query window
STATE_ROW = 0  # files row holding the commit stamp
INSTALL = 'pip install "pymilvus>=2.6" "milvus-lite>=3.2" (or: pip install "ragapp[milvus]")'


def source_id(source: str) -> int:
    """A document's id in filters: 63 bits of the SHA-256 of its path (never 0, the state row)."""
    return (int.from_bytes(hashlib.sha256(source.encode("utf-8", "surrogatepass")).digest()[:8], "big") >> 1) or 1


def row_key(*parts: int) -> int:
    """A row's primary key: 63 bits of the SHA-256 of what identifies it (a chunk: the ingest version and
    its number in that ingest; a sentence: its chunk's key and position), so the reranker finds a
    chunk's sentence vectors by key (Milvus's fast path) and no key waits on an insert to be known.
    Two keys meet with odds below 1e-4 at 10^8 rows."""
    return (int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big") >> 1) or 1


def term_id(term: str) -> int:
    """A BM25 term's row in NAME_terms."""
    return int.from_bytes(hashlib.sha256(term.encode("utf-8", "surrogatepass")).digest()[:8], "big") >> 1


def chunk_record(chunk: Chunk) -> str:
    return json.dumps({"id": chunk.id, "source": chunk.source, "page": chunk.page, "start": chunk.start, "end": chunk.end,
                       "sentences": chunk.sentences, "label": chunk.label, "ocr": chunk.ocr}, ensure_ascii=False)


def chunk_from_record(text: str, record: str) -> Chunk:
    try:
        d = json.loads(record)
        d["sentences"] = tuple((int(a), int(b)) for a, b in d["sentences"])
        return Chunk(text=text, **d)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise IndexCorruptError(f"a chunk record in Milvus is unreadable ({exc}); rebuild with: ragapp ingest --rebuild PATH") from exc


def file_row(source: str, gen: int = 0, pending: int = 0, retired: int = 0, record: FileRecord | None = None,
             owner: str = "", claimed_at: float = 0.0) -> dict:
    """One row of NAME_files."""
    return {"pk": source_id(source), "source": source, "gen": gen, "pending": pending, "retired": retired,
            "record": json.dumps(asdict(record)) if record else "", "owner": owner, "claimed_at": claimed_at, "v": [0.0, 0.0]}


def this_process() -> str:
    """Who holds a claim: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_alive(row: dict, timeout_s: float) -> bool:
    """Whether the writer holding a file's claim may still be at work: on this host, while its
    process lives; on another, until `timeout_s` after it claimed."""
    host, _, pid = row["owner"].rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return time.time() - row["claimed_at"] < timeout_s


DENSE_PARAMS = {"HNSW": {"M": 16, "efConstruction": 200}, "IVF_FLAT": {"nlist": 1024}, "IVF_SQ8": {"nlist": 1024}}


def collection_schemas(client, dimension: int, bm25: dict, dense_index: str, terms_analyzer: dict) -> dict:
    """Schema and index parameters of each collection."""
    from pymilvus import DataType, Function, FunctionType

    def vector_index(field: str, kind: str, metric: str, params: dict | None = None):
        ip = client.prepare_index_params()
        ip.add_index(field, index_type=kind, metric_type=metric, params=params or {})
        return ip

    chunks = client.create_schema(auto_id=False)
    chunks.add_field("pk", DataType.INT64, is_primary=True)
    chunks.add_field("sid", DataType.INT64)
    chunks.add_field("gen", DataType.INT64)
    chunks.add_field("hash", DataType.VARCHAR, max_length=32)
    chunks.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
    chunks.add_field("terms", DataType.VARCHAR, max_length=MAX_TEXT_BYTES, enable_analyzer=True, analyzer_params=terms_analyzer)
    chunks.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    chunks.add_field("dense", DataType.FLOAT_VECTOR, dim=dimension)
    chunks.add_field("record", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
    chunks.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["terms"],
                                 output_field_names=["sparse"]))
    sentences = client.create_schema(auto_id=False)
    for name in ("pk", "sid", "gen"):
        sentences.add_field(name, DataType.INT64, is_primary=name == "pk")
    sentences.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    files = client.create_schema(auto_id=False)
    for name, kind in (("pk", DataType.INT64), ("gen", DataType.INT64), ("pending", DataType.INT64), ("retired", DataType.INT64),
                       ("claimed_at", DataType.DOUBLE)):
        files.add_field(name, kind, is_primary=name == "pk")
    for name, length in (("source", 4096), ("record", 4096), ("owner", 512)):
        files.add_field(name, DataType.VARCHAR, max_length=length)
    files.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field in every collection
    terms = client.create_schema(auto_id=False)
    terms.add_field("pk", DataType.INT64, is_primary=True)
    terms.add_field("df", DataType.INT64)
    terms.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    chunk_index = vector_index("sparse", "SPARSE_INVERTED_INDEX", "BM25", {"bm25_k1": bm25["k1"], "bm25_b": bm25["b"]})
    chunk_index.add_index("dense", index_type=dense_index, metric_type="IP", params=DENSE_PARAMS.get(dense_index, {}))
    return {"chunks": (chunks, chunk_index), "sentences": (sentences, vector_index("vector", "FLAT", "IP")),
            "files": (files, vector_index("v", "FLAT", "L2")), "terms": (terms, vector_index("v", "FLAT", "L2"))}


def collection_name(index: str | Path) -> str:
    """The Milvus collection of an index folder: its name in ASCII letters, digits and _, then a hash
    of its full resolved path, so two folders never share one ("a/index" and "b/index" differ)."""
    import hashlib

    path = Path(index).resolve()
    clean = "".join(c if c.isascii() and c.isalnum() else "_" for c in path.name)[:40]
    digest = hashlib.sha256(str(path).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{clean}_{digest}" if clean[:1].isalpha() else f"kb_{clean}_{digest}"


def legacy_collection_name(index: str | Path) -> str:
    """The name ragapp before 0.2 gave the collection (the folder's last name only), to point at it."""
    import hashlib

    raw = Path(index).resolve().name
    clean = "".join(c if c.isascii() and c.isalnum() else "_" for c in raw)
    if clean == raw and clean[:1].isalpha():
        return clean
    return f"kb_{clean[:40]}_{hashlib.sha256(raw.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"

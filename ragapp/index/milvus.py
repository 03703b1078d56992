"""An index in Milvus: Milvus Lite for a local ``.db`` path, a Milvus server or cluster by ``http(s)://`` URI.
The only reader and writer of ragapp's Milvus collections.

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

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ragapp.errors import ConfigError, IndexCorruptError, IndexMismatchError, IndexNotFoundError, IndexUnavailableError, NotAnIndexError
from ragapp.index.manifest import FileRecord, Manifest
from ragapp.types import Chunk

if TYPE_CHECKING:
    from ragapp.index.milvus_write import MilvusWriter

LAYOUT = "1"  # ragapp's Milvus layout, in the chunk collection's properties
_LAYOUT_KEY, _SETTINGS_KEY, _OWNER_KEY = "ragapp.layout", "ragapp.settings", "ragapp.owner"
BM25_TERMS = ("ragapp", "jieba")
# Milvus's vector indexes ragapp can ask for (DISKANN: a server only; see README "On Milvus" for sizes).
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
_BATCH = 256  # rows per insert
_QUERY_LIMIT = 16_384  # Milvus's largest query window
_CACHE = 50_000  # rows kept by a reader's caches before they start again
_FIELDS = ["text", "record", "hash", "dense"]  # what a search brings back of each row
_RECENT = 256
EF = 256  # HNSW search breadth at least (and 4x the hits asked): 98 % of the exact top 100 on SciFact, against 79-98 % at 100
_PREFETCH = 40  # sentence vectors fetched together: the reranker's 30 candidates and a few for copies  # rows of the last searches whose hashes and sentence vectors are fetched together
_STATE = 0  # files row holding the commit stamp
_INSTALL = 'pip install "pymilvus>=2.6" "milvus-lite>=3.2" (or: pip install "ragapp[milvus]")'


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


def _record(chunk: Chunk) -> str:
    return json.dumps({"id": chunk.id, "source": chunk.source, "page": chunk.page, "start": chunk.start, "end": chunk.end,
                       "sentences": chunk.sentences, "label": chunk.label, "ocr": chunk.ocr}, ensure_ascii=False)


def _chunk(text: str, record: str) -> Chunk:
    try:
        d = json.loads(record)
        d["sentences"] = tuple((int(a), int(b)) for a, b in d["sentences"])
        return Chunk(text=text, **d)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise IndexCorruptError(f"a chunk record in Milvus is unreadable ({exc}); rebuild with: ragapp ingest --rebuild PATH") from exc


class MilvusIndex:
    """Where an index lives when `[index] backend = "milvus"` (implements `IndexBackend`)."""

    def __init__(self, uri: str, collection: str, token_env: str = "MILVUS_TOKEN", dense_index: str = "HNSW",
                 timeout_s: float = 10.0, claim_timeout_s: float = 900.0, bm25_terms: str = "ragapp",
                 owner: str = "", legacy: str = "") -> None:
        if not (uri.startswith(("http://", "https://")) or uri.endswith(".db")):
            raise ConfigError(f"index uri must be a Milvus Lite file ending in .db or http(s)://HOST:PORT. Currently, it is {uri!r}")
        if not (collection[:1].isalpha() or collection[:1] == "_") or not all(c.isalnum() and c.isascii() or c == "_" for c in collection) \
                or len(collection) > 200:
            raise ConfigError(f"index collection must be letters, digits and _, starting with a letter. Currently, it is {collection!r}")
        if bm25_terms not in BM25_TERMS:
            raise ConfigError(f"index bm25_terms must be ragapp or jieba, not {bm25_terms!r}")
        if dense_index not in DENSE_INDEXES:
            raise ConfigError(f"index dense_index must be one of {', '.join(DENSE_INDEXES)}, not {dense_index!r}")
        self.uri, self.name, self.token_env = uri, collection, token_env
        # The index folder a derived collection belongs to (recorded at creation, checked at every open),
        # and the name an earlier ragapp gave it (pointed at when only that one exists).
        self.owner, self.legacy = owner, legacy
        self.dense_index, self.timeout_s, self.claim_timeout_s = dense_index, timeout_s, claim_timeout_s
        self.bm25_terms = bm25_terms  # for a new collection; an existing one keeps what it was made with
        self.names = {"chunks": collection, "sentences": f"{collection}_sentences", "files": f"{collection}_files",
                      "terms": f"{collection}_terms"}
        self.location = f"{uri} (Milvus collection {collection})"
        self._client = None
        self._loaded: set[str] = set()
        self._lock = threading.Lock()

    # -- the connection -------------------------------------------------------------------------

    def client(self):
        """The MilvusClient (connected on first use; an unreachable server is one clear error)."""
        with self._lock:
            if self._client is None:
                try:
                    from pymilvus import MilvusClient
                except ImportError as exc:
                    raise ConfigError(f"[index] backend milvus needs pymilvus and milvus-lite: {_INSTALL}") from exc
                # pymilvus logs every failed call with its traceback; ragapp reports each failure as one line.
                logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
                if not self.uri.startswith("http"):
                    Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
                self._client = self.call("connect", MilvusClient, uri=self.uri, token=os.environ.get(self.token_env, ""),
                                         timeout=self.timeout_s)
            return self._client

    def close(self) -> None:
        """Disconnect; for Milvus Lite also stop this process's server of the file, so another process
        may open it (other clients of that file in this process stop working too)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                if not self.uri.startswith("http"):
                    from milvus_lite.server_manager import server_manager_instance

                    server_manager_instance.release_server(self.uri)
            self._client, self._loaded = None, set()

    def call(self, what: str, fn: Callable, *args, **kwargs):
        """Run one Milvus call; its failure is IndexUnavailableError naming the URI and the call."""
        try:
            return fn(*args, **kwargs)
        except (IndexMismatchError, IndexCorruptError, NotAnIndexError, ConfigError):
            raise
        except Exception as exc:  # pymilvus raises MilvusException, grpc errors and ConnectionError alike
            message = getattr(exc, "message", None) or str(exc)
            raise IndexUnavailableError(f"Milvus at {self.uri}: {what} failed ({message.splitlines()[0][:300]}); "
                                        "check that the server answers and [index] uri") from exc

    def loaded(self, part: str, again: bool = False):
        """The client, with collection `part` loaded (Milvus serves only loaded collections; `again`
        after it was made or dropped)."""
        c = self.client()
        if again or part not in self._loaded:
            self.call("load_collection", c.load_collection, self.names[part])
            self._loaded.add(part)
        return c

    def query(self, part: str, filter: str, fields: Sequence[str], limit: int = _QUERY_LIMIT) -> list[dict]:
        """Rows of one collection matching `filter` (read-your-writes consistency)."""
        c = self.loaded(part)
        return self.call("query", c.query, self.names[part], filter=filter, output_fields=list(fields), limit=limit,
                         consistency_level="Strong")

    def scan(self, part: str, filter: str, fields: Sequence[str]) -> Iterator[dict]:
        """Every row of one collection matching `filter`, a page at a time."""
        c = self.loaded(part)
        pages = self.call("query_iterator", c.query_iterator, self.names[part], batch_size=4096, filter=filter,
                          output_fields=list(fields))
        try:
            while page := self.call("query_iterator", pages.next):
                yield from page
        finally:
            pages.close()

    def rows_by_pk(self, part: str, ids: Sequence[int], fields: Sequence[str]) -> list[dict]:
        """The rows of one collection with these primary keys (asked 4,096 at a time)."""
        found: list[dict] = []
        for at in range(0, len(ids), 4096):
            found += self.query(part, f"pk in [{', '.join(map(str, ids[at : at + 4096]))}]", fields)
        return found

    def count(self, part: str, filter: str) -> int:
        """How many rows of one collection match `filter`."""
        c = self.loaded(part)
        rows = self.call("count", c.query, self.names[part], filter=filter, output_fields=["count(*)"], consistency_level="Strong")
        return int(rows[0]["count(*)"])

    # -- IndexBackend ---------------------------------------------------------------------------

    def is_lite(self) -> bool:
        """Milvus Lite (a .db file, or its gRPC server), whose analyzers are fewer."""
        c = self.client()
        return str(self.call("get_server_version", c.get_server_version)).startswith("milvus_lite")

    def _reachable(self) -> bool:
        """False for a Milvus Lite file not made yet (nothing is created just to look)."""
        return self.uri.startswith("http") or Path(self.uri).exists()

    def _properties(self) -> dict | None:
        """The chunk collection's properties (None: no collection). A collection of that name that
        ragapp did not make is refused."""
        c = self.client()
        if not self.call("has_collection", c.has_collection, self.name):
            return None
        props = self.call("describe_collection", c.describe_collection, self.name).get("properties", {})
        if props.get(_LAYOUT_KEY) is None:
            raise NotAnIndexError(f"Milvus collection {self.name!r} at {self.uri} was not made by ragapp; "
                                  "choose another [index] collection")
        if self.owner and props.get(_OWNER_KEY, self.owner) != self.owner:
            raise NotAnIndexError(f"Milvus collection {self.name!r} at {self.uri} belongs to the index at "
                                  f"{props[_OWNER_KEY]}, not {self.owner}; name another in [index] collection")
        if props[_LAYOUT_KEY] != LAYOUT:
            raise IndexMismatchError(f"Milvus collection {self.name!r} at {self.uri} has ragapp layout {props[_LAYOUT_KEY]}, this "
                                     f"ragapp reads {LAYOUT}; rebuild with: ragapp ingest --rebuild PATH")
        return props

    def settings(self) -> dict | None:
        """The settings the collection was built with (None: nothing committed yet)."""
        if not self._reachable():
            return None
        props = self._properties()
        if not props or _SETTINGS_KEY not in props:
            return None
        try:
            settings = json.loads(props[_SETTINGS_KEY])
            if set(settings) != {"embedding", "split", "bm25"} or not all(isinstance(v, dict) for v in settings.values()):
                raise ValueError("not the three setting groups")
            return settings
        except (ValueError, TypeError, RecursionError) as exc:
            raise self.corrupt(f"settings property unreadable ({exc})") from exc

    def corrupt(self, what: str) -> IndexCorruptError:
        return IndexCorruptError(f"Milvus collection {self.name!r} at {self.uri}: {what}; rebuild with: ragapp ingest --rebuild PATH")

    def exists(self) -> bool:
        """True once an ingest has committed into the collection."""
        return self.settings() is not None

    def check_writable(self) -> None:
        """Raise NotAnIndexError when the collection's name is taken by one ragapp did not make."""
        if self._reachable():
            self._properties()

    def stamp(self) -> int | None:
        """Changes at every commit (None: no index yet)."""
        if not self.exists():
            self._check_moved()
            return None
        rows = self.query("files", f"pk == {_STATE}", ["gen"])
        return int(rows[0]["gen"]) if rows else 0

    def _check_moved(self) -> None:
        """IndexNotFoundError with the way on, when only the collection an earlier ragapp named exists."""
        c = self.client()
        if self.legacy and self._reachable() and self.call("has_collection", c.has_collection, self.legacy):
            raise IndexNotFoundError(
                f"no index in Milvus collection {self.name!r} at {self.uri}; {self.legacy!r} there was named by an "
                f"earlier ragapp after the folder's last name only: set [index] collection = '{self.legacy}' to keep "
                "using it, or ingest again to fill the new one")

    def manifest(self) -> Manifest:
        """Settings from the collection's properties, documents from its files collection."""
        settings = self.settings()
        if settings is None:
            raise IndexNotFoundError(f"no index at {self.location} (run: ragapp ingest PATH)")
        files = {}
        for row in self._file_rows():
            if row["gen"] and row["pk"] != _STATE:
                try:
                    files[row["source"]] = FileRecord(**json.loads(row["record"]))
                except (ValueError, TypeError, RecursionError) as exc:
                    raise self.corrupt(f"document record of {row['source']} unreadable ({exc})") from exc
        stamp = self.stamp() or 0
        return Manifest(**settings, generation=max(1, stamp // 1000), updated_at=stamp / 1e6,
                        chunks=sum(r.chunks for r in files.values()), files=dict(sorted(files.items())))

    def _file_rows(self) -> list[dict]:
        return list(self.scan("files", "pk >= 0", ["pk", "source", "gen", "pending", "retired", "record", "owner", "claimed_at"]))

    def open(self) -> MilvusReader:
        """A reader of what is committed now."""
        manifest = self.manifest()
        self._check_schema(manifest.embedding["dimension"])
        committed, hidden = {}, {}
        for row in self._file_rows():
            if row["pk"] == _STATE:
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

    def writer(self, dimension: int, bm25: dict, previous: MilvusReader | None) -> MilvusWriter:
        """One ingest's writer; without `previous` an existing collection is dropped first (a rebuild)."""
        from ragapp.index.milvus_write import MilvusWriter

        return MilvusWriter(self, dimension, bm25, previous)


def visible_filter(committed: dict[int, int], hidden: dict[int, int]) -> str:
    """Rows of committed versions, except those of files being written or retired (their committed rows only)."""
    if not committed:
        return "pk < 0"
    expr = f"gen in [{', '.join(str(g) for g in sorted(set(committed.values())))}]"
    if hidden:
        expr += " and not (" + " or ".join(f"(sid == {s} and gen != {g})" for s, g in sorted(hidden.items())) + ")"
    return expr


class MilvusReader:
    """What is committed in a Milvus index (implements `IndexReader`). Rows are Milvus primary keys;
    what a search returns is kept, so the chunks, hashes and sentence vectors the reranker asks for
    next come in one query each."""

    def __init__(self, backend: MilvusIndex, manifest: Manifest, visible: str) -> None:
        self.backend, self.manifest, self.visible = backend, manifest, visible
        self.bm25_terms = manifest.bm25.get("milvus_terms", "ragapp")
        self._chunks: dict[int, tuple[Chunk, str]] = {}
        self._groups: dict[str, list[int]] = {}
        self._sentences: dict[int, np.ndarray] = {}
        self._vectors: dict[int, np.ndarray] = {}
        self._asked: list[int] = []  # rows asked for since the last BM25 search, in order (fusion's order)
        self._idf: dict[str, float] = {}
        self._recent: deque[int] = deque(maxlen=_RECENT)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.manifest.chunks

    def _keep(self, hits: list[dict]) -> None:
        with self._lock:
            if len(self._chunks) > _CACHE:
                self._chunks, self._groups, self._sentences, self._vectors = {}, {}, {}, {}
            for h in hits:
                e = h["entity"]
                self._chunks[h["pk"]] = (_chunk(e["text"], e["record"]), e["hash"])
                if "dense" in e:
                    self._vectors[h["pk"]] = np.asarray(e["dense"], dtype=np.float32)
            self._recent.extend(h["pk"] for h in hits)

    def _search(self, data, field: str, n: int, params: dict) -> list[dict]:
        if field == "sparse":  # a new query: fusion is about to ask for its rows in fused order
            self._asked = []
        c = self.backend.loaded("chunks")
        found = self.backend.call("search", c.search, self.backend.name, data=data, anns_field=field, limit=n, filter=self.visible,
                                  search_params=params, output_fields=_FIELDS, consistency_level="Strong")
        hits = list(found[0]) if found else []
        self._keep(hits)
        return hits

    def dense_top_n(self, query_vector: np.ndarray, n: int) -> list[tuple[int, float]]:
        """Best `n` chunks by inner product, as (row, score)."""
        params = {"metric_type": "IP", "params": {"ef": max(EF, 4 * n), "nprobe": 32}}
        return [(h["pk"], float(h["distance"])) for h in self._search([np.asarray(query_vector, np.float32).tolist()], "dense", n, params)]

    def bm25_top_n(self, terms: Sequence[str], n: int, text: str = "") -> list[tuple[int, float]]:
        """Best `n` chunks by Milvus's BM25 over ragapp's `terms`, or over `text` through jieba (as the
        collection was made: `[index] bm25_terms`), as (row, score)."""
        query = " ".join(terms) if self.bm25_terms == "ragapp" else text
        if not query.strip() or not terms:
            return []
        self._idfs(terms)  # the reranker and citations ask for these next: one query for all
        hits = self._search([query], "sparse", n, {"metric_type": "BM25"})
        # Milvus Lite reports BM25 as a negated distance; a server as the score.
        return [(h["pk"], abs(float(h["distance"]))) for h in hits if h["distance"]]

    def _fetch(self, rows: Sequence[int]) -> None:
        missing = [r for r in rows if r not in self._chunks or r not in self._vectors]
        if missing:
            found = self.backend.rows_by_pk("chunks", missing, ["pk", *_FIELDS])
            self._keep([{"pk": r["pk"], "entity": r} for r in found])

    def _row(self, row: int) -> tuple[Chunk, str]:
        if len(self._asked) < _PREFETCH and row not in self._asked:
            self._asked.append(row)
        if row not in self._chunks:
            self._fetch([row])
        if row not in self._chunks:
            raise KeyError(f"row {row} is not in Milvus collection {self.backend.name!r}")
        return self._chunks[row]

    def chunk(self, row: int) -> Chunk:
        """The chunk at `row`."""
        return self._row(row)[0]

    def text_hash(self, row: int) -> str:
        """Content hash of the chunk at `row`."""
        return self._row(row)[1]

    def same_text_rows(self, row: int) -> list[int]:
        """Every visible row whose text equals that of `row`, `row` first (found for the last search's rows at once)."""
        h = self.text_hash(row)
        if h not in self._groups:
            wanted = {self._chunks[r][1] for r in self._recent if r in self._chunks} | {h}
            wanted -= set(self._groups)
            found = self.backend.query("chunks", f"hash in [{', '.join(json.dumps(x) for x in sorted(wanted))}] and ({self.visible})",
                                       ["pk", "hash"])
            groups: dict[str, list[int]] = {x: [] for x in wanted}
            for r in sorted(found, key=lambda r: r["pk"]):
                groups[r["hash"]].append(r["pk"])
            self._groups.update(groups)
        return [row] + [r for r in self._groups[h] if r != row]

    def row_of_text(self, text_hash: str, sentences: tuple[tuple[int, int], ...]) -> int | None:
        """A visible row with this text cut into these sentences (its vectors can be reused), or None."""
        found = self.backend.query("chunks", f"hash == {json.dumps(text_hash)} and ({self.visible})", ["pk", *_FIELDS], 16)
        self._keep([{"pk": r["pk"], "entity": r} for r in found])
        return next((r["pk"] for r in found if self._chunks[r["pk"]][0].sentences == sentences), None)

    def vector(self, row: int) -> np.ndarray:
        """The dense vector of one chunk (kept from the search or query that found it)."""
        if row not in self._vectors:
            self._fetch([row])
        if row not in self._vectors:
            raise KeyError(f"row {row} is not in Milvus collection {self.backend.name!r}")
        return self._vectors[row]

    def chunk_sentence_vectors(self, row: int) -> np.ndarray:
        """Sentence vectors of one chunk (with those of the first rows fusion asked for: the reranker's candidates)."""
        if row not in self._sentences:
            rows = sorted({row, *(r for r in self._asked if r not in self._sentences)})
            self._fetch(rows)
            keys = {r: [row_key(r, i) for i in range(len(self._chunks[r][0].sentences))] for r in rows}
            found = {s["pk"]: s["vector"] for s in self.backend.rows_by_pk("sentences", [k for ks in keys.values() for k in ks],
                                                                          ["pk", "vector"])}
            dim = self.manifest.embedding["dimension"]
            for r, ks in keys.items():
                if not all(k in found for k in ks):
                    raise self.backend.corrupt(f"sentence vectors of row {r} missing")
                self._sentences[r] = np.asarray([found[k] for k in ks], dtype=np.float32).reshape(-1, dim)
        return self._sentences[row]

    def rows(self) -> Iterator[tuple[int, Chunk, str]]:
        """Every visible (row, chunk, text hash), by row."""
        found = sorted(self.backend.scan("chunks", self.visible, ["pk", "text", "record", "hash"]), key=lambda r: r["pk"])
        return ((r["pk"], _chunk(r["text"], r["record"]), r["hash"]) for r in found)

    def term_idf(self, term: str) -> float:
        """BM25 idf of one of ragapp's terms, from NAME_terms (0 for a term the index has never seen)."""
        if term not in self._idf:
            self._idfs([term])
        return self._idf[term]

    def _idfs(self, terms: Sequence[str]) -> None:
        todo = {term_id(t): t for t in terms if t not in self._idf}
        if not todo:
            return
        found = {r["pk"]: int(r["df"]) for r in self.backend.rows_by_pk("terms", list(todo), ["pk", "df"])}
        n = max(len(self), 1)
        for tid, term in todo.items():
            df = found.get(tid, 0)
            self._idf[term] = math.log(1 + (n - df + 0.5) / (df + 0.5)) if df > 0 else 0.0


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


"""The connection to the collections of one Milvus index and what they hold."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ragapp.errors import ConfigError, IndexCorruptError, IndexMismatchError, IndexNotFoundError, IndexUnavailableError, NotAnIndexError
from ragapp.index.manifest import FileRecord, Manifest
from ragapp.index.milvus.layout import BM25_TERMS, DENSE_INDEXES, INSTALL, LAYOUT, LAYOUT_KEY, OWNER_KEY, QUERY_LIMIT, SETTINGS_KEY, STATE_ROW

# gRPC waits out a growing backoff (up to 2 minutes) before it tries a server that went away again,
# failing every call meanwhile: capped, a server that is back is used within a second. No keepalive
# pings while no call is open: a Milvus Lite server (gRPC's default policy) answers pings without
# data by closing the connection ("too_many_pings").
_GRPC = {"grpc.initial_reconnect_backoff_ms": 500, "grpc.min_reconnect_backoff_ms": 500, "grpc.max_reconnect_backoff_ms": 1000,
         "grpc.keepalive_permit_without_calls": 0}


def _unreachable(exc: Exception) -> bool:
    """True when the server was not reached (gone, restarting), not when it answered with an error
    ("already exists" is an answer: the client stays)."""
    import grpc
    from pymilvus.client.types import Status
    from pymilvus.exceptions import MilvusException, MilvusUnavailableException

    if isinstance(exc, ConnectionError | MilvusUnavailableException):
        return True
    if isinstance(exc, grpc.RpcError):
        code = getattr(exc, "code", None)
        return callable(code) and code() == grpc.StatusCode.UNAVAILABLE
    return isinstance(exc, MilvusException) and exc.code == Status.CONNECT_FAILED


class MilvusCollections:
    """The four collections of one index: the connection, their properties (layout, owner, settings),
    the committed manifest; what the reader and the writer share (MilvusIndex adds both)."""

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
        self._client: Any = None
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
                    raise ConfigError(f"[index] backend milvus needs pymilvus and milvus-lite: {INSTALL}") from exc
                # pymilvus logs every failed call with its traceback; ragapp reports each failure as one line.
                logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
                if not self.uri.startswith("http"):
                    Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
                # A connection of its own (pymilvus shares one per address by default, made with the first
                # client's options and kept open after close()): these options hold, and a forgotten
                # connection is really closed and made anew.
                self._client = self.call("connect", MilvusClient, uri=self.uri, token=os.environ.get(self.token_env, ""),
                                         timeout=self.timeout_s, grpc_options=_GRPC, dedicated=True)
            return self._client

    def _forget(self) -> None:
        """After a failed call to a server: connect (and load the collections) anew on the next call, so a
        server that went away and came back (restarted, its collections released) serves again."""
        if not self.uri.startswith("http"):  # Milvus Lite in this process: its server is ragapp's own
            return
        with self._lock:
            old, self._client, self._loaded = self._client, None, set()
        if old is not None:
            try:
                old.close()
            except Exception:  # noqa: BLE001 - a connection already broken
                pass

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
            if what != "connect" and _unreachable(exc):  # (connect: under the lock, nothing to forget yet)
                self._forget()
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

    def query(self, part: str, filter: str, fields: Sequence[str], limit: int = QUERY_LIMIT) -> list[dict]:
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
        if props.get(LAYOUT_KEY) is None:
            raise NotAnIndexError(f"Milvus collection {self.name!r} at {self.uri} was not made by ragapp; "
                                  "choose another [index] collection")
        if self.owner and props.get(OWNER_KEY, self.owner) != self.owner:
            raise NotAnIndexError(f"Milvus collection {self.name!r} at {self.uri} belongs to the index at "
                                  f"{props[OWNER_KEY]}, not {self.owner}; name another in [index] collection")
        if props[LAYOUT_KEY] != LAYOUT:
            raise IndexMismatchError(f"Milvus collection {self.name!r} at {self.uri} has ragapp layout {props[LAYOUT_KEY]}, this "
                                     f"ragapp reads {LAYOUT}; rebuild with: ragapp ingest --rebuild PATH")
        return props

    def settings(self) -> dict | None:
        """The settings the collection was built with (None: nothing committed yet)."""
        if not self._reachable():
            return None
        props = self._properties()
        if not props or SETTINGS_KEY not in props:
            return None
        try:
            settings = json.loads(props[SETTINGS_KEY])
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
        rows = self.query("files", f"pk == {STATE_ROW}", ["gen"])
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
            if row["gen"] and row["pk"] != STATE_ROW:
                try:
                    files[row["source"]] = FileRecord(**json.loads(row["record"]))
                except (ValueError, TypeError, RecursionError) as exc:
                    raise self.corrupt(f"document record of {row['source']} unreadable ({exc})") from exc
        stamp = self.stamp() or 0
        return Manifest(**settings, generation=max(1, stamp // 1000), updated_at=stamp / 1e6,
                        chunks=sum(r.chunks for r in files.values()), files=dict(sorted(files.items())))

    def _file_rows(self) -> list[dict]:
        return list(self.scan("files", "pk >= 0", ["pk", "source", "gen", "pending", "retired", "record", "owner", "claimed_at"]))


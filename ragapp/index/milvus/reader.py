"""Reading what is committed in a Milvus index."""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np

from ragapp.index.manifest import Manifest
from ragapp.index.milvus.connection import MilvusCollections
from ragapp.index.milvus.layout import chunk_from_record, row_key, term_id
from ragapp.records import Chunk

_CACHE = 50_000  # rows kept by a reader's caches before they start again
_FIELDS = ["text", "record", "hash", "dense"]  # what a search brings back of each row
_RECENT = 256
EF = 256  # HNSW search breadth at least (and 4x the hits asked): docs/milvus.md gives the recall it buys
_PREFETCH = 40  # rows of the last searches whose sentence vectors are fetched together: the reranker's 30 and copies


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

    def __init__(self, backend: MilvusCollections, manifest: Manifest, visible: str) -> None:
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
                self._chunks[h["pk"]] = (chunk_from_record(e["text"], e["record"]), e["hash"])
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
        return ((r["pk"], chunk_from_record(r["text"], r["record"]), r["hash"]) for r in found)

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



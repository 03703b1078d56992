"""Writing one ingest into ragapp's Milvus collections (the layout: layout.py)."""

from __future__ import annotations

import json
import time
from collections import Counter, OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import replace

import numpy as np

from ragapp.errors import IndexMismatchError, IndexUnavailableError
from ragapp.index.manifest import Manifest, index_settings
from ragapp.index.milvus.connection import MilvusCollections
from ragapp.index.milvus.layout import (
    BATCH,
    LAYOUT,
    LAYOUT_KEY,
    MAX_TEXT_BYTES,
    OWNER_KEY,
    SETTINGS_KEY,
    STATE_ROW,
    analyzer,
    chunk_record,
    claim_alive,
    collection_schemas,
    file_row,
    row_key,
    source_id,
    term_id,
    this_process,
)
from ragapp.index.milvus.reader import MilvusReader
from ragapp.index.scope import AbortUnlessCommitted
from ragapp.records import Chunk

_SHARED = 4096  # texts whose vectors a writer keeps to share with a repeat of the same text
_SETTLE = 64  # Milvus Lite: writes between flushes (its queries slow down with unflushed rows; measured)


def _sha256(record: str) -> str:
    try:
        return str(json.loads(record).get("sha256", "")) if record else ""
    except (ValueError, AttributeError, RecursionError):
        return ""


class MilvusWriter(AbortUnlessCommitted):
    """One ingest into a Milvus index (implements `IndexWriter`): rows are inserted under this
    writer's version as they come; `commit` makes each claimed file's new rows visible (one files row
    upsert each), then deletes its old rows."""

    def __init__(self, backend: MilvusCollections, dimension: int, bm25: dict, previous: MilvusReader | None,
                 rebuild: bool = False) -> None:
        self.backend, self.dimension, self.previous = backend, dimension, previous
        self.version = time.time_ns() // 1000
        self.owner = this_process()
        self._texts: OrderedDict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._buffer: list[tuple[dict, np.ndarray]] = []
        self._pks: list[tuple[int, int]] = []  # inserted chunk rows and their sentence counts, in order
        self._terms: dict[int, Counter] = {}  # per claimed source: document frequencies of its new rows
        self._claimed: dict[int, str] = {}
        self._done = False
        self._writes: dict[str, int] = {}
        self._seq = 0
        self._total: int | None = None
        # Only an asked-for rebuild drops: "no previous" also means another writer committed the first
        # generation after this ingest looked, whose rows must stay.
        drop = rebuild and backend.exists()
        made = None if drop else backend.settings()
        if made and int(made["embedding"].get("dimension", dimension)) != dimension:
            raise IndexMismatchError(f"{backend.location} holds vectors of dimension {made['embedding'].get('dimension')}, "
                                     f"this embedder makes {dimension}; rebuild with: ragapp ingest --rebuild PATH")
        # An existing collection keeps the BM25 terms it was made with.
        self.bm25_terms = made["bm25"].get("milvus_terms", "ragapp") if made else backend.bm25_terms
        self.analyzer = made["bm25"].get("analyzer") if made else analyzer(self.bm25_terms, backend.is_lite())
        self._create(bm25, drop)

    def _create(self, bm25: dict, drop: bool) -> None:
        c = self.backend.client()
        schemas = collection_schemas(c, self.dimension, bm25, self.backend.dense_index, self.analyzer)
        for part, name in self.backend.names.items():
            if drop:
                self.backend.call("drop_collection", c.drop_collection, name)
            if not self.backend.call("has_collection", c.has_collection, name):
                self._make(part, *schemas[part])
            self.backend.loaded(part, again=True)
        self.backend.check_writable()

    def _make(self, part: str, schema, index) -> None:
        """Create one collection; another writer creating it at the same moment is no failure."""
        c, name = self.backend.client(), self.backend.names[part]
        # Sentence vectors are read ~30 chunks at a time by the reranker: a server may keep them on
        # local disk (memory-mapped) instead of in memory, the largest share of an index (docs/milvus.md).
        owner = {OWNER_KEY: self.backend.owner} if self.backend.owner else {}
        props = {"chunks": {LAYOUT_KEY: LAYOUT, **owner}, "sentences": {"mmap.enabled": "true"}}.get(part, {})
        try:
            self.backend.call("create_collection", c.create_collection, name, schema=schema, index_params=index, properties=props)
        except IndexUnavailableError:
            if not self.backend.call("has_collection", c.has_collection, name):
                raise

    @property
    def rows(self) -> int:
        """Chunks written so far; after `commit`, chunks in the index."""
        return self._total if self._total is not None else len(self._pks) + len(self._buffer)

    def claim(self, source: str, sha256: str = "") -> bool:
        """Take `source` for this writer; False when another live writer holds it, or has committed it
        with content `sha256` since this ingest looked.

        Milvus has no compare-and-set: two writers that both read the row before either writes it may
        both read their own claim back. `commit` settles that (the last claim written wins; the other
        writer's rows of the file go and its commit leaves the file out)."""
        sid = source_id(source)
        found = self.backend.query("files", f"pk == {sid}", ["pk", "gen", "pending", "retired", "record", "owner", "claimed_at"])
        row = found[0] if found else None
        if row and row["pending"] not in (0, self.version) and claim_alive(row, self.backend.claim_timeout_s):
            return False
        if row and row["gen"] and not row["pending"] and sha256 and _sha256(row["record"]) == sha256:
            return False
        mine = file_row(source, row["gen"] if row else 0, self.version, row["retired"] if row else 0, None, self.owner, time.time())
        mine["record"] = row["record"] if row else ""
        self._upsert("files", [mine])
        self._settle("files")
        again = self.backend.query("files", f"pk == {sid}", ["pending"])
        if not again or again[0]["pending"] != self.version:
            return False
        if row and row["pending"] not in (0, self.version):  # a dead writer's rows of this file go
            self._delete(f"sid == {sid} and gen == {row['pending']}")
        self._claimed[sid] = source
        self._terms[sid] = Counter()
        return True

    def has(self, text_hash: str, sentences: tuple[tuple[int, int], ...]) -> bool:
        """True if this writer holds vectors for this text and these sentences."""
        return (text_hash, hash(sentences)) in self._texts

    def add(self, chunk: Chunk, text_hash: str, tokens: Sequence[str], vector: np.ndarray | None = None,
            sentence_vectors: np.ndarray | None = None) -> None:
        """Queue one chunk (inserted in batches). Vectors may be left out when `has` says so."""
        key = (text_hash, hash(chunk.sentences))
        if vector is None or sentence_vectors is None:
            vector, sentence_vectors = self._texts[key]
        elif len(sentence_vectors) != len(chunk.sentences):
            raise ValueError(f"chunk {chunk.id}: not one vector per sentence")
        self._texts[key] = (vector, sentence_vectors)
        self._texts.move_to_end(key)
        if len(self._texts) > _SHARED:
            self._texts.popitem(last=False)
        terms = " ".join(tokens) if self.bm25_terms == "ragapp" else chunk.text
        if max(len(chunk.text.encode("utf-8", "surrogatepass")), len(terms.encode("utf-8", "surrogatepass"))) > MAX_TEXT_BYTES:
            raise ValueError(f"chunk {chunk.id}: text longer than Milvus's {MAX_TEXT_BYTES} bytes")
        sid = source_id(chunk.source)
        if sid not in self._claimed:
            raise ValueError(f"{chunk.source}: not claimed by this writer")
        self._terms[sid].update(set(tokens))
        self._seq += 1  # never reused, also after a rollback
        row = {"pk": row_key(self.version, self._seq), "sid": sid, "gen": self.version, "hash": text_hash, "text": chunk.text,
               "terms": terms, "record": chunk_record(chunk),
               "dense": np.asarray(vector, np.float32).tolist()}
        self._buffer.append((row, np.asarray(sentence_vectors, np.float32)))
        if len(self._buffer) >= BATCH:
            self._insert()

    def _insert(self) -> None:
        if not self._buffer:
            return
        c = self.backend.client()
        self.backend.call("insert", c.insert, self.backend.names["chunks"], [r for r, _ in self._buffer])
        sentences = [{"pk": row_key(r["pk"], i), "sid": r["sid"], "gen": self.version, "vector": v.tolist()}
                     for r, vs in self._buffer for i, v in enumerate(vs)]
        if sentences:
            self.backend.call("insert", c.insert, self.backend.names["sentences"], sentences)
        self._pks += [(r["pk"], len(vs)) for r, vs in self._buffer]
        self._buffer = []
        self._settle("chunks", "sentences")

    def _settle(self, *parts: str) -> None:
        """Milvus Lite queries scan its in-memory table, which grows with every write until a flush:
        flush every _SETTLE writes there (a server flushes on its own, and a flush is costly there)."""
        if self.backend.uri.startswith("http"):
            return
        self._writes[parts[0]] = self._writes.get(parts[0], 0) + 1
        if self._writes[parts[0]] % _SETTLE == 0:
            self._flush(*parts)

    def mark(self) -> int:
        """A point to roll back to."""
        return self.rows

    def rollback(self, mark: int) -> None:
        """Forget every chunk added after `mark` (a file that failed half way through)."""
        self._insert()
        gone, self._pks = self._pks[mark:], self._pks[:mark]
        for at in range(0, len(gone), BATCH * 8):
            part = gone[at : at + BATCH * 8]
            sentences = [row_key(pk, i) for pk, n in part for i in range(n)]
            self._delete_parts(f"pk in [{', '.join(str(pk) for pk, _ in part)}]", f"pk in [{', '.join(map(str, sentences))}]")

    def _delete(self, where: str) -> None:
        self._delete_parts(where, where)

    def _delete_parts(self, chunks: str, sentences: str) -> None:
        c = self.backend.client()
        self.backend.call("delete", c.delete, self.backend.names["chunks"], filter=chunks)
        self.backend.call("delete", c.delete, self.backend.names["sentences"], filter=sentences)

    def _upsert(self, part: str, rows: list[dict]) -> None:
        c = self.backend.client()
        for at in range(0, len(rows), BATCH * 8):
            self.backend.call("upsert", c.upsert, self.backend.names[part], rows[at : at + BATCH * 8])

    def _flush(self, *parts: str) -> None:
        c = self.backend.client()
        for part in parts:
            self.backend.call("flush", c.flush, self.backend.names[part])

    def commit(self, manifest: Manifest, drop: Collection[str] = ()) -> Manifest:
        """Make each new file visible (one row upsert each, after its rows are flushed), then delete
        the rows they replace and those of the documents in `drop` that left the index."""
        self._insert()
        self._flush("chunks", "sentences")
        if self.backend.settings() is None:
            settings = index_settings(manifest.embedding, manifest.split,
                                      {**manifest.bm25, "milvus_terms": self.bm25_terms, "analyzer": self.analyzer})
            self.backend.call("alter_collection_properties", self.backend.client().alter_collection_properties, self.backend.name,
                        {SETTINGS_KEY: json.dumps(settings)})
        held = {r["pk"]: r for r in self.backend.rows_by_pk("files", sorted({source_id(s) for s in drop} | set(self._claimed)),
                                                      ["pk", "gen", "pending"])}
        new = [s for s in drop if s in manifest.files and held.get(source_id(s), {}).get("pending") == self.version]
        lost = [s for s in drop if s in manifest.files and s not in new and source_id(s) in self._claimed]
        gone = [s for s in drop if s not in manifest.files]
        old_gen = {s: held.get(source_id(s), {}).get("gen", 0) for s in new + gone}
        self._count_terms(new, gone, old_gen, manifest.bm25)
        # The moment of commit, file by file: each row upsert makes one file's new version current.
        self._upsert("files", [file_row(s, self.version, 0, old_gen[s], manifest.files[s]) for s in new]
                     + [file_row(s, 0, 0, old_gen[s]) for s in gone if old_gen[s]])
        self._flush("files")
        self._delete_replaced([source_id(s) for s in new], [source_id(s) for s in gone])
        self._release(new, manifest)
        self._upsert("files", [file_row("", time.time_ns() // 1000) | {"pk": STATE_ROW}])
        self._flush("files")
        self._done = True
        self._total = sum(r.chunks for r in self.backend.manifest().files.values())
        # What this writer committed: a file whose claim another writer took over in the meantime is its.
        return replace(manifest, files={s: r for s, r in manifest.files.items() if s not in lost})

    def _delete_replaced(self, new_ids: list[int], gone_ids: list[int]) -> None:
        """Rows of other versions of the new files; every row of the removed ones, then their files rows."""
        for at in range(0, len(new_ids), 4096):
            self._delete(f"sid in [{', '.join(map(str, new_ids[at : at + 4096]))}] and gen != {self.version}")
        for at in range(0, len(gone_ids), 4096):
            self._delete(f"sid in [{', '.join(map(str, gone_ids[at : at + 4096]))}]")
        self._flush("chunks", "sentences")
        c = self.backend.client()
        for at in range(0, len(gone_ids), 4096):
            self.backend.call("delete", c.delete, self.backend.names["files"], filter=f"pk in [{', '.join(map(str, gone_ids[at : at + 4096]))}]")

    def _release(self, committed: list[str], manifest: Manifest) -> None:
        """Committed files lose their retired mark; claimed files that were not committed (failed, or
        unchanged after all) lose this writer's rows and claim. A file whose row already names this
        writer's version (a commit cut short) keeps its rows."""
        done = {source_id(s) for s in committed}
        rows = [file_row(s, self.version, 0, 0, manifest.files[s]) for s in committed]
        rest = [sid for sid in self._claimed if sid not in done]
        for found in self.backend.rows_by_pk("files", rest, ["pk", "source", "gen", "pending", "retired", "record"]):
            if found["gen"] == self.version:
                continue
            self._delete(f"sid == {found['pk']} and gen == {self.version}")
            if found["pending"] == self.version:
                rows.append({**file_row(found["source"], found["gen"], 0, found["retired"]), "record": found["record"]})
        self._upsert("files", rows)

    def _count_terms(self, new: list[str], gone: list[str], old_gen: dict[str, int], bm25: dict) -> None:
        """Document frequencies move by the new files' rows and the rows they replace or remove
        (read-modify-write: two writers committing at the same moment can lose each other's counts;
        they only weight the reranker's term coverage and citations)."""
        from ragapp.terms import Tokenizer

        delta: Counter = Counter()
        for s in new:
            delta.update(self._terms.get(source_id(s), Counter()))
        tokenizer = Tokenizer(bm25["chinese"], bm25["stem"])
        for s in new + gone:
            if old_gen[s]:
                for row in self.backend.query("chunks", f"sid == {source_id(s)} and gen == {old_gen[s]}", ["text"]):
                    delta.subtract(set(tokenizer(row["text"])))
        ids = {term_id(t): d for t, d in delta.items() if d}
        have = {r["pk"]: r["df"] for r in self.backend.rows_by_pk("terms", list(ids), ["pk", "df"])}
        self._upsert("terms", [{"pk": k, "df": max(0, have.get(k, 0) + d), "v": [0.0, 0.0]} for k, d in ids.items()])

    def abort(self) -> None:
        """Delete this writer's rows and claims; what is committed stays as it was."""
        self._done = True
        self._buffer = []
        try:
            self._delete(f"gen == {self.version}")
            self._release([], Manifest(embedding={}, split={}, bm25={}))
        except Exception:  # the server may be what failed; the rows stay invisible either way
            pass


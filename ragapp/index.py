"""Index stage: the on-disk index (chunk store, FAISS, sentence vectors, BM25) with atomic commits.

Layout of an index directory:

    manifest.json      which generation is current, how it was built, per-file hashes, part checksums
    gen-000007/        one complete generation: chunks.jsonl, dense.faiss, sentences.npy, bm25_*.npy/json
    .lock              held by the one process that writes

A commit writes a new generation folder beside the current one (fsync every file), then replaces
manifest.json by rename. A crash at any moment leaves the previous manifest pointing at the
previous, complete generation; readers never see a mix.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ragapp.bm25 import BM25Index
from ragapp.errors import IndexCorruptError, IndexLockedError, IndexMismatchError, IndexNotFoundError, IndexWriteError
from ragapp.types import Chunk

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


def text_hash(text: str) -> str:
    """Content hash of a chunk's text: equal texts share one embedding."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def file_sha256(path: Path) -> str:
    """sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@dataclass
class FileRecord:
    """What the manifest remembers about one indexed document."""

    sha256: str
    size: int
    chunks: int
    ingested_at: float


@dataclass
class Manifest:
    """How an index was built and which generation is current."""

    embedding: dict
    split: dict
    bm25: dict
    generation: int = 0
    directory: str = ""
    schema_version: int = SCHEMA_VERSION
    ragapp_version: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    chunks: int = 0
    sentences: int = 0
    files: dict[str, FileRecord] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialised form (stable key order)."""
        return json.dumps(asdict(self), ensure_ascii=False, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse; raises ValueError/KeyError/TypeError on malformed input."""
        data = json.loads(text)
        data["files"] = {k: FileRecord(**v) for k, v in data.get("files", {}).items()}
        return cls(**data)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def read_manifest(path: str | Path) -> Manifest:
    """The committed manifest of the index at `path`."""
    file = Path(path) / MANIFEST
    if not file.exists():
        raise IndexNotFoundError(f"no index at {path} (run: ragapp ingest PATH --index {path})")
    try:
        manifest = Manifest.from_json(file.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexCorruptError(f"{file}: unreadable manifest ({exc}); rebuild with: ragapp ingest --rebuild PATH --index {path}") from exc
    if manifest.schema_version != SCHEMA_VERSION:
        raise IndexMismatchError(f"{file}: index schema {manifest.schema_version}, this ragapp reads {SCHEMA_VERSION}; rebuild with: ragapp ingest --rebuild PATH --index {path}")
    return manifest


class Index:
    """A loaded, read-only generation of an index: chunks, FAISS, sentence vectors and BM25."""

    def __init__(self, path: Path, manifest: Manifest, chunks: list[Chunk], hashes: list[str], dense,
                 sentence_vectors: np.ndarray, bm25: BM25Index) -> None:
        self.path = path
        self.manifest = manifest
        self.chunks = chunks
        self.hashes = hashes
        self.dense = dense
        self.sentence_vectors = sentence_vectors
        self.sentence_offsets = np.concatenate([[0], np.cumsum([len(c.sentences) for c in chunks])]).astype(np.int64)
        self.bm25 = bm25

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> Index:
        """Load the committed generation; with `verify`, check every part against its manifest checksum."""
        import faiss

        path = Path(path)
        manifest = read_manifest(path)
        gen = path / manifest.directory
        rebuild = f"rebuild with: ragapp ingest --rebuild PATH --index {path}"
        for name, digest in manifest.checksums.items():
            part = gen / name
            if not part.exists():
                raise IndexCorruptError(f"{part}: index file missing; {rebuild}")
            if verify and file_sha256(part) != digest:
                raise IndexCorruptError(f"{part}: checksum mismatch (truncated or altered); {rebuild}")
        try:
            chunks, hashes = [], []
            with open(gen / "chunks.jsonl", encoding="utf-8") as f:
                for line in f:
                    d = json.loads(line)
                    hashes.append(d.pop("hash"))
                    d["sentences"] = tuple(tuple(s) for s in d["sentences"])
                    chunks.append(Chunk(**d))
            dense = faiss.read_index(str(gen / "dense.faiss"))
            sentence_vectors = np.load(gen / "sentences.npy")
            bm25 = BM25Index.load(gen, manifest.bm25["k1"], manifest.bm25["b"], manifest.bm25["epsilon"])
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise IndexCorruptError(f"{gen}: cannot load index ({exc}); {rebuild}") from exc
        if not (len(chunks) == dense.ntotal == len(bm25) == manifest.chunks):
            raise IndexCorruptError(f"{gen}: parts disagree (chunks {len(chunks)}, vectors {dense.ntotal}, bm25 {len(bm25)}); {rebuild}")
        index = cls(path, manifest, chunks, hashes, dense, sentence_vectors, bm25)
        if index.sentence_offsets[-1] != len(sentence_vectors):
            raise IndexCorruptError(f"{gen}: sentence vectors do not match chunks; {rebuild}")
        return index

    def __len__(self) -> int:
        return len(self.chunks)

    def same_text_rows(self, row: int) -> list[int]:
        """Every row whose chunk text equals that of `row` (copies of a file), `row` first."""
        if not hasattr(self, "_rows_by_hash"):
            groups: dict[str, list[int]] = {}
            for i, h in enumerate(self.hashes):
                groups.setdefault(h, []).append(i)
            self._rows_by_hash = {h: rows for h, rows in groups.items() if len(rows) > 1}
        others = self._rows_by_hash.get(self.hashes[row], [])
        return [row] + [r for r in others if r != row]

    def is_current(self) -> bool:
        """False once another process committed a newer generation."""
        try:
            return read_manifest(self.path).generation == self.manifest.generation
        except (IndexNotFoundError, IndexCorruptError, IndexMismatchError):
            return True

    def dense_top_n(self, query_vector: np.ndarray, n: int) -> list[tuple[int, float]]:
        """Best `n` chunks by inner product (cosine on normalised vectors), as (row, score)."""
        if len(self) == 0:
            return []
        scores, ids = self.dense.search(np.ascontiguousarray(query_vector.reshape(1, -1), dtype=np.float32), min(n, len(self)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def chunk_sentence_vectors(self, row: int) -> np.ndarray:
        """Sentence vectors of one chunk (float32)."""
        a, b = self.sentence_offsets[row], self.sentence_offsets[row + 1]
        return self.sentence_vectors[a:b].astype(np.float32)

    def vectors(self) -> np.ndarray:
        """All chunk vectors, in row order."""
        if len(self) == 0:
            return np.zeros((0, self.manifest.embedding["dimension"]), dtype=np.float32)
        return self.dense.reconstruct_n(0, len(self))


def check_compatible(manifest: Manifest, embedding: dict, path: Path) -> None:
    """An index can only be used with the embedding model it was built with."""
    if manifest.embedding.get("model") != embedding.get("model"):
        raise IndexMismatchError(
            f"index {path} was built with embedding model {manifest.embedding.get('model')!r}, not "
            f"{embedding.get('model')!r}; use that model or rebuild with: ragapp ingest --rebuild PATH --index {path}")


@contextmanager
def write_lock(path: str | Path, wait: bool = True, on_wait=None) -> Iterator[None]:
    """Exclusive writer lock on an index directory (one writer at a time, readers never blocked)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise IndexLockedError(f"index {path} is being written by another process (try again, or drop --no-wait to wait)") from None
            if on_wait is not None:
                on_wait(f"waiting for another ingest to finish writing {path} ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def commit(path: str | Path, manifest: Manifest, chunks: Sequence[Chunk], hashes: Sequence[str], vectors: np.ndarray,
           sentence_vectors: np.ndarray, bm25: BM25Index) -> Manifest:
    """Write a new generation and make it current atomically. Call while holding `write_lock`.

    A failed write (disk full, permissions) removes what it wrote and raises IndexWriteError; the
    previous generation stays current."""
    path = Path(path)
    current = read_manifest(path).generation if (path / MANIFEST).exists() else 0
    try:
        return _commit(path, manifest, chunks, hashes, vectors, sentence_vectors, bm25)
    except OSError as exc:
        landed = read_manifest(path).generation if (path / MANIFEST).exists() else 0
        (path / f".{MANIFEST}.tmp").unlink(missing_ok=True)
        for leftover in path.glob("gen-*"):
            if leftover.name[4:].isdigit() and int(leftover.name[4:]) > max(current, landed):
                shutil.rmtree(leftover, ignore_errors=True)
        raise IndexWriteError(f"cannot write the index at {path}: {exc.strerror or exc}; the previous index is unchanged") from exc


def _commit(path: Path, manifest: Manifest, chunks: Sequence[Chunk], hashes: Sequence[str], vectors: np.ndarray,
            sentence_vectors: np.ndarray, bm25: BM25Index) -> Manifest:
    import faiss

    from ragapp import __version__

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    previous = read_manifest(path) if (path / MANIFEST).exists() else None
    generation = (previous.generation if previous else 0) + 1
    directory = f"gen-{generation:06d}"
    gen = path / directory
    if gen.exists():  # left over from a crashed writer: never referenced by a manifest
        shutil.rmtree(gen)
    gen.mkdir()
    with open(gen / "chunks.jsonl", "w", encoding="utf-8") as f:
        for c, h in zip(chunks, hashes):
            f.write(json.dumps({"id": c.id, "text": c.text, "source": c.source, "page": c.page, "start": c.start,
                                "end": c.end, "sentences": c.sentences, "hash": h}, ensure_ascii=False) + "\n")
    dense = faiss.IndexFlatIP(manifest.embedding["dimension"])
    if len(vectors):
        dense.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(dense, str(gen / "dense.faiss"))
    np.save(gen / "sentences.npy", np.ascontiguousarray(sentence_vectors, dtype=np.float16))
    names = ["chunks.jsonl", "dense.faiss", "sentences.npy", *bm25.save(gen)]
    for name in names:
        _fsync_file(gen / name)
    _fsync_dir(gen)
    now = time.time()
    manifest.generation = generation
    manifest.directory = directory
    manifest.ragapp_version = __version__
    manifest.created_at = previous.created_at if previous else now
    manifest.updated_at = now
    manifest.chunks = len(chunks)
    manifest.sentences = int(len(sentence_vectors))
    manifest.checksums = {name: file_sha256(gen / name) for name in names}
    tmp = path / f".{MANIFEST}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(manifest.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / MANIFEST)
    _fsync_dir(path)
    # Keep the previous generation for readers that are opening it right now; drop older ones.
    keep = {directory, previous.directory if previous else ""}
    for old in path.glob("gen-*"):
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    return manifest

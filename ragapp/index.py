"""Index stage: the on-disk index (chunk store, FAISS, sentence vectors, BM25) with atomic commits.

Layout of an index directory:

    manifest.json      which generation is current, how it was built, per-file hashes, part checksums
    gen-000007/        one complete generation: chunks.jsonl, dense.faiss, sentences.npy, bm25_*.npy/json
    .lock              held by the one process that writes

A GenerationWriter streams a new generation folder beside the current one, chunk by chunk (so
memory does not grow with the input), fsyncs every file, then replaces manifest.json by rename. A crash at any moment leaves the previous manifest pointing at the
previous, complete generation; readers never see a mix.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ragapp.bm25 import BM25Index
from ragapp.digest import file_sha256
from ragapp.errors import (
    IndexCorruptError,
    IndexLockedError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexWriteError,
    NotAnIndexError,
)
from ragapp.types import Chunk

# 2: chunks share sentence vectors by text ("sv" in chunks.jsonl is the first sentence vector's row);
# 1: one sentence vector per chunk sentence, in chunk order. Both are read.
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
MANIFEST = "manifest.json"
LOCK = ".lock"
# The only files a generation holds; a manifest naming anything else is not trusted.
PARTS = ("chunks.jsonl", "dense.faiss", "sentences.npy", "bm25_data.npy", "bm25_indices.npy", "bm25_indptr.npy",
         "bm25_vocab.json")
# Generation folders are the only things ragapp ever deletes, and only inside an index folder.
_GENERATION = re.compile(r"gen-(\d{6}|[1-9]\d{6,8})")  # exactly what f"gen-{n:06d}" makes
_MANIFEST_TMP = re.compile(r"\.manifest\.json\.[A-Za-z0-9_]+\.tmp")
# The Streamlit app keeps a knowledge base's uploads in <index>/documents/.
UPLOADS = "documents"
_MAX_MANIFEST_BYTES = 1 << 30


def text_hash(text: str) -> str:
    """Content hash of a chunk's text: equal texts share one embedding."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


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
    rebuild = f"rebuild with: ragapp ingest --rebuild PATH --index {path}"
    try:
        if not _is_regular(file) or file.stat().st_size > _MAX_MANIFEST_BYTES:
            raise ValueError("not a regular file of a sane size")
        manifest = Manifest.from_json(file.read_text(encoding="utf-8"))
        _check_manifest(manifest)
    except (ValueError, KeyError, TypeError, RecursionError, OSError) as exc:
        raise IndexCorruptError(f"{file}: unreadable manifest ({exc}); {rebuild}") from exc
    if manifest.schema_version not in READABLE_SCHEMAS:
        raise IndexMismatchError(f"{file}: index schema {manifest.schema_version}, this ragapp reads {SCHEMA_VERSION}; {rebuild}")
    return manifest


def _is_regular(path: Path) -> bool:
    """A plain file, not a symlink, device, FIFO or folder (an index never holds anything else)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _check_manifest(m: Manifest) -> None:
    """Values an attacker could use to make a reader open other files, or allocate without bound."""
    if not (isinstance(m.generation, int) and 0 < m.generation < 10**9 and m.directory == f"gen-{m.generation:06d}"):
        raise ValueError(f"generation folder {m.directory!r} is not gen-NNNNNN for generation {m.generation!r}")
    if set(m.checksums) != set(PARTS) or not all(isinstance(v, str) for v in m.checksums.values()):
        raise ValueError(f"parts {sorted(m.checksums)} are not the index's fixed parts")
    dim = m.embedding.get("dimension") if isinstance(m.embedding, dict) else None
    if not (isinstance(dim, int) and 0 < dim <= 65536):
        raise ValueError(f"embedding dimension {dim!r}")
    for name in ("chunks", "sentences"):
        value = getattr(m, name)
        if not (isinstance(value, int) and 0 <= value < 1 << 40):
            raise ValueError(f"{name} count {value!r}")


def is_index_folder(path: str | Path) -> bool:
    """True when ragapp may write an index at `path`: it does not exist, is empty, holds a ragapp
    manifest, or holds nothing but what ragapp puts there (generations, the lock, a KB's uploads)."""
    path = Path(path)
    if not path.exists():
        return True
    if not path.is_dir():
        return False
    names = [p.name for p in path.iterdir()]
    ours = all(_is_ours(n) for n in names)
    if MANIFEST in names:
        try:
            read_manifest(path)
            return True
        except (IndexCorruptError, IndexMismatchError):
            # A damaged ragapp manifest sits beside ragapp's generation folders; another program's
            # manifest.json (a web app's) does not, and is never overwritten.
            return ours and any(_GENERATION.fullmatch(n) for n in names)
    return ours


def _is_ours(name: str) -> bool:
    return (name in (MANIFEST, LOCK, UPLOADS) or _GENERATION.fullmatch(name) is not None
            or _MANIFEST_TMP.fullmatch(name) is not None)


def check_index_folder(path: str | Path) -> None:
    """Raise NotAnIndexError unless ragapp may write an index at `path` (see `is_index_folder`)."""
    if not is_index_folder(path):
        path = Path(path)
        if not path.is_dir():
            raise NotAnIndexError(f"{path} is not a folder; choose another --index")
        others = sorted(p.name for p in path.iterdir() if not _is_ours(p.name))
        if (path / MANIFEST).exists():
            others.append(f"a {MANIFEST} that is not ragapp's")
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise NotAnIndexError(f"{path} is not a ragapp index and is not empty (it holds {shown}); ragapp writes an "
                              "index only into a new or empty folder or an existing index: choose another --index")


class Index:
    """A loaded, read-only generation of an index: chunks, FAISS, sentence vectors and BM25."""

    def __init__(self, path: Path, manifest: Manifest, chunks: list[Chunk], hashes: list[str], dense,
                 sentence_vectors: np.ndarray, sentence_starts: np.ndarray, bm25: BM25Index) -> None:
        self.path = path
        self.manifest = manifest
        self.chunks = chunks
        self.hashes = hashes
        self.dense = dense
        self.sentence_vectors = sentence_vectors  # read through a memory map: pages load as the reranker reads them
        self.sentence_starts = sentence_starts  # row of each chunk's first sentence vector
        self.bm25 = bm25

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> Index:
        """Load the committed generation; with `verify`, check every part against its manifest checksum."""
        import faiss

        path = Path(path)
        manifest = read_manifest(path)
        gen = path / manifest.directory
        rebuild = f"rebuild with: ragapp ingest --rebuild PATH --index {path}"
        if not gen.is_dir() or gen.is_symlink():
            raise IndexCorruptError(f"{gen}: generation folder missing; {rebuild}")
        for name, digest in manifest.checksums.items():
            part = gen / name
            if not part.exists():
                raise IndexCorruptError(f"{part}: index file missing; {rebuild}")
            if not _is_regular(part):
                raise IndexCorruptError(f"{part}: not a regular file; {rebuild}")
            if verify and file_sha256(part) != digest:
                raise IndexCorruptError(f"{part}: checksum mismatch (truncated or altered); {rebuild}")
        try:
            chunks, hashes, starts = [], [], []
            with open(gen / "chunks.jsonl", encoding="utf-8") as f:
                for line in f:
                    d = json.loads(line)
                    hashes.append(d.pop("hash"))
                    starts.append(d.pop("sv", -1))
                    d["sentences"] = tuple(tuple(s) for s in d["sentences"])
                    chunks.append(Chunk(**d))
            counts = np.array([len(c.sentences) for c in chunks], dtype=np.int64)
            if manifest.schema_version == 1:  # sentence vectors in chunk order, one per chunk sentence
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if chunks else counts
            starts = np.asarray(starts, dtype=np.int64)
            dimension = manifest.embedding["dimension"]
            dense = read_flat_ip(gen / "dense.faiss", dimension, manifest.chunks)
            sentence_vectors = np.load(gen / "sentences.npy", mmap_mode="r", allow_pickle=False)
            if sentence_vectors.dtype != np.float16 or sentence_vectors.shape != (manifest.sentences, dimension):
                raise ValueError(f"sentences.npy holds {sentence_vectors.dtype} {sentence_vectors.shape}")
            bm25 = BM25Index.load(gen, manifest.bm25["k1"], manifest.bm25["b"], manifest.bm25["epsilon"])
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, RecursionError, AttributeError) as exc:
            raise IndexCorruptError(f"{gen}: cannot load index ({exc}); {rebuild}") from exc
        if not (len(chunks) == dense.ntotal == len(bm25) == manifest.chunks):
            raise IndexCorruptError(f"{gen}: parts disagree (chunks {len(chunks)}, vectors {dense.ntotal}, bm25 {len(bm25)}); {rebuild}")
        if len(chunks) and (starts.min() < 0 or (starts + counts).max() > len(sentence_vectors)):
            raise IndexCorruptError(f"{gen}: sentence vectors do not match chunks; {rebuild}")
        return cls(path, manifest, chunks, hashes, dense, sentence_vectors, starts, bm25)

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
        a = self.sentence_starts[row]
        return self.sentence_vectors[a : a + len(self.chunks[row].sentences)].astype(np.float32)

    def vector(self, row: int) -> np.ndarray:
        """The dense vector of one chunk."""
        return self.dense.reconstruct(int(row))


def check_compatible(manifest: Manifest, embedding: dict, path: Path) -> None:
    """An index can only be used with the embedding model, and backend, it was built with (indexes
    from before backends were recorded were built with sentence-transformers)."""
    built = (manifest.embedding.get("model"), manifest.embedding.get("backend", "sentence-transformers"))
    asked = (embedding.get("model"), embedding.get("backend", "sentence-transformers"))
    if built != asked:
        raise IndexMismatchError(
            f"index {path} was built with embedding model {built[0]!r} ({built[1]}), not {asked[0]!r} ({asked[1]}); "
            f"use that model or rebuild with: ragapp ingest --rebuild PATH --index {path}")


@contextmanager
def write_lock(path: str | Path, wait: bool = True, on_wait=None) -> Iterator[None]:
    """Exclusive writer lock on an index directory (one writer at a time, readers never blocked)."""
    path = Path(path)
    check_index_folder(path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise IndexWriteError(f"cannot lock the index at {path}: {exc.strerror or exc}") from exc
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


class _Spool:
    """A file of fixed-width rows appended batch by batch, whose header (it needs the row count) is
    written last into space reserved at the start: .npy arrays and FAISS flat indexes are written
    this way without ever holding all rows in memory."""

    def __init__(self, path: Path, dtype, width: int, header: Callable[[int], bytes]) -> None:
        self.path, self.dtype, self.width, self._header = path, np.dtype(dtype), width, header
        self.reserved = len(header(0))
        self.row_bytes = self.dtype.itemsize * max(width, 1)
        self.rows = 0
        self.file = open(path, "wb+")
        self.file.write(b"\0" * self.reserved)

    def append(self, rows: np.ndarray) -> None:
        """Add rows (a 2-D array of `width` columns, or 1-D when width is 0)."""
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        self.file.write(data.tobytes())
        self.rows += len(data)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) already appended."""
        self.file.flush()
        raw = os.pread(self.file.fileno(), (stop - start) * self.row_bytes, self.reserved + start * self.row_bytes)
        data = np.frombuffer(raw, dtype=self.dtype)
        return data.reshape(-1, self.width) if self.width else data

    def truncate(self, rows: int) -> None:
        """Forget every row from `rows` on."""
        self.file.flush()
        self.file.truncate(self.reserved + rows * self.row_bytes)
        self.file.seek(0, os.SEEK_END)
        self.rows = rows

    def finish(self) -> None:
        """Write the header, flush and fsync."""
        header = self._header(self.rows)
        if len(header) != self.reserved:
            raise ValueError(f"{self.path}: header grew from {self.reserved} to {len(header)} bytes")
        self.file.seek(0)
        self.file.write(header)
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


def _npy_header(dtype, width: int) -> Callable[[int], bytes]:
    """A .npy (version 1.0) header padded to a fixed _NPY_HEADER bytes, whatever the row count."""
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))

    def header(rows: int) -> bytes:
        shape = (rows, width) if width else (rows,)
        text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
        text += " " * (_NPY_HEADER - 10 - len(text) - 1) + "\n"
        return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin-1")
    return header


def _faiss_flat_header(dimension: int) -> Callable[[int], bytes]:
    """Header of a serialised faiss IndexFlatIP holding `rows` vectors: faiss's own header for an
    empty index with its vector count and its float count filled in."""
    import faiss

    empty = bytearray(faiss.serialize_index(faiss.IndexFlatIP(dimension)).tobytes())

    def header(rows: int) -> bytes:
        head = bytearray(empty)
        head[8:16] = struct.pack("<q", rows)
        head[-8:] = struct.pack("<Q", rows * dimension)
        return bytes(head)
    return header


def read_flat_ip(path: Path, dimension: int, rows: int):
    """A FAISS IndexFlatIP from a file ragapp wrote, validated before FAISS sees any of it: the header
    must be exactly the one ragapp writes for `rows` vectors of `dimension`, and the file exactly that
    long; the floats are then memory-mapped and copied into a new index. A crafted file (any other
    index type, sizes that promise terabytes) is a ValueError, never a crash in the native parser."""
    import faiss

    expected = _faiss_flat_header(dimension)(rows)
    size = os.lstat(path).st_size
    if size != len(expected) + 4 * rows * dimension:
        raise ValueError(f"dense.faiss is {size} bytes, not the {len(expected) + 4 * rows * dimension} of {rows} vectors")
    with open(path, "rb") as f:
        if f.read(len(expected)) != expected:
            raise ValueError("dense.faiss does not start with ragapp's IndexFlatIP header")
    index = faiss.IndexFlatIP(dimension)
    if rows:
        floats = np.memmap(path, dtype="<f4", mode="r", offset=len(expected), shape=(rows, dimension))
        step = max(1, (64 << 20) // (4 * dimension))
        for a in range(0, rows, step):
            index.add(np.ascontiguousarray(floats[a : a + step], dtype=np.float32))
        del floats
    return index


_NPY_HEADER = 128
_BM25_FLUSH = 1 << 20


def _generations(path: Path) -> list[Path]:
    """The generation folders ragapp made in an index folder (gen- and six digits; real folders, not links)."""
    return [p for p in path.iterdir() if _GENERATION.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]


class GenerationWriter:
    """Writes a new generation chunk by chunk, straight to disk, and makes it current atomically.

    Memory does not grow with the text: chunk records, vectors, sentence vectors and BM25 counts
    are appended to their files as they come (what stays in memory is a row pointer per chunk and
    a dedup entry per distinct text); chunks with the same text share their sentence vectors. Nothing is visible to readers until `commit` renames the
    manifest; `abort` (or an exception inside `with`) deletes the unfinished generation. Use
    while holding `write_lock`.
    """

    def __init__(self, path: str | Path, dimension: int, vocab: dict[str, int] | None = None) -> None:
        self.path = Path(path)
        check_index_folder(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._tmp: Path | None = None
        try:
            self.previous = read_manifest(self.path) if (self.path / MANIFEST).exists() else None
        except (IndexCorruptError, IndexMismatchError):  # `ingest --rebuild` replaces an unreadable index
            self.previous = None
        numbers = [int(p.name[4:]) for p in self.path.iterdir() if _GENERATION.fullmatch(p.name)]
        self.generation = max([self.previous.generation if self.previous else 0, *numbers]) + 1
        self.directory = f"gen-{self.generation:06d}"
        self.gen = self.path / self.directory
        self.dimension = dimension
        self.vocab = dict(vocab or {})
        self._done = False
        self._made = False
        try:
            self.gen.mkdir()
            self._made = True
            self.chunks = open(self.gen / "chunks.jsonl", "w", encoding="utf-8")
            self.dense = _Spool(self.gen / "dense.faiss", np.float32, dimension, _faiss_flat_header(dimension))
            self.sentences = _Spool(self.gen / "sentences.npy", np.float16, dimension, _npy_header(np.float16, dimension))
            self.bm25_data = _Spool(self.gen / "bm25_data.npy", np.int32, 0, _npy_header(np.int32, 0))
            self.bm25_indices = _Spool(self.gen / "bm25_indices.npy", np.int32, 0, _npy_header(np.int32, 0))
        except OSError as exc:
            self._fail(exc)
        self.indptr: list[int] = [0]
        self._terms: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._pending = 0
        # (text hash, sentence spans) → (row, first sentence vector, sentence count) of the first such chunk
        self._texts: dict[tuple[str, int], tuple[int, int, int]] = {}

    def __enter__(self) -> GenerationWriter:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if not self._done:
            self.abort()

    @property
    def rows(self) -> int:
        """Chunks written so far."""
        return len(self.indptr) - 1

    def has(self, text_hash: str, sentences: tuple[tuple[int, int], ...]) -> bool:
        """True if a chunk with this text and these sentences is already written (its vectors can be shared)."""
        return (text_hash, hash(sentences)) in self._texts

    def term_row(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """BM25 term ids and counts of one tokenised chunk (new terms join the vocabulary)."""
        counts = Counter(tokens)
        ids = np.fromiter((self.vocab.setdefault(t, len(self.vocab)) for t in counts), dtype=np.int32, count=len(counts))
        return ids, np.fromiter(counts.values(), dtype=np.int32, count=len(counts))

    def add(self, chunk: Chunk, text_hash: str, terms: tuple[np.ndarray, np.ndarray],
            vector: np.ndarray | None = None, sentence_vectors: np.ndarray | None = None) -> None:
        """Append one chunk. Vectors may be left out when `has` says its text was added before."""
        try:
            key = (text_hash, hash(chunk.sentences))
            shared = self._texts.get(key)
            if shared is not None:
                row, first, count = shared
                vector = self.dense.read(row, row + 1)[0]
            else:
                if vector is None or sentence_vectors is None or len(sentence_vectors) != len(chunk.sentences):
                    raise ValueError(f"chunk {chunk.id}: vectors missing or not one per sentence")
                first, count = self.sentences.rows, len(sentence_vectors)
                self.sentences.append(sentence_vectors)
                self._texts[key] = (self.rows, first, count)
            self.dense.append(np.asarray(vector, dtype=np.float32).reshape(1, -1))
            self.chunks.write(json.dumps({"id": chunk.id, "text": chunk.text, "source": chunk.source, "page": chunk.page,
                                          "start": chunk.start, "end": chunk.end, "sentences": chunk.sentences,
                                          "hash": text_hash, "sv": first}, ensure_ascii=False) + "\n")
            ids, counts = terms
            self._terms.append(ids)
            self._counts.append(counts)
            self._pending += len(ids)
            self.indptr.append(self.indptr[-1] + len(ids))
            if self._pending >= _BM25_FLUSH:
                self._flush_terms()
        except OSError as exc:
            self._fail(exc)

    def _flush_terms(self) -> None:
        if self._terms:
            self.bm25_indices.append(np.concatenate(self._terms))
            self.bm25_data.append(np.concatenate(self._counts))
        self._terms, self._counts, self._pending = [], [], 0

    def mark(self) -> tuple[int, int, int]:
        """A point to roll back to (see `rollback`)."""
        try:
            self._flush_terms()
            self.chunks.flush()
        except OSError as exc:
            self._fail(exc)
        return self.rows, self.sentences.rows, self.chunks.tell()

    def rollback(self, mark: tuple[int, int, int]) -> None:
        """Forget every chunk added after `mark` (a file that failed half way through)."""
        rows, sentence_rows, offset = mark
        try:
            self._terms, self._counts, self._pending = [], [], 0
            del self.indptr[rows + 1 :]
            self.bm25_indices.truncate(self.indptr[-1])
            self.bm25_data.truncate(self.indptr[-1])
            self.dense.truncate(rows)
            self.sentences.truncate(sentence_rows)
            self.chunks.truncate(offset)
            self.chunks.seek(offset)
            self._texts = {h: v for h, v in self._texts.items() if v[0] < rows}
        except OSError as exc:
            self._fail(exc)

    def _prune_vocabulary(self) -> list[str]:
        """Drop terms no chunk uses any more (BM25 averages idf over the vocabulary, as rank-bm25 does)."""
        indices = np.load(self.gen / "bm25_indices.npy", mmap_mode="r+")
        used = np.zeros(len(self.vocab), dtype=bool)
        step = 1 << 24
        for a in range(0, len(indices), step):
            used[indices[a : a + step]] = True
        terms = [""] * len(self.vocab)
        for term, i in self.vocab.items():
            terms[i] = term
        if not used.all():
            remap = np.cumsum(used, dtype=np.int64).astype(np.int32) - 1
            for a in range(0, len(indices), step):
                indices[a : a + step] = remap[indices[a : a + step]]
            indices.flush()
            terms = [t for t, u in zip(terms, used) if u]
        del indices
        return terms

    def commit(self, manifest: Manifest) -> Manifest:
        """Finish every file, fsync, and make this generation current by renaming the manifest."""
        from ragapp import __version__

        try:
            self._flush_terms()
            self.chunks.flush()
            os.fsync(self.chunks.fileno())
            self.chunks.close()
            for spool in (self.dense, self.sentences, self.bm25_data, self.bm25_indices):
                spool.finish()
            terms = self._prune_vocabulary()
            np.save(self.gen / "bm25_indptr.npy", np.asarray(self.indptr, dtype=np.int64))
            (self.gen / "bm25_vocab.json").write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
            names = ["chunks.jsonl", "dense.faiss", "sentences.npy", "bm25_data.npy", "bm25_indices.npy",
                     "bm25_indptr.npy", "bm25_vocab.json"]
            for name in names:
                _fsync_file(self.gen / name)
            _fsync_dir(self.gen)
            now = time.time()
            manifest.schema_version = SCHEMA_VERSION
            manifest.generation = self.generation
            manifest.directory = self.directory
            manifest.ragapp_version = __version__
            manifest.created_at = self.previous.created_at if self.previous else now
            manifest.updated_at = now
            manifest.chunks = self.rows
            manifest.sentences = self.sentences.rows
            manifest.checksums = {name: file_sha256(self.gen / name) for name in names}
            # Created exclusively with a unique name: a planted file or symlink is never followed.
            fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST}.", suffix=".tmp", dir=self.path)
            self._tmp = Path(tmp)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(manifest.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path / MANIFEST)
            self._tmp = None
            _fsync_dir(self.path)
        except OSError as exc:
            self._fail(exc)
        self._done = True
        # Keep the previous generation for readers that are opening it right now; drop older ones.
        keep = {self.directory, self.previous.directory if self.previous else ""}
        for old in _generations(self.path):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
        return manifest

    def abort(self) -> None:
        """Delete the unfinished generation; the current one stays as it was."""
        self._done = True
        for f in (getattr(self, "chunks", None), *(getattr(getattr(self, n, None), "file", None)
                                                   for n in ("dense", "sentences", "bm25_data", "bm25_indices"))):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        try:
            landed = read_manifest(self.path).directory if (self.path / MANIFEST).exists() else ""
        except (IndexCorruptError, IndexMismatchError):
            landed = ""
        if landed != self.directory and self._made:
            shutil.rmtree(self.gen, ignore_errors=True)

    def _fail(self, exc: OSError) -> None:
        """A failed write (disk full, permissions): remove what was written and say so."""
        self.abort()
        raise IndexWriteError(f"cannot write the index at {self.path}: {exc.strerror or exc}; "
                              "the previous index is unchanged") from exc

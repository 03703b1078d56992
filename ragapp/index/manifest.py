"""manifest.json: which generation of an index is current, how the index was built (every setting
that shapes it), per-file records and part checksums. The only reader and writer of that file."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ragapp.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError
from ragapp.index import bm25, chunkstore, dense
from ragapp.records import DocumentInfo
from ragapp.spool import fsync_dir

# 4: chunk records found by offset (chunk_offsets.npy, chunk_hashes.npy: an index opens without reading
#    its chunks) and, from dense.PQ_MIN_ROWS chunks, PQ codes of the vectors ("dense" says which; an
#    IVF written before them is still accepted and searched exactly);
# 3: BM25 weights saved at ingest (bm25_weights/rows/colptr/idf.npy);
# 2: chunks share sentence vectors by text ("sv" in chunks.jsonl is the first sentence vector's row);
# 1: one sentence vector per chunk sentence, in chunk order. All are read.
SCHEMA_VERSION = 4
READABLE_SCHEMAS = (1, 2, 3, 4)
MANIFEST = "manifest.json"
_BASE_PARTS = ("chunks.jsonl", "dense.faiss", "sentences.npy")
# The only files a generation holds; a manifest naming anything else is not trusted.
PARTS = _BASE_PARTS + bm25.FILES
_MAX_MANIFEST_BYTES = 1 << 30
_DENSE_KEYS = {"pq": ("m", "nbits"), "ivf": ("nlist", "nprobe")}  # a manifest's dense index: its integer settings


def parts(schema_version: int, dense_index: dict | None = None) -> tuple[str, ...]:
    """The files a generation of this schema (and dense index, schema 4) holds."""
    if schema_version < 3:
        return _BASE_PARTS + bm25.COUNT_FILES
    if schema_version == 3:
        return PARTS
    extra = {"ivf": dense.IVF_FILES, "pq": dense.PQ_FILES}.get(str((dense_index or {}).get("type")), ())
    return PARTS + chunkstore.FILES[1:] + extra


def rebuild_hint(path: str | Path) -> str:
    """The one line that tells a user how to start an index again."""
    return f"rebuild with: ragapp ingest --rebuild PATH --index {path}"


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
    # Pages (or images) whose text was read by OCR.
    ocr_pages: int = 0
    # The file's stat when it was hashed (0: not recorded, or too recent to trust): while size, mtime,
    # ctime and inode are the same, the next ingest takes the hash as it is instead of reading the file.
    mtime_ns: int = 0
    ctime_ns: int = 0
    inode: int = 0

    def same_stat(self, st: os.stat_result) -> bool:
        """True when `st` is the stat recorded with the hash (ctime cannot be set back by a program, so
        any write since shows)."""
        return self.mtime_ns != 0 and (self.size, self.mtime_ns, self.ctime_ns, self.inode) == (
            st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


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
    # How dense search runs: {} exact, or {"type": "pq", "m": M, "nbits": 4} (chosen by size); an older
    # {"type": "ivf", "nlist": N, "nprobe": P} is searched exactly.
    dense: dict = field(default_factory=dict)
    files: dict[str, FileRecord] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)

    def documents(self) -> list[DocumentInfo]:
        """The indexed documents: source, chunks, size, sha256, ingest time and OCR'd pages."""
        return [DocumentInfo(s, r.chunks, r.size, r.sha256, r.ingested_at, r.ocr_pages) for s, r in self.files.items()]

    def to_json(self) -> str:
        """Serialised form (stable key order)."""
        return json.dumps(asdict(self), ensure_ascii=False, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse; raises ValueError/KeyError/TypeError on malformed input."""
        data = json.loads(text)
        data["files"] = {k: FileRecord(**v) for k, v in data.get("files", {}).items()}
        return cls(**data)


def is_regular(path: Path) -> bool:
    """A plain file, not a symlink, device, FIFO or folder (an index never holds anything else)."""
    import stat

    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_manifest(path: str | Path) -> Manifest:
    """The committed manifest of the index at `path`."""
    file = Path(path) / MANIFEST
    if not file.exists():
        raise IndexNotFoundError(f"no index at {path} (run: ragapp ingest PATH --index {path})")
    try:
        if not is_regular(file) or file.stat().st_size > _MAX_MANIFEST_BYTES:
            raise ValueError("not a regular file of a sane size")
        manifest = Manifest.from_json(file.read_text(encoding="utf-8"))
        if manifest.schema_version not in READABLE_SCHEMAS:
            raise IndexMismatchError(f"{file}: index schema {manifest.schema_version}, this ragapp reads "
                                     f"{SCHEMA_VERSION}; {rebuild_hint(path)}")
        _check(manifest)
    except (ValueError, KeyError, TypeError, RecursionError, OSError) as exc:
        raise IndexCorruptError(f"{file}: unreadable manifest ({exc}); {rebuild_hint(path)}") from exc
    return manifest


def _check(m: Manifest) -> None:
    """Values an attacker could use to make a reader open other files, or allocate without bound."""
    if not (isinstance(m.generation, int) and 0 < m.generation < 10**9 and m.directory == f"gen-{m.generation:06d}"):
        raise ValueError(f"generation folder {m.directory!r} is not gen-NNNNNN for generation {m.generation!r}")
    if not isinstance(m.dense, dict) or (m.dense and not (m.schema_version >= 4 and _DENSE_KEYS.get(str(m.dense.get("type"))) and all(
            isinstance(m.dense.get(k), int) and 0 < m.dense[k] < 1 << 24 for k in _DENSE_KEYS[m.dense["type"]]))):
        raise ValueError(f"dense index {m.dense!r}")
    if set(m.checksums) != set(parts(m.schema_version, m.dense)) or not all(isinstance(v, str) for v in m.checksums.values()):
        raise ValueError(f"parts {sorted(m.checksums)} are not the index's fixed parts")
    dim = m.embedding.get("dimension") if isinstance(m.embedding, dict) else None
    if not (isinstance(dim, int) and 0 < dim <= 65536):
        raise ValueError(f"embedding dimension {dim!r}")
    for name in ("chunks", "sentences"):
        value = getattr(m, name)
        if not (isinstance(value, int) and 0 <= value < 1 << 40):
            raise ValueError(f"{name} count {value!r}")


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Make `manifest` current in one rename (fsynced). The temp file is created exclusively with a
    unique name: a planted file or symlink is never followed; on failure it is removed."""
    fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST}.", suffix=".tmp", dir=path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(manifest.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path)


def index_settings(embedding: dict, split: dict, bm25_settings: dict) -> dict[str, dict]:
    """Every setting that shapes an index, as the manifest records it."""
    return {"embedding": embedding, "split": split, "bm25": bm25_settings}


def check_settings(manifest: Manifest, wanted: dict[str, dict], path: str | Path) -> None:
    """Refuse to mix: each setting in `wanted` (a subset of `index_settings`) must equal what the
    index was built with. Indexes from before backends (and sentence vector modes) were recorded used
    sentence-transformers (and encoded sentences separately)."""
    built = {"embedding": {"backend": "sentence-transformers", "sentence_vectors": "separate", **manifest.embedding}, "split": manifest.split,
             "bm25": manifest.bm25}
    differences = []
    for section, values in wanted.items():
        for key, value in values.items():
            have = built[section].get(key)
            if key in built[section] and have != value:
                differences.append(f"{section}.{key} {have!r} (asked: {value!r})")
    if differences:
        raise IndexMismatchError(f"index {path} was built with {', '.join(differences)}; use those settings or "
                                 f"{rebuild_hint(path)}")

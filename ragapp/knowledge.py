"""Knowledge bases: index folders under a root, and the documents uploaded into them. The one service
the chat app and the HTTP API both use (`KnowledgeBases`): one RAG per knowledge base over shared
models; names that cannot escape or collide, sizes that are checked, uploads saved all or nothing,
deletes that touch nothing outside the knowledge base."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import threading
import unicodedata
from pathlib import Path
from types import TracebackType
from typing import IO

from ragapp.config import Config
from ragapp.index import UPLOADS, is_index_folder
from ragapp.load import SUPPORTED_SUFFIXES
from ragapp.rag import RAG

# Every format ingest reads (each parsed in the sandbox with its limits).
ALLOWED_SUFFIXES = SUPPORTED_SUFFIXES
DOCUMENTS = UPLOADS  # uploads of a knowledge base live in <knowledge base>/documents/
# File systems allow 255 bytes per name; the rest is left for ragapp's temporary names beside it.
MAX_NAME_BYTES = 200

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


class UploadRefused(ValueError):
    """An upload that is not saved; `status` is the HTTP status that says why (400, 409, 413, 507)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def safe_name(name: str) -> str:
    """A plain file or folder name made from user input, or ValueError naming the problem.

    Path parts are dropped ("../../x.txt" → "x.txt"); control characters and characters that
    are special on common file systems become "_"; hidden names, "." / ".." and names over
    MAX_NAME_BYTES bytes of UTF-8 are refused."""
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip().strip(".") if base not in (".", "..") else ""
    if not base or base.startswith(".") or name.strip().startswith("."):
        raise ValueError("not an acceptable file name (path parts, hidden names and control characters are refused)")
    size = len(base.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise ValueError(f"the name is {size} bytes long in UTF-8; the limit is {MAX_NAME_BYTES}")
    return base


def knowledge_bases(root: Path, default: Path) -> list[Path]:
    """The default index plus every folder under `root` that holds an index or uploaded documents."""
    found = [default]
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and child.resolve() != default.resolve() and (
                    (child / "manifest.json").exists() or (child / DOCUMENTS).is_dir()):
                found.append(child)
    return found


def create_knowledge_base(root: Path, name: str) -> Path:
    """A new, empty knowledge base folder under `root`; an existing folder that is not a knowledge
    base (someone's own files) is refused, never written into."""
    folder = root / safe_name(name)
    if folder.exists() and not (folder.is_dir() and not folder.is_symlink() and is_index_folder(folder)):
        raise ValueError(f"{folder.name} already exists under {root} and is not a knowledge base; choose another name")
    (folder / DOCUMENTS).mkdir(parents=True, exist_ok=True)
    return folder


def _folder_bytes(folder: Path) -> int:
    """Bytes held by the regular files under `folder` (links not followed)."""
    total = 0
    for dirpath, _, names in os.walk(folder):
        for n in names:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


class UploadBatch:
    """Files uploaded together into one knowledge base, kept all or none.

    Each name is checked when its file begins (allowed, unique in the batch, new unless `replace`);
    the bytes stream into a hidden temporary file beside the target (created exclusively, so nothing
    planted is followed), under the per-file and per-batch limits, the knowledge base's quota and the
    disk's reserve; `commit()` renames them all into place, and any failure before that removes them
    all. Use it as a context manager: leaving it without `commit()` aborts.
    """

    def __init__(self, kb: Path, *, replace: bool = False, max_file_bytes: int, max_files: int,
                 max_batch_bytes: int | None = None, quota_bytes: int = 0, min_free_bytes: int = 0) -> None:
        if max_file_bytes <= 0 or max_files <= 0:
            raise ValueError(f"upload limits must be greater than 0. Currently, {max_file_bytes} bytes and {max_files} files")
        self.folder = kb / DOCUMENTS
        self.folder.mkdir(parents=True, exist_ok=True)
        self.replace, self.max_file_bytes, self.max_files = replace, max_file_bytes, max_files
        self.max_batch_bytes = max_batch_bytes or max_file_bytes * max_files
        self.min_free_bytes = min_free_bytes
        self.room = quota_bytes - _folder_bytes(self.folder) if quota_bytes else None
        self._parts: list[tuple[str, Path]] = []  # (clean name, temporary file)
        self._file: IO[bytes] | None = None
        self._written = self._file_bytes = 0

    def begin(self, name: str) -> str:
        """Start the next file; its clean name, or UploadRefused (nothing of the batch is kept then)."""
        self._close()
        if len(self._parts) >= self.max_files:
            raise UploadRefused(f"more than {self.max_files} files in one upload", 413)
        clean = self._check_name(name)
        fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=self.folder)
        self._parts.append((clean, Path(tmp)))
        self._file, self._file_bytes = os.fdopen(fd, "wb"), 0
        return clean

    def _check_name(self, name: str) -> str:
        try:
            clean = safe_name(name)
        except ValueError as exc:
            raise UploadRefused(f"{name!r}: {exc}") from exc
        if not clean.lower().endswith(ALLOWED_SUFFIXES):
            raise UploadRefused(f"{name!r}: only {', '.join(ALLOWED_SUFFIXES)} files can be uploaded")
        if clean in {c for c, _ in self._parts}:
            raise UploadRefused(f"{name!r}: two files of this upload would both be saved as {clean!r}; send each name once")
        self._check_name_taken(clean)
        target = self.folder / clean
        if target.is_symlink() or target.exists() and not target.is_file():
            raise UploadRefused(f"{clean!r} exists in this knowledge base and is not a plain file; it is not replaced", 409)
        return clean

    def write(self, data: bytes) -> None:
        """Append to the current file, within every limit."""
        if self._file is None:
            raise UploadRefused("file data before a file name")
        self._file_bytes += len(data)
        self._written += len(data)
        name = self._parts[-1][0]
        if self._file_bytes > self.max_file_bytes:
            raise UploadRefused(f"{name}: over the upload limit of {self.max_file_bytes / 1e6:.0f} MB per file", 413)
        if self._written > self.max_batch_bytes:
            raise UploadRefused(f"over the limit of {self.max_batch_bytes / 1e6:.0f} MB per upload", 413)
        if self.room is not None and self._written > self.room:
            raise UploadRefused(f"{name}: over this knowledge base's quota (serve.quota_mb)", 507)
        if self.min_free_bytes and shutil.disk_usage(self.folder).free - len(data) < self.min_free_bytes:
            raise UploadRefused(f"{name}: the disk would fall below {self.min_free_bytes / 1e6:.0f} MB free "
                                "(serve.min_free_disk_mb); not saved", 507)
        self._file.write(data)

    def _close(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            f.flush()
            os.fsync(f.fileno())
            f.close()

    def commit(self) -> list[Path]:
        """Rename every file into place (all, or none if one fails); their paths."""
        self._close()
        if not self._parts:
            raise UploadRefused("no files in the upload")
        for clean, _ in self._parts:  # checked again: another upload may have saved one meanwhile
            self._check_name_taken(clean)
        done: list[Path] = []
        try:
            for clean, tmp in self._parts:
                os.replace(tmp, self.folder / clean)
                done.append(self.folder / clean)
        except OSError:
            for path in done:
                path.unlink(missing_ok=True)
            raise
        finally:
            self.abort()
        return done

    def _check_name_taken(self, clean: str) -> None:
        """409 for a name already in the folder, unless the batch replaces."""
        target = self.folder / clean
        if not self.replace and (target.exists() or target.is_symlink()):
            raise UploadRefused(f"{clean!r} is already in this knowledge base; upload it with replace to overwrite it", 409)

    def abort(self) -> None:
        """Remove every temporary file of the batch (nothing of it is kept)."""
        try:
            self._close()
        except OSError:
            pass
        for _, tmp in self._parts:
            tmp.unlink(missing_ok=True)
        self._parts = []

    def __enter__(self) -> UploadBatch:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.abort()


def save_upload(kb: Path, name: str, data: bytes, max_bytes: int, replace: bool = False) -> Path:
    """Write one uploaded file into the knowledge base's documents folder; ValueError when refused."""
    with UploadBatch(kb, replace=replace, max_file_bytes=max_bytes, max_files=1) as batch:
        batch.begin(name)
        batch.write(data)
        return batch.commit()[0]


def document_entry(kb: Path, name: str) -> Path:
    """The uploaded document `name` (its path relative to documents/) as an entry of the folder:
    a regular file or a link, itself inside documents/; LookupError otherwise."""
    folder = (kb / DOCUMENTS).resolve()
    parts = [p for p in name.replace("\\", "/").split("/")]
    if not name or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise LookupError(f"no document {name!r}")
    entry = folder.joinpath(*parts)
    if entry.parent.resolve() != entry.parent or folder not in entry.parents:  # a linked folder on the way out
        raise LookupError(f"no document {name!r}")
    try:
        mode = os.lstat(entry).st_mode
    except OSError as exc:
        raise LookupError(f"no document {name!r}") from exc
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise LookupError(f"no document {name!r}")
    return entry


def remove_entry(entry: Path) -> None:
    """Delete the entry itself: a link is removed, never the file it points to."""
    os.unlink(entry)


def is_upload(kb: Path, source: str) -> bool:
    """True when an indexed source is a file that was uploaded into this knowledge base."""
    return (kb / DOCUMENTS).resolve() in Path(source).resolve().parents


def knowledge_base(root: Path, name: str) -> Path:
    """The existing knowledge base `name` under `root`; LookupError when there is none by that exact
    name (a name with path parts, a symlink or a folder that is not an index never resolves)."""
    try:
        clean = safe_name(name)
    except ValueError:
        clean = ""
    folder = root / clean
    if not clean or clean != name or folder.is_symlink() or not folder.is_dir() or not is_index_folder(folder):
        raise LookupError(f"no knowledge base named {name!r}")
    return folder


class KnowledgeBases:
    """The knowledge bases under `root` (plus a default index, which may lie elsewhere), each opened once
    as a RAG that shares the default's embedder and chat model; safe to share between threads.

        >>> kbs = KnowledgeBases(Path("data"), Config())
        >>> notes = kbs.open(kbs.create("notes"))     # doctest: +SKIP
    """

    def __init__(self, root: Path, config: Config, default: Path | None = None, only: Path | None = None) -> None:
        """With `only` (an index folder), that index is the one knowledge base, named after its folder
        (`ragapp serve --index DIR`): nothing else under its parent is listed, opened or created."""
        if only is not None and not (Path(only) / "manifest.json").is_file():
            raise ValueError(f"{only} is not a ragapp index (build one with: ragapp ingest FOLDER --index {only})")
        self.only = Path(only) if only is not None else None
        self.root, self.config = (self.only.parent if self.only is not None else Path(root)), config
        self.default = self.only or (Path(default) if default is not None else self.root / "index")
        self.base = RAG(self.default, config)
        self._open: dict[tuple[str, int], RAG] = {}
        self._lock = threading.Lock()

    def folders(self) -> list[Path]:
        """The default index, then every folder under the root that holds an index or uploads."""
        return [self.only] if self.only is not None else knowledge_bases(self.root, self.default)

    def names(self) -> list[str]:
        """The names of the knowledge bases under the root (folders that are not one are left out)."""
        found = []
        for folder in self.folders():
            try:
                found.append(knowledge_base(self.root, folder.name).name)
            except LookupError:
                continue
        return found

    def named(self, name: str) -> Path:
        """The knowledge base called exactly `name` under the root; LookupError when there is none,
        saying where knowledge bases come from."""
        try:
            if self.only is not None and name != self.only.name:
                raise LookupError(f"no knowledge base named {name!r}")
            return knowledge_base(self.root, name)
        except LookupError as exc:
            names = self.names_unchecked()
            where = (f"this server serves one index, {self.only.name!r} (--index)" if self.only is not None else
                     f"knowledge bases are the index folders directly under {self.root}: "
                     + (", ".join(repr(n) for n in names) if names else "none yet (ragapp ingest FOLDER --index "
                                                                         f"{self.root}/NAME makes one)"))
            raise LookupError(f"{exc}; {where}") from None

    def names_unchecked(self) -> list[str]:
        """The names of the folders that hold an index (what `names` lists, without opening them)."""
        return [f.name for f in self.folders() if f.parent == self.root and ((f / "manifest.json").is_file() or (f / DOCUMENTS).is_dir())]

    def open(self, folder: Path, generator: object | None = None) -> RAG:
        """The RAG of a knowledge base folder (opened once), answering with `generator` or the shared model."""
        key = (str(Path(folder).resolve()), id(generator) if generator is not None else 0)
        with self._lock:
            if key[0] == str(self.default.resolve()) and generator is None:
                return self.base
            if key not in self._open:
                self._open[key] = RAG(folder, self.config, embedder=self.base.embedder,
                                      generator=generator or self.base.generator)  # type: ignore[arg-type]
            return self._open[key]

    def create(self, name: str) -> Path:
        """A new, empty knowledge base under the root (ValueError naming why not)."""
        if self.only is not None:
            raise ValueError(f"this server serves one index, {self.only.name!r} (--index): serve a folder of knowledge "
                             "bases with --knowledge-root to create more")
        return create_knowledge_base(self.root, name)

    def delete(self, rag: RAG, document: str) -> None:
        """Remove an uploaded document (its name relative to documents/) from the index and the folder:
        the entry itself, never what a link points to; LookupError when there is no such document."""
        entry = document_entry(rag.path, document)
        sources = {d.source for d in rag.documents()} & {str(entry), str(entry.resolve())}
        if not sources:
            raise LookupError(f"no document {document!r}")
        rag.remove(sorted(sources))
        remove_entry(entry)

    def unindexed(self, rag: RAG) -> list[Path]:
        """Documents saved in the knowledge base's documents/ that its index does not hold (an upload whose
        ingest has not run, failed or was stopped): never a silent gap between the folder and the index."""
        from ragapp.ingestion import scan

        folder = rag.path / DOCUMENTS
        if not folder.is_dir():
            return []
        indexed = {d.source for d in rag.documents()}
        return [f for f in scan([folder], self.config.ingest.follow_symlinks).files if str(f) not in indexed]

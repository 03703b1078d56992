"""Knowledge bases: index folders under a root, and the documents uploaded into them (the chat app and
the HTTP API share these rules): names that cannot escape, sizes that are checked."""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from pathlib import Path

from ragapp.index import UPLOADS, is_index_folder
from ragapp.load import SUPPORTED_SUFFIXES

# Every format ingest reads (each parsed in the sandbox with its limits).
ALLOWED_SUFFIXES = SUPPORTED_SUFFIXES
DOCUMENTS = UPLOADS  # uploads of a knowledge base live in <knowledge base>/documents/

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


def safe_name(name: str) -> str:
    """A plain file or folder name made from user input, or ValueError naming the problem.

    Path parts are dropped ("../../x.txt" → "x.txt"); control characters and characters that
    are special on common file systems become "_"; hidden names and "." / ".." are refused."""
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip().strip(".") if base not in (".", "..") else ""
    if not base or base.startswith(".") or name.strip().startswith("."):
        raise ValueError("not an acceptable file name (path parts, hidden names and control characters are refused)")
    return base[:200]


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


def save_upload(kb: Path, name: str, data: bytes, max_bytes: int) -> Path:
    """Write an uploaded file into the knowledge base's documents folder (atomically); ValueError when refused."""
    clean = safe_name(name)
    if not clean.lower().endswith(ALLOWED_SUFFIXES):
        raise ValueError(f"only {', '.join(ALLOWED_SUFFIXES)} files can be uploaded")
    if len(data) > max_bytes:
        raise ValueError(f"{len(data) / 1e6:.1f} MB is over the upload limit of {max_bytes / 1e6:.0f} MB")
    folder = kb / DOCUMENTS
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / clean
    if folder.resolve() not in target.resolve().parents:
        raise ValueError("not an acceptable file name")
    # Created exclusively under a unique name: a planted file or symlink is never followed, and two
    # uploads of the same name never write into one temporary file.
    fd, tmp = tempfile.mkstemp(prefix=f".{clean[:100]}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


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

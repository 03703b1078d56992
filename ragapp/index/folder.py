"""What an index folder may hold, so ragapp never writes into, or deletes from, a folder that is not
its own: the manifest, generation folders, the writer lock, a knowledge base's uploads."""

from __future__ import annotations

import re
from pathlib import Path

from ragapp.errors import IndexCorruptError, IndexMismatchError, NotAnIndexError
from ragapp.index.manifest import MANIFEST, read_manifest

LOCK = ".lock"
# The Streamlit app keeps a knowledge base's uploads in <index>/documents/.
UPLOADS = "documents"
# A folder watcher's state (ragapp.watch writes it, the chat app and `ragapp info` read it).
WATCH_STATUS = "watch.json"
# Tables kept as SQL tables (ragapp.tables.store owns the file), where pages' characters sit
# (ragapp.show.store), SQLite's journals beside them, and the test set and fitted threshold of ragapp eval.
STORES = ("tables.sqlite", "tables.sqlite-journal", "pages.sqlite", "pages.sqlite-journal", "eval")
# Generation folders are the only things ragapp ever deletes, and only inside an index folder.
_GENERATION = re.compile(r"gen-(\d{6}|[1-9]\d{6,8})")  # exactly what f"gen-{n:06d}" makes
_MANIFEST_TMP = re.compile(r"\.manifest\.json\.[A-Za-z0-9_]+\.tmp")
_WATCH_TMP = re.compile(r"\.watch\.json\.[A-Za-z0-9_]+\.tmp")


def generation_name(generation: int) -> str:
    """The folder name of a generation."""
    return f"gen-{generation:06d}"


def generations(path: Path) -> list[Path]:
    """The generation folders ragapp made in an index folder (gen- and six digits; real folders, not links)."""
    return [p for p in path.iterdir() if _GENERATION.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]


def highest_generation(path: Path) -> int:
    """The highest generation number named in the folder (0 when none)."""
    return max([int(p.name[4:]) for p in path.iterdir() if _GENERATION.fullmatch(p.name)], default=0)


def _is_ours(name: str) -> bool:
    return (name in (MANIFEST, LOCK, UPLOADS, WATCH_STATUS, *STORES) or _GENERATION.fullmatch(name) is not None
            or _MANIFEST_TMP.fullmatch(name) is not None or _WATCH_TMP.fullmatch(name) is not None)


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


def check_index_folder(path: str | Path) -> None:
    """Raise NotAnIndexError unless ragapp may write an index at `path` (see `is_index_folder`)."""
    if is_index_folder(path):
        return
    path = Path(path)
    if not path.is_dir():
        raise NotAnIndexError(f"{path} is not a folder; choose another --index")
    others = sorted(p.name for p in path.iterdir() if not _is_ours(p.name))
    if (path / MANIFEST).exists():
        others.append(f"a {MANIFEST} that is not ragapp's")
    shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
    raise NotAnIndexError(f"{path} is not a ragapp index and is not empty (it holds {shown}); ragapp writes an "
                          "index only into a new or empty folder or an existing index: choose another --index")

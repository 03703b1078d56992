"""The cache of converted models: each built once aside and renamed into place, then checked file by
file against the sha256 list written with it every time it is used (a file unchanged since it was last
hashed is not hashed again: `DigestMemo`, kept in `<cache>/models/ragapp-verified.json`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ragapp.digest import DigestMemo, file_sha256


@contextmanager
def build_aside(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success rename it to `target` (atomic on one file system)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.exists():  # another process may have won the race; that copy is as good
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_HASHES = "ragapp-sha256.json"
MEMO = "ragapp-verified.json"  # beside the converted models: sha256 per file and the stat it was taken at


def memo_for(path: Path) -> DigestMemo:
    """The digest memo of the model cache that holds `path` (a converted model's folder, or a file beside them)."""
    return DigestMemo(path.parent / MEMO)


def remembered_sha256(cache_dir: str | Path, file: Path) -> str:
    """sha256 of any file (a model folder's weights, a tokenizer), through the model cache's memo."""
    memo = DigestMemo(Path(cache_dir) / "models" / MEMO)
    digest = memo.sha256(file)
    memo.save()
    return digest


def _folder_hashes(folder: Path, sha256=file_sha256) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != _HASHES}


def cache_entry_ok(folder: Path) -> bool:
    """True when every file of a converted model is the one written (sha256), and nothing was added."""
    try:
        recorded = json.loads((folder / _HASHES).read_text(encoding="utf-8"))
        memo = memo_for(folder)
        ok = isinstance(recorded, dict) and recorded == _folder_hashes(folder, memo.sha256)
        memo.save()
        return ok
    except (OSError, ValueError):
        return False


def cached(cache_dir: str | Path, name: str, build: Callable[[Path], None]) -> Path:
    """The converted model `name` in the cache: built once, then checked file by file against the
    sha256 list written with it (a half-written, truncated or edited entry is built again)."""
    target = Path(cache_dir) / "models" / name
    if target.exists():
        if cache_entry_ok(target):
            return target
        shutil.rmtree(target, ignore_errors=True)
    _drop_stale_builds(target)
    with build_aside(target) as tmp:
        build(tmp)
        (tmp / _HASHES).write_text(json.dumps(_folder_hashes(tmp), indent=1), encoding="utf-8")
    return target


def _drop_stale_builds(target: Path, age_s: float = 3600) -> None:
    """Remove what a build killed half way left beside `target` (an hour old: no build takes that long)."""
    import time

    if target.parent.is_dir():
        for old in target.parent.glob(f".{target.name}.*"):
            try:
                if old.is_dir() and not old.is_symlink() and time.time() - old.stat().st_mtime > age_s:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass

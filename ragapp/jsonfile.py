"""Small state files (the model memo, a watcher's status, a chat model's saved prompt head) written aside
and renamed into place, so a reader never sees half of one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def read_json(path: Path, max_bytes: int) -> object | None:
    """The JSON in `path`, or None when it is missing, larger than `max_bytes` or not JSON (an index folder's
    files are untrusted input: the caller checks the shape)."""
    try:
        if path.stat().st_size > max_bytes:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def replace_json(path: Path, data: object) -> bool:
    """Write `data` as JSON to `path` through a temporary file renamed over it; False (and nothing left
    behind) when the folder cannot be written."""
    return replace_bytes(path, json.dumps(data, ensure_ascii=False).encode("utf-8"))


def replace_bytes(path: Path, data: bytes) -> bool:
    """Write `data` to `path` through a temporary file renamed over it; False (and nothing left behind)
    when the folder cannot be written."""
    try:
        write_replacing(path, data)
        return True
    except OSError:
        return False


def write_replacing(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file renamed over it; on OSError nothing is left behind
    and `path` is as it was."""
    tmp = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
        tmp = ""
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

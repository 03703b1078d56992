"""Small JSON state files (the model memo, a watcher's status) written aside and renamed into place, so a
reader never sees half of one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def replace_json(path: Path, data: object) -> bool:
    """Write `data` as JSON to `path` through a temporary file renamed over it; False (and nothing left
    behind) when the folder cannot be written."""
    tmp = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, ensure_ascii=False)
        os.replace(tmp, path)
        tmp = ""
        return True
    except OSError:
        return False
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

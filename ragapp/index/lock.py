"""The writer lock: one process writes an index at a time; readers are never blocked."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ragapp.errors import IndexLockedError, IndexWriteError
from ragapp.index.folder import LOCK, check_index_folder


@contextmanager
def write_lock(path: str | Path, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Exclusive writer lock on an index directory (created if missing, only where ragapp may write)."""
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

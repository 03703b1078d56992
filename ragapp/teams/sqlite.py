"""How a team's SQLite files are opened (users.db, conversations.db): owner-only, WAL so the server's
threads and the `ragapp users` CLI share them, and each write one immediate transaction."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path


@contextmanager
def opened(path: Path, schema: str, write: bool = True, durable: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection to `path`; with `write`, the file (mode 0600) and `schema` made first and the work
    inside one transaction (rolled back on any error); `durable` syncs every commit to disk."""
    if write:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    with closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as db:
        db.execute("PRAGMA foreign_keys = ON")
        if not write:
            yield db
            return
        db.execute("PRAGMA journal_mode = WAL")
        if durable:
            db.execute("PRAGMA synchronous = FULL")
        db.executescript(schema)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

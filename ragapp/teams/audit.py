"""The audit log of a team's server (the only reader and writer of `.ragapp/audit/` under the
knowledge root): one JSON line per action, appended and on disk before the reply is sent, rotated by
size (audit.jsonl → audit.1.jsonl …), read back by `ragapp audit` and GET /v1/audit.

A line: time, user (a key by its id, never the key), client address, action (route or tool), knowledge
base, document, outcome (status code), and the question unless `[audit] questions = false`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ragapp.config_teams import AuditConfig

FOLDER = Path(".ragapp") / "audit"
_MAX_LINE = 16_384  # a question is cut to fit


class AuditLog:
    """Appends and reads one knowledge root's audit log; safe from several threads and processes.

    Lines are appended to one open file and made durable by group commit: a writer returns once an
    fsync begun after its line was written has finished, and one fsync covers every line written
    before it, so a burst of requests shares its syncs instead of queueing one per line."""

    def __init__(self, root: str | Path, config: AuditConfig) -> None:
        self.folder, self.config = Path(root) / FOLDER, config
        self.path = self.folder / "audit.jsonl"
        self._lock, self._syncing = threading.Lock(), threading.Lock()
        self._file: BinaryIO | None = None
        self._written = self._synced = 0

    def write(self, user: str, client: str, action: str, status: int, kb: str = "", document: str = "",
              question: str = "", **more: object) -> None:
        """Append one line and return once it is on disk (an action whose line cannot be written fails with OSError)."""
        entry = {"time": round(time.time(), 3), "user": user, "client": client, "action": action, "kb": kb,
                 "document": document, "status": status, **more}
        if question:
            entry["question"] = question[:4000] if self.config.questions else f"({len(question)} characters)"
        line = (json.dumps(entry, ensure_ascii=False)[:_MAX_LINE] + "\n").encode("utf-8", "replace")
        with self._lock:
            self._rotate(len(line))
            self._file = self._current()
            self._file.write(line)
            self._written += 1
            mine = self._written
        self._sync(mine)

    def _current(self) -> BinaryIO:
        """The open log file, opened again when it was rotated or removed since (by any process)."""
        if self._file is not None:
            try:
                if os.fstat(self._file.fileno()).st_ino == os.stat(self.path).st_ino:
                    return self._file
            except FileNotFoundError:
                pass
            old, self._file = self._file, None
            try:
                os.fsync(old.fileno())  # what it holds is durable before it is let go
            finally:
                old.close()
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return open(self.path, "ab", buffering=0, opener=lambda p, f: os.open(p, f, 0o600))

    def _sync(self, mine: int) -> None:
        """Return once line number `mine` of this log is on disk, syncing when no fsync has covered it yet."""
        with self._syncing:
            if self._synced >= mine:
                return
            with self._lock:
                assert self._file is not None  # line `mine` was written to it
                upto, fd = self._written, os.dup(self._file.fileno())  # a copy: a rotation may close the file meanwhile
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._synced = upto

    def _rotate(self, adding: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size + adding <= self.config.max_mb * 1_000_000:
            return
        for n in range(self.config.keep - 1, 0, -1):
            older = self.folder / f"audit.{n}.jsonl"
            if older.exists():
                os.replace(older, self.folder / f"audit.{n + 1}.jsonl")
        os.replace(self.path, self.folder / "audit.1.jsonl")
        (self.folder / f"audit.{self.config.keep + 1}.jsonl").unlink(missing_ok=True)

    def read(self, user: str = "", kb: str = "", since: float = 0.0, limit: int = 1000) -> list[dict]:
        """The last `limit` lines, oldest first, of `user` (by name) and `kb`, at or after `since`."""
        found: list[dict] = []
        for entry in self._lines():
            if entry.get("time", 0) < since or (kb and entry.get("kb") != kb):
                continue
            if user and str(entry.get("user", "")).split(" (key ")[0] != user:
                continue
            found.append(entry)
        return found[-limit:]

    def _lines(self) -> Iterator[dict]:
        files = [self.folder / f"audit.{n}.jsonl" for n in range(self.config.keep, 0, -1)] + [self.path]
        for path in files:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    for line in f:
                        try:
                            entry = json.loads(line)
                        except ValueError:  # a line cut by a crash mid-write is skipped
                            continue
                        if isinstance(entry, dict):
                            yield entry
            except FileNotFoundError:
                continue

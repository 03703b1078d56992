"""Watched folders: native file-system events (watchdog) become incremental ingests.

A burst of changes (an editor's save, a copy of a thousand files, a `git checkout`) is gathered until
the folders have been quiet for `settle` seconds, then synced in one ingest of the whole folders: the
ingest's own plan finds what was added, edited, renamed or deleted (a file whose size, mtime, ctime
and inode are as recorded is not even read), so the first sync after a start also catches up with what
changed while nothing was watching. A file that is still being written keeps the folder from going
quiet; one written to for longer than `max_wait` is held back and the rest synced. The state goes to
`<index>/watch.json`, where the chat app and `ragapp info` read it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

# The index and ingestion packages (numpy and more) are imported where used: `ragapp --help` lists the
# `watch` command, which imports this module (0.17 s of numpy otherwise; docs/benchmarks.md "Cold start").
from ragapp.errors import NoDocumentsError, RagError
from ragapp.jsonfile import replace_json
from ragapp.load import SUPPORTED_SUFFIXES
from ragapp.records import IngestReport
from ragapp.text import shown

log = logging.getLogger(__name__)


class Ingests(Protocol):
    """What a watcher needs of the application object (ragapp.RAG is one)."""

    path: Path

    def ingest(self, paths: Sequence[str | Path], rebuild: bool = False, wait: bool = True, progress=None, on_message=None, *,
               hold: Collection[str] = (), rehash: Collection[str] = ()) -> IngestReport: ...

SETTLE_SECONDS = 1.0
MAX_WAIT_SECONDS = 30.0
RETRY_SECONDS = 30.0  # after a sync that failed as a whole (disk full, index locked by a stuck writer)
_MAX_STATUS_BYTES = 1 << 20


@dataclass(frozen=True)
class Batch:
    """One sync of the watched folders."""

    started: float  # time.time() when it began
    seconds: float
    events: int  # paths the watcher saw change
    report: IngestReport | None  # None when the sync failed as a whole (then `error`)
    error: str = ""
    held: int = 0  # files still being written, left for the next sync

    def line(self) -> str:
        """One line for a log: what changed, how long it took, what failed."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self.started))
        r = self.report
        if r is None:
            return f"{stamp} sync failed after {self.seconds:.1f} s: {self.error}"
        text = (f"{stamp} added {len(r.added)}, updated {len(r.updated)}, removed {len(r.removed)}, failed {len(r.failed)}"
                f" ({self.events} changed paths, {r.hashed} hashed, {r.chunks_added} chunks embedded, {r.chunks} in the index;"
                f" {self.seconds:.1f} s)")
        if self.held:
            text += f"; {self.held} still being written, left for the next sync"
        return text + "".join(f"; failed: {Path(f.path).name}: {f.reason}" for f in r.failed[:5])


@dataclass
class WatchStatus:
    """What a watcher is doing, as `<index>/watch.json` records it."""

    folders: list[str]
    pid: int
    started_at: float
    state: str = "starting"  # starting, syncing, idle, pending, stopped
    last_sync: float | None = None  # time.time() at the end of the last sync
    pending: int = 0  # changed paths waiting for the folders to settle
    batches: int = 0
    last: str = ""  # the last sync's line
    failures: list[dict] = field(default_factory=list)  # the last sync's failed files: {"path", "reason"}

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)

    @property
    def alive(self) -> bool:
        """True while the process that wrote this status is running."""
        if self.state == "stopped":
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except OSError:  # another user's process: it exists
            return True
        return True

    @classmethod
    def read(cls, index_folder: str | Path) -> WatchStatus | None:
        """The status a watcher left in an index folder; None when there is none or it is not one."""
        from ragapp.index.folder import WATCH_STATUS

        path = Path(index_folder) / WATCH_STATUS
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read(_MAX_STATUS_BYTES + 1)[:_MAX_STATUS_BYTES])
            status = cls(**data)
        except (OSError, ValueError, TypeError):
            return None
        ok = (isinstance(status.folders, list) and isinstance(status.pid, int) and isinstance(status.state, str)
              and isinstance(status.failures, list))
        return status if ok else None


class FolderWatcher:
    """Keeps an index in step with folders on disk:

        watcher = FolderWatcher(rag, ["~/notes"], on_batch=lambda b: print(b.line()))
        watcher.start()          # in a background thread; or watcher.run() here, until watcher.stop()
        watcher.status()         # WatchStatus: state, last sync, pending, failures
    """

    def __init__(self, rag: Ingests, folders: Sequence[str | Path], *, settle: float = SETTLE_SECONDS,
                 max_wait: float = MAX_WAIT_SECONDS, on_batch: Callable[[Batch], None] | None = None,
                 write_status: bool = True) -> None:
        if not folders:
            raise ValueError("no folders to watch")
        self.folders = [Path(f).expanduser().resolve() for f in folders]
        missing = [str(f) for f in self.folders if not f.is_dir()]
        if missing:
            raise NoDocumentsError(f"not a folder: {', '.join(missing)}")
        if not 0 < settle <= max_wait:
            raise ValueError(f"settle must be above 0 and at most max_wait; got settle={settle}, max_wait={max_wait}")
        self.rag, self.settle, self.max_wait, self.on_batch = rag, settle, max_wait, on_batch
        from ragapp.index.folder import WATCH_STATUS

        self._index_dir = Path(rag.path).resolve()
        self._status_file = self._index_dir / WATCH_STATUS if write_status else None
        self._status = WatchStatus([str(f) for f in self.folders], os.getpid(), time.time(), state="")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()  # changed paths; "" wakes the loop to stop
        self._syncing = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def syncing(self) -> bool:
        """True while a sync is writing the index."""
        return self._syncing.is_set()

    def status(self) -> WatchStatus:
        """A copy of the current state."""
        with self._lock:
            return replace(self._status, failures=list(self._status.failures))

    def start(self) -> None:
        """Run the watcher in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("this watcher is already running")
        self._thread = threading.Thread(target=self.run, name="ragapp-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop after the current sync (if any); waits for a thread started by `start`."""
        self._stop.set()
        self._queue.put("")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def run(self) -> None:
        """Sync once (catching up with changes made while nothing watched), then on every settled burst
        of changes, until `stop`. The observer starts first, so changes made during a sync are queued."""
        observer = _observer(self.folders, self._wanted, self._queue.put)
        try:
            self._sync(0, set(), set())
            pending: dict[str, float] = {}  # path -> monotonic time of its last event
            first = retry_at = 0.0
            while not self._stop.is_set():
                self._update(state="pending" if pending else "idle", pending=len(pending))
                arrived = self._next(self._wait_for(pending, first, retry_at))
                now = time.monotonic()
                for path in arrived:
                    pending[path] = now
                first = first or (now if pending else 0.0)
                if self._stop.is_set():
                    break
                if pending and now >= retry_at and self._due(pending, first, now):
                    held = {p for p, t in pending.items() if now - t < self.settle}
                    ok = self._sync(len(pending) - len(held), pending.keys() - held, held)
                    pending = {p: t for p, t in pending.items() if p in held or not ok}
                    first, retry_at = (now if pending else 0.0), (0.0 if ok else now + RETRY_SECONDS)
        finally:
            observer.stop()
            observer.join(10)
            self._update(state="stopped", pending=0)

    def _wait_for(self, pending: dict[str, float], first: float, retry_at: float) -> float | None:
        """Seconds until the pending changes are due (None: nothing pending, wait for an event)."""
        if not pending:
            return None
        now = time.monotonic()
        due = min(max(pending.values()) + self.settle, first + self.max_wait)
        return max(0.01, max(due, retry_at) - now)

    def _next(self, timeout: float | None) -> list[str]:
        """The paths that changed: waits up to `timeout` for the first, then takes all that are queued."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return []
        items = [item]
        with contextlib.suppress(queue.Empty):
            while len(items) < 100_000:
                items.append(self._queue.get_nowait())
        return [i for i in items if i]

    def _due(self, pending: dict[str, float], first: float, now: float) -> bool:
        return now - max(pending.values()) >= self.settle or now - first >= self.max_wait

    def _wanted(self, path: str) -> bool:
        """Events worth waking for: not inside the index folder, not a hidden, swap or backup file, and a
        supported document or something that is no longer a file (a deleted or moved folder)."""
        from ragapp.ingestion import is_skipped

        p = Path(path)
        if p == self._index_dir or self._index_dir in p.parents:
            return False
        root = next((f for f in self.folders if f in p.parents), None)
        if root is not None and any(is_skipped(part) for part in p.relative_to(root).parts):
            return False
        return p.name.lower().endswith(SUPPORTED_SUFFIXES) or not p.is_file()

    def _sync(self, events: int, changed: Collection[str], held: Collection[str]) -> bool:
        """One incremental ingest of the folders; True unless it failed as a whole."""
        self._syncing.set()
        self._update(state="syncing")
        started, t0 = time.time(), time.perf_counter()
        ok = True
        try:
            report: IngestReport | None = self.rag.ingest(self.folders, hold=held, rehash=changed)
            error = ""
        except NoDocumentsError:  # nothing to index yet: an empty folder is a fine thing to watch
            report, error = IngestReport(), ""
        except RagError as exc:
            report, error, ok = None, str(exc), False
        except Exception as exc:  # a bug met on one file must not end the watch: it is reported and retried
            log.exception("sync of %s failed", ", ".join(shown(f) for f in self.folders))
            report, error, ok = None, f"{type(exc).__name__}: {shown(str(exc))}", False
        finally:
            self._syncing.clear()
        batch = Batch(started, time.perf_counter() - t0, events, report, error, len(held))
        failures = [{"path": f.path, "reason": f.reason} for f in report.failed] if report else [{"path": "", "reason": error}]
        with self._lock:
            self._status.batches += 1
        self._update(last_sync=time.time(), last=batch.line(), failures=failures)
        if self.on_batch is not None:
            self.on_batch(batch)
        return ok

    def _update(self, **changes: object) -> None:
        """Change the state; the status file is written when something changed (not on every tick)."""
        with self._lock:
            before = self._status.to_dict()
            for name, value in changes.items():
                setattr(self._status, name, value)
            data = self._status.to_dict()
        from ragapp.index.folder import is_index_folder

        # Only into a folder that is an index's (or will be): never beside another program's files.
        if data != before and self._status_file is not None and self._index_dir.is_dir() and is_index_folder(self._index_dir):
            replace_json(self._status_file, data)


def _observer(folders: Sequence[Path], wanted: Callable[[str], bool], put: Callable[[str], None]):
    """A started watchdog observer (inotify, FSEvents, ReadDirectoryChangesW) that puts every wanted path
    that changed, was created, deleted or moved into `put`."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    class Changes(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            # Opening a file is no change, and a folder's own "modified" comes with its entries' events.
            if event.event_type in ("opened", "closed_no_write") or (event.is_directory and event.event_type == "modified"):
                return
            for raw in (event.src_path, event.dest_path):
                path = os.fsdecode(raw)
                if path and wanted(path):
                    put(path)

    observer = Observer()
    for folder in folders:
        observer.schedule(Changes(), str(folder), recursive=True)
    observer.start()
    return observer

"""Background jobs (ingest, eval): one at a time (both are CPU-bound and an ingest takes the index's one
writer), each with its progress and its report, kept by the app that made them (`ragapp serve`, the
chat app: a page's rerun never stops a job).

A finished job's report is written to a folder of the server's (a temporary one unless given) and read
back when asked for, so reports never pile up in memory; past MAX_FINISHED jobs the oldest are
forgotten. An eval job can be cancelled (it stops at its next question); an ingest runs to its end,
so a file saved into documents/ is never left out of the index.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ragapp.errors import RagError

MAX_FINISHED = 500
ACTIVE = ("queued", "running")


class Report(Protocol):
    """What a job's work returns (an IngestReport, an EvalReport)."""

    def to_dict(self) -> dict[str, Any]: ...


class Cancelled(Exception):
    """Raised inside a job's work (by its progress callback) once the job was cancelled."""


@dataclass
class Job:
    """One ingest of uploaded files into a knowledge base, or one test of it."""

    id: str
    knowledge_base: str
    kind: str = "ingest"  # "ingest" | "eval"
    status: str = "queued"  # queued | running | done | failed | cancelled
    stage: str = ""
    done: int = 0
    total: int = 0
    report_file: Path | None = None
    error: str = ""
    created_at: float = field(default_factory=time.time)
    cancel_asked: threading.Event = field(default_factory=threading.Event, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready form served at /v1/jobs/{id} (the report read back from its file)."""
        report = json.loads(self.report_file.read_text(encoding="utf-8")) if self.report_file is not None else None
        return {"id": self.id, "knowledge_base": self.knowledge_base, "kind": self.kind, "status": self.status,
                "progress": {"stage": self.stage, "done": self.done, "total": self.total},
                "report": report, "error": self.error, "created_at": self.created_at}


class Jobs:
    """Runs jobs on one worker thread; the event loop never waits for them."""

    def __init__(self, folder: Path | None = None) -> None:
        self._temporary = tempfile.TemporaryDirectory(prefix="ragapp-jobs-") if folder is None else None
        self.folder = Path(self._temporary.name) if self._temporary is not None else Path(folder)  # type: ignore[arg-type]
        self._jobs: dict[str, Job] = {}
        self._futures: dict[str, Future] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragapp-ingest")

    def submit(self, knowledge_base: str, work: Callable[[Callable[[str, str, int, int], None]], Report],
               kind: str = "ingest") -> Job:
        """Queue `work(progress)`; returns the job at once."""
        with self._lock:
            job = Job(id=f"job-{next(self._ids)}", knowledge_base=knowledge_base, kind=kind)
            self._jobs[job.id] = job
            self._futures[job.id] = self._pool.submit(self._run, job, work)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job, or None."""
        return self._jobs.get(job_id)

    def active(self, knowledge_base: str, kind: str) -> Job | None:
        """A queued or running job of this kind on this knowledge base, or None."""
        with self._lock:
            return next((j for j in self._jobs.values() if j.knowledge_base == knowledge_base and j.kind == kind
                         and j.status in ACTIVE), None)

    def cancel(self, job_id: str) -> Job:
        """Cancel an eval job (a queued one never starts, a running one stops at its next step); LookupError
        for no such job, ValueError for an ingest or a finished job."""
        job = self.get(job_id)
        if job is None:
            raise LookupError(job_id)
        if job.kind != "eval":
            raise ValueError("an ingest job runs to its end (its files are already saved in documents/)")
        if job.status not in ACTIVE:
            raise ValueError(f"the job is {job.status}")
        job.cancel_asked.set()
        future = self._futures.get(job_id)
        if future is not None and future.cancel():
            self._finish(job, "cancelled")
        return job

    def _run(self, job: Job, work) -> None:
        if job.cancel_asked.is_set():
            return self._finish(job, "cancelled")
        job.status = "running"

        def progress(stage: str, item: str, done: int, total: int) -> None:
            if job.cancel_asked.is_set():
                raise Cancelled
            job.stage, job.done, job.total = stage, done, total

        try:
            report = work(progress)
        except Cancelled:
            return self._finish(job, "cancelled")
        except (RagError, OSError, ValueError) as exc:
            return self._finish(job, "failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - a job reports every failure instead of dying silently
            return self._finish(job, "failed", f"{type(exc).__name__}: {exc}")
        path = self.folder / f"{job.id}.json"
        path.write_text(json.dumps(report.to_dict(), ensure_ascii=False), encoding="utf-8")
        job.report_file = path
        self._finish(job, "done")

    def _finish(self, job: Job, status: str, error: str = "") -> None:
        job.error, job.status = error, status
        with self._lock:
            self._futures.pop(job.id, None)
            finished = [j for j in self._jobs.values() if j.status not in ACTIVE]
            for old in finished[: max(0, len(finished) - MAX_FINISHED)]:
                del self._jobs[old.id]
                if old.report_file is not None:
                    old.report_file.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop taking jobs; wait for the running one."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._temporary is not None:
            self._temporary.cleanup()

"""Background jobs (ingest, eval): one at a time (both are CPU-bound and an ingest takes the index's one
writer), each with its progress and its report, kept by the app that made them."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from ragapp.errors import RagError


class Report(Protocol):
    """What a job's work returns (an IngestReport, an EvalReport)."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass
class Job:
    """One ingest of uploaded files into a knowledge base, or one test of it."""

    id: str
    knowledge_base: str
    kind: str = "ingest"  # "ingest" | "eval"
    status: str = "queued"  # queued | running | done | failed
    stage: str = ""
    done: int = 0
    total: int = 0
    report: Report | None = None
    error: str = ""
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        """JSON-ready form served at /v1/jobs/{id}."""
        return {"id": self.id, "knowledge_base": self.knowledge_base, "kind": self.kind, "status": self.status,
                "progress": {"stage": self.stage, "done": self.done, "total": self.total},
                "report": self.report.to_dict() if self.report else None, "error": self.error,
                "created_at": self.created_at}


class Jobs:
    """Runs jobs on one worker thread; the event loop never waits for them."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragapp-ingest")

    def submit(self, knowledge_base: str, work: Callable[[Callable[[str, str, int, int], None]], Report],
               kind: str = "ingest") -> Job:
        """Queue `work(progress)`; returns the job at once."""
        with self._lock:
            job = Job(id=f"job-{next(self._ids)}", knowledge_base=knowledge_base, kind=kind)
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, work)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job, or None."""
        return self._jobs.get(job_id)

    def _run(self, job: Job, work) -> None:
        job.status = "running"

        def progress(stage: str, item: str, done: int, total: int) -> None:
            job.stage, job.done, job.total = stage, done, total

        try:
            job.report = work(progress)
            job.status = "done"
        except (RagError, OSError, ValueError) as exc:
            job.error, job.status = str(exc), "failed"
        except Exception as exc:  # noqa: BLE001 - a job reports every failure instead of dying silently
            job.error, job.status = f"{type(exc).__name__}: {exc}", "failed"

    def close(self) -> None:
        """Stop taking jobs; wait for the running one."""
        self._pool.shutdown(wait=True, cancel_futures=True)

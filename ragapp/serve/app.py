"""The FastAPI app: routes and errors in one JSON shape (Host, Origin, keys and body limits: guards.py)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragapp.config import Config
from ragapp.errors import RagError
from ragapp.jobs import Job, Jobs
from ragapp.knowledge import DOCUMENTS, KnowledgeBases, UploadBatch, UploadRefused
from ragapp.rag import RAG
from ragapp.records import Answer
from ragapp.serve.chat import chat_routes, status_of
from ragapp.serve.evaluation import eval_routes
from ragapp.serve.guards import Guard
from ragapp.serve.pages import page_routes
from ragapp.serve.people import Doorman
from ragapp.serve.public import PublicPaths
from ragapp.serve.schemas import CreateKnowledgeBase
from ragapp.serve.team import caller, keeper, note, team_routes
from ragapp.serve.uploads import receive_upload
from ragapp.teams import Principal
from ragapp.teams.access import EDIT, READ
from ragapp.teams.conversations import Conversations
from ragapp.teams.limits import Turns
from ragapp.watch import FolderWatcher, WatchStatus


def _error(status: int, message: str, kind: str) -> JSONResponse:
    """Every error, one shape: {"error": {"message", "type", "code"}} (as OpenAI clients expect)."""
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


class Server:
    """What one process serves: the config, the knowledge bases (one embedder and chat model shared by
    all of them), the ingest jobs, and the uploads being received."""

    def __init__(self, config: Config, keys: frozenset[str], watch: Sequence[tuple[str, Path]] = (),
                 only: Path | None = None) -> None:
        self.config = config
        self.kbs = KnowledgeBases(Path(config.serve.knowledge_root), config, only=only)
        self.root = self.kbs.root
        self.base = self.kbs.base
        self.doorman = Doorman(self.root, keys, config)
        # An in-process model answers one question at a time; a model server (vLLM batches) takes several.
        self.turns = Turns(config.auth.concurrent_answers, at_once=8 if config.generate.backend == "openai" else 1,
                           max_waiting=config.serve.max_waiting_answers)
        self.conversations = Conversations(self.root, config.auth.max_conversations, config.auth.max_turns)
        self.jobs = Jobs()
        self.public = PublicPaths(self.root, (Path.home(),), tuple(folder for _, folder in watch))
        self.uploads = 0  # uploads being received (counted on the event loop's thread)
        self.watchers = [self._watcher(name, [f for n, f in watch if n == name]) for name in dict.fromkeys(n for n, _ in watch)]

    def _watcher(self, name: str, folders: list[Path]) -> FolderWatcher:
        """A watcher of `folders` into the knowledge base `name` (made when there is none yet)."""
        try:
            folder = self.kbs.named(name)
        except LookupError:
            folder = self.kbs.create(name)
        return FolderWatcher(self.kbs.open(folder), folders)

    def watch_status(self, folder: Path) -> dict | None:
        """The state of the watcher (this process's or another's) that keeps a knowledge base in step, with
        paths as a client may see them; None when none ever watched it."""
        status = WatchStatus.read(folder)
        if status is None:
            return None
        return {**status.to_dict(), "alive": status.alive, "folders": [self.public.text(f) for f in status.folders],
                "last": self.public.text(status.last), "failures": [{"path": self.public.name(f.get("path", "")),
                                                                    "reason": self.public.text(str(f.get("reason", "")))}
                                                                   for f in status.failures if isinstance(f, dict)]}

    def rag(self, request: Request, name: str, need: str = READ) -> RAG:
        """The knowledge base `name` for the caller: 404 when there is none or they hold no role on it
        (the same reply: it does not exist for them), 403 when their role is below `need`."""
        who = caller(request)
        note(request, kb=name)
        if not who.may(name, READ):
            raise HTTPException(404, f"no knowledge base named {name!r}; yours: {', '.join(map(repr, self.names(who))) or 'none'}")
        try:
            rag = self.kbs.open(self.kbs.named(name))
        except LookupError as exc:
            raise HTTPException(404, str(exc) if who.admin else f"no knowledge base named {name!r}") from exc
        if not who.may(name, need):
            raise HTTPException(403, f"{who.name} is a {who.role(name)} of {name!r}; this needs {need} or above")
        return rag

    def names(self, who: Principal) -> list[str]:
        """The knowledge bases that exist for `who` (folders that are not one are left out)."""
        return who.sees(self.kbs.names())

    def keeper(self, request: Request, kb: str, conversation: str | None) -> Callable[[str, Answer], str | None]:
        """What keeps an answer in the caller's conversation (ragapp.serve.team.keeper)."""
        return keeper(self.doorman, self.conversations, self.public, request, kb, conversation)

    def batch(self, rag: RAG, replace: bool) -> UploadBatch:
        """A new upload into `rag`'s documents folder, under the [serve] limits."""
        s = self.config.serve
        return UploadBatch(rag.path, replace=replace, max_file_bytes=s.max_upload_mb * 1_000_000,
                           max_files=s.max_upload_files, max_batch_bytes=s.max_request_mb * 1_000_000,
                           quota_bytes=s.quota_mb * 1_000_000, min_free_bytes=s.min_free_disk_mb * 1_000_000)


def _body_limit(config: Config) -> Callable[[str], int]:
    def limit(path: str) -> int:
        if path.endswith("/documents"):
            return config.serve.max_request_mb * 1_000_000
        return config.serve.max_request_kb * 1024
    return limit


def _install_handlers(app: FastAPI, server: Server) -> None:
    """Every error in one JSON shape, with no server path in its message."""

    @app.exception_handler(StarletteHTTPException)  # also the router's own 404 / 405
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, server.public.text(str(exc.detail)),
                      "invalid_request_error" if exc.status_code < 500 else "server_error")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(422, f"{where or 'body'}: {first.get('msg', 'invalid request')}", "invalid_request_error")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # the same shape, and no internals, for a bug
        return _error(500, f"internal error ({type(exc).__name__})", "server_error")

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError):
        status = status_of(exc)
        return _error(status, server.public.text(str(exc)), type(exc).__name__)


def _kb_entry(server: Server, name: str) -> dict:
    """A knowledge base in the list: its name and document count, or why it cannot be read."""
    try:
        rag = server.kbs.open(server.kbs.named(name))
        return {"name": name, "documents": len(rag.documents()), "watch": server.watch_status(rag.path)}
    except RagError as exc:
        return {"name": name, "documents": None, "error": server.public.text(str(exc))}


async def _upload(server: Server, rag: RAG, request: Request, replace: bool) -> list[Path]:
    """Receive one multipart upload into `rag` (the knowledge base and key were checked before any of
    the body was read); at most [serve] max_concurrent_uploads at once."""
    if server.uploads >= server.config.serve.max_concurrent_uploads:
        raise HTTPException(429, f"{server.uploads} uploads are being received; try again when one has finished")
    length, reserve = request.headers.get("content-length", ""), server.config.serve.min_free_disk_mb * 1_000_000
    if length.isdigit() and shutil.disk_usage(rag.path).free - int(length) < reserve:
        raise HTTPException(507, f"this upload would leave less than {reserve / 1e6:.0f} MB of free disk (serve.min_free_disk_mb)")
    server.uploads += 1
    try:
        return await receive_upload(request.headers.get("content-type", ""), request.stream(), server.batch(rag, replace))
    except UploadRefused as exc:
        raise HTTPException(exc.status, str(exc)) from exc
    finally:
        server.uploads -= 1


def _job_routes(app: FastAPI, server: Server) -> None:
    def job_of(request: Request, job_id: str, need: str) -> Job:
        """The job, when the caller may read its knowledge base (404 otherwise: it does not exist for them)."""
        found = server.jobs.get(job_id)
        if found is None or not caller(request).may(found.knowledge_base, READ):
            raise HTTPException(404, f"no job {job_id!r}")
        server.rag(request, found.knowledge_base, need)
        return found

    @app.get("/v1/jobs/{job_id}")
    async def job(job_id: str, request: Request) -> dict:
        found = job_of(request, job_id, READ)
        data = found.to_dict()
        public = server.public.report if found.kind == "ingest" else server.public.everywhere
        return {**data, "error": server.public.text(data["error"]), "report": data["report"] and public(data["report"])}

    @app.delete("/v1/jobs/{job_id}")
    async def cancel_job(job_id: str, request: Request) -> dict:
        """Cancel an eval job, queued or running (an ingest runs to its end: 409)."""
        job_of(request, job_id, EDIT)
        try:
            found = server.jobs.cancel(job_id)
        except LookupError as exc:
            raise HTTPException(404, f"no job {job_id!r}") from exc
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from exc
        return {"id": found.id, "cancelled": True}


def _kb_routes(app: FastAPI, server: Server) -> None:
    @app.get("/v1/knowledge_bases")
    async def list_kbs(request: Request) -> dict:
        who = caller(request)
        return {"object": "list", "data": [{**_kb_entry(server, n), "role": who.role(n)} for n in server.names(who)]}

    @app.post("/v1/knowledge_bases", status_code=201)
    async def create_kb(body: CreateKnowledgeBase, request: Request) -> dict:
        """A new, empty knowledge base (an admin's: it has no users yet)."""
        note(request, kb=body.name)
        if not caller(request).admin:
            raise HTTPException(403, "only an admin creates knowledge bases")
        try:
            folder = server.kbs.create(body.name)
        except ValueError as exc:
            raise HTTPException(400, f"{body.name!r}: {exc}") from exc
        return {"name": folder.name}

    @app.post("/v1/knowledge_bases/{name}/documents", status_code=202)
    async def upload(name: str, request: Request, replace: bool = False) -> dict:
        """Save the files of the multipart field `files` (all or none; an existing name only with
        ?replace=true) and ingest them in a background job."""
        rag = server.rag(request, name, EDIT)
        saved = await _upload(server, rag, request, replace)
        job = server.jobs.submit(name, lambda progress: rag.ingest([rag.path / DOCUMENTS], progress=progress))
        return {"job": job.id, "files": [p.name for p in saved]}

    @app.get("/v1/knowledge_bases/{name}/watch")
    async def watch(name: str, request: Request) -> dict:
        """The folder watcher's state: folders, last sync, pending changes, the last sync's failures."""
        return {"name": name, "watch": server.watch_status(server.rag(request, name).path)}

    @app.get("/v1/knowledge_bases/{name}/documents")
    async def documents(name: str, request: Request) -> dict:
        rag = server.rag(request, name)
        return {"object": "list", "data": [server.public.record(d.to_dict()) for d in rag.documents()]}

    @app.delete("/v1/knowledge_bases/{name}/documents/{document:path}")
    async def delete(name: str, document: str, request: Request) -> dict:
        """Remove an uploaded document (by its name in the knowledge base) from the index and the folder:
        the entry itself, never what a link points to."""
        rag = server.rag(request, name, EDIT)
        note(request, document=document)
        try:
            await run_in_threadpool(server.kbs.delete, rag, document)
        except LookupError as exc:
            raise HTTPException(404, f"no document {document!r} in {name!r}") from exc
        return {"deleted": document}


def create_app(config: Config, keys: frozenset[str] = frozenset(), watch: Sequence[tuple[str, Path]] = (),
               only: Path | None = None) -> FastAPI:
    """The HTTP API over the knowledge bases under [serve] knowledge_root (or the one index `only`); each
    (name, folder) of `watch` is kept in step with that knowledge base while the server runs."""
    server = Server(config, keys, watch, only)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Questions waiting their turn at the model wait in worker threads (each person holds at most
        # [auth] concurrent_answers): leave threads for everything else, searches and page images.
        anyio.to_thread.current_default_thread_limiter().total_tokens = 200
        for watcher in server.watchers:
            watcher.start()
        yield
        for watcher in server.watchers:
            watcher.stop()
        server.jobs.close()

    app = FastAPI(title="ragapp", version="0.1.0", description="Answers from your own documents, with citations.",
                  lifespan=lifespan)
    app.state.server = server
    _install_handlers(app, server)
    app.add_middleware(Guard, config=config.serve, doorman=server.doorman, body_limit=_body_limit(config))

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "models_loaded": server.base.ready}

    chat_routes(app, server)
    _kb_routes(app, server)
    _job_routes(app, server)
    page_routes(app, server.rag, server.public, threading.BoundedSemaphore(server.config.serve.max_concurrent_renders))
    eval_routes(app, server.rag, server.jobs, server.public)
    team_routes(app, server.doorman, server.conversations, server.names)
    return app

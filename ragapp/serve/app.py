"""The FastAPI app: routes and errors in one JSON shape (Host, Origin, keys and body limits: guards.py)."""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragapp.config import Config
from ragapp.errors import (
    BusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexUnavailableError,
    ModelNotAvailableError,
    ModelServerError,
    NoDocumentsError,
    RagError,
    TestSetFullError,
)
from ragapp.jobs import Jobs
from ragapp.knowledge import DOCUMENTS, KnowledgeBases, UploadBatch, UploadRefused
from ragapp.query.conversation import Turn
from ragapp.rag import RAG
from ragapp.records import Answer
from ragapp.serve.evaluation import eval_routes
from ragapp.serve.guards import Guard
from ragapp.serve.pages import cited, hit_entry, page_routes
from ragapp.serve.public import PublicPaths
from ragapp.serve.schemas import ChatMessage, ChatRequest, CreateKnowledgeBase, SearchRequest
from ragapp.serve.uploads import receive_upload
from ragapp.watch import FolderWatcher, WatchStatus

_STATUS = {IndexNotFoundError: 404, NoDocumentsError: 400, ModelServerError: 503, ModelNotAvailableError: 503,
           IndexCorruptError: 503, IndexMismatchError: 409, IndexUnavailableError: 503,
           TestSetFullError: 413, BusyError: 429}


def _error(status: int, message: str, kind: str) -> JSONResponse:
    """Every error, one shape: {"error": {"message", "type", "code"}} (as OpenAI clients expect)."""
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


class Server:
    """What one process serves: the config, the knowledge bases (one embedder and chat model shared by
    all of them), the ingest jobs, and the uploads being received."""

    def __init__(self, config: Config, keys: frozenset[str], watch: Sequence[tuple[str, Path]] = (),
                 only: Path | None = None) -> None:
        self.config = config
        self.keys = keys
        self.kbs = KnowledgeBases(Path(config.serve.knowledge_root), config, only=only)
        self.root = self.kbs.root
        self.base = self.kbs.base
        self.jobs = Jobs()
        self.public = PublicPaths(self.root, (Path.home(),))
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

    def rag(self, name: str) -> RAG:
        """The knowledge base `name` (404 when there is none)."""
        try:
            return self.kbs.open(self.kbs.named(name))
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from exc

    def names(self) -> list[str]:
        """Every knowledge base's name (folders that are not one are left out)."""
        return self.kbs.names()

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
        status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 500)
        return _error(status, server.public.text(str(exc)), type(exc).__name__)


def _question(messages: list[ChatMessage], limit: int) -> tuple[str, list[Turn]]:
    """The last user message, and the earlier user/assistant pairs as conversation history."""
    turns = [m for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user" or not turns[-1].text().strip():
        raise HTTPException(400, "the last message must be a non-empty user message (the question)")
    question = turns[-1].text()
    if len(question) > limit:
        raise HTTPException(413, f"the question is {len(question)} characters; the limit is {limit}")
    history, asked = [], None
    for m in turns[:-1]:
        if m.role == "user":
            asked = m.text()
        elif asked is not None:
            history.append(Turn(asked, m.text()))
            asked = None
    return question, history


def _completion(answer: Answer, model: str, stream: bool, public: PublicPaths) -> dict:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": model,
            "answered": answer.answered, "confidence": round(answer.confidence, 3), "draft": answer.draft,
            "citations": [cited(c, model, public) for c in answer.citations],
            "table_query": public.record(answer.table.to_dict()) if answer.table is not None else None}
    if stream:
        return {**base, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {**answer.usage, "total_tokens": sum(answer.usage.values())}
    return {**base, "object": "chat.completion", "usage": usage,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"}]}


def _sse(rag: RAG, question: str, history: list[Turn], top_k: int | None, model: str, public: PublicPaths) -> Iterator[str]:
    """OpenAI-style server-sent events; the last chunk carries `answered` and `citations`. A failure
    mid-answer ends the stream with an error event (the partial text is not an answer)."""
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def event(delta: dict) -> str:
        chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    stream = rag.ask_stream(question, top_k=top_k, history=history)
    yield event({"role": "assistant", "content": ""})
    try:
        for piece in stream:
            yield event({"content": piece})
    except RagError as exc:
        status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 500)
        error = {"message": public.text(str(exc)), "type": type(exc).__name__, "code": status}
        yield f"data: {json.dumps({'error': error}, ensure_ascii=False)}\n\n"
        return
    assert stream.answer is not None  # set when the stream ends
    final = _completion(stream.answer, model, stream=True, public=public)
    final["id"], final["created"] = cid, created
    yield f"data: {json.dumps(final, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


def _chat_routes(app: FastAPI, server: Server) -> None:
    @app.get("/v1/models")
    async def models() -> dict:
        """Knowledge bases, as OpenAI "models"."""
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "ragapp"}
                                           for n in server.names()]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        """Answer the last user message from the knowledge base named by `model`, with citations."""
        rag = server.rag(body.model)
        question, history = _question(body.messages, server.config.serve.max_question_chars)
        if body.stream:
            return StreamingResponse(_sse(rag, question, history, body.top_k, body.model, server.public),
                                     media_type="text/event-stream")
        answer = await run_in_threadpool(rag.ask, question, body.top_k, None, history)
        return _completion(answer, body.model, stream=False, public=server.public)

    @app.post("/v1/search")
    async def search(body: SearchRequest) -> dict:
        """Ranked passages with every stage's score (no LLM)."""
        rag = server.rag(body.knowledge_base)
        if len(body.query) > server.config.serve.max_question_chars:
            raise HTTPException(413, f"the query is {len(body.query)} characters; the limit is {server.config.serve.max_question_chars}")
        hits = await run_in_threadpool(rag.search, body.query, body.top_k)
        return {"object": "list", "data": [hit_entry(h, body.knowledge_base, rag, server.public) for h in hits]}


def _kb_entry(server: Server, name: str) -> dict:
    """A knowledge base in the list: its name and document count, or why it cannot be read."""
    try:
        rag = server.rag(name)
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
    @app.get("/v1/jobs/{job_id}")
    async def job(job_id: str) -> dict:
        found = server.jobs.get(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id!r}")
        data = found.to_dict()
        public = server.public.report if found.kind == "ingest" else server.public.everywhere
        return {**data, "error": server.public.text(data["error"]), "report": data["report"] and public(data["report"])}

    @app.delete("/v1/jobs/{job_id}")
    async def cancel_job(job_id: str) -> dict:
        """Cancel an eval job, queued or running (an ingest runs to its end: 409)."""
        try:
            found = server.jobs.cancel(job_id)
        except LookupError as exc:
            raise HTTPException(404, f"no job {job_id!r}") from exc
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from exc
        return {"id": found.id, "cancelled": True}


def _kb_routes(app: FastAPI, server: Server) -> None:
    @app.get("/v1/knowledge_bases")
    async def list_kbs() -> dict:
        return {"object": "list", "data": [_kb_entry(server, n) for n in server.names()]}

    @app.post("/v1/knowledge_bases", status_code=201)
    async def create_kb(body: CreateKnowledgeBase) -> dict:
        try:
            folder = server.kbs.create(body.name)
        except ValueError as exc:
            raise HTTPException(400, f"{body.name!r}: {exc}") from exc
        return {"name": folder.name}

    @app.post("/v1/knowledge_bases/{name}/documents", status_code=202)
    async def upload(name: str, request: Request, replace: bool = False) -> dict:
        """Save the files of the multipart field `files` (all or none; an existing name only with
        ?replace=true) and ingest them in a background job."""
        rag = server.rag(name)
        saved = await _upload(server, rag, request, replace)
        job = server.jobs.submit(name, lambda progress: rag.ingest([rag.path / DOCUMENTS], progress=progress))
        return {"job": job.id, "files": [p.name for p in saved]}

    @app.get("/v1/knowledge_bases/{name}/watch")
    async def watch(name: str) -> dict:
        """The folder watcher's state: folders, last sync, pending changes, the last sync's failures."""
        return {"name": name, "watch": server.watch_status(server.rag(name).path)}

    @app.get("/v1/knowledge_bases/{name}/documents")
    async def documents(name: str) -> dict:
        return {"object": "list", "data": [server.public.record(d.to_dict()) for d in server.rag(name).documents()]}

    @app.delete("/v1/knowledge_bases/{name}/documents/{document:path}")
    async def delete(name: str, document: str) -> dict:
        """Remove an uploaded document (by its name in the knowledge base) from the index and the folder:
        the entry itself, never what a link points to."""
        rag = server.rag(name)
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
    app.add_middleware(Guard, config=config.serve, keys=keys, body_limit=_body_limit(config))

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "models_loaded": server.base.ready}

    _chat_routes(app, server)
    _kb_routes(app, server)
    _job_routes(app, server)
    page_routes(app, server.rag, server.public, threading.BoundedSemaphore(server.config.serve.max_concurrent_renders))
    eval_routes(app, server.rag, server.jobs, server.public)
    return app

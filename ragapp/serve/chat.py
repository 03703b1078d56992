"""OpenAI-compatible chat over a knowledge base, with citations (streamed or not, each caller's
questions queued fairly), and search."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Protocol

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

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
from ragapp.query.conversation import Turn
from ragapp.rag import RAG
from ragapp.records import Answer
from ragapp.serve.pages import cited, hit_entry
from ragapp.serve.people import Doorman
from ragapp.serve.public import PublicPaths
from ragapp.serve.schemas import ChatMessage, ChatRequest, SearchRequest
from ragapp.serve.team import caller, note
from ragapp.teams import Principal
from ragapp.teams.limits import Limited, Turns
from ragapp.teams.limits import Turn as QueueTurn


class Server(Protocol):
    """What the chat routes use of the server (ragapp.serve.app.Server)."""

    config: Config
    public: PublicPaths
    turns: Turns
    doorman: Doorman

    def rag(self, request: Request, name: str, need: str = ...) -> RAG: ...
    def names(self, who: Principal) -> list[str]: ...
    def keeper(self, request: Request, kb: str, conversation: str | None) -> Callable[[str, Answer], str | None]: ...


STATUS = {IndexNotFoundError: 404, NoDocumentsError: 400, ModelServerError: 503, ModelNotAvailableError: 503,
           IndexCorruptError: 503, IndexMismatchError: 409, IndexUnavailableError: 503,
           TestSetFullError: 413, BusyError: 429}


def status_of(exc: RagError) -> int:
    """The HTTP status of a ragapp error."""
    return next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 500)


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


def _completion(answer: Answer, model: str, stream: bool, public: PublicPaths, conversation: str | None = None) -> dict:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": model,
            **({"conversation": conversation} if conversation else {}),
            "answered": answer.answered, "confidence": round(answer.confidence, 3), "draft": answer.draft,
            "citations": [cited(c, model, public) for c in answer.citations],
            "table_query": public.record(answer.table.to_dict()) if answer.table is not None else None}
    if stream:
        return {**base, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {**answer.usage, "total_tokens": sum(answer.usage.values())}
    return {**base, "object": "chat.completion", "usage": usage,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"}]}


def _answer(rag: RAG, turn: QueueTurn, question: str, top_k: int | None, history: list[Turn]) -> Answer:
    with turn:
        return rag.ask(question, top_k, None, history)


def _sse(rag: RAG, question: str, history: list[Turn], top_k: int | None, model: str, public: PublicPaths,
         turn: QueueTurn, keep: Callable[[str, Answer], str | None]) -> Iterator[str]:
    """OpenAI-style server-sent events, once it is the caller's turn; the last chunk carries `answered`
    and `citations`. A failure mid-answer ends the stream with an error event (the partial text is not
    an answer)."""
    try:
        with turn:
            yield from _events(rag, question, history, top_k, model, public, keep)
    finally:
        turn.close()


def _events(rag: RAG, question: str, history: list[Turn], top_k: int | None, model: str, public: PublicPaths,
            keep: Callable[[str, Answer], str | None]) -> Iterator[str]:
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
        status = status_of(exc)
        error = {"message": public.text(str(exc)), "type": type(exc).__name__, "code": status}
        yield f"data: {json.dumps({'error': error}, ensure_ascii=False)}\n\n"
        return
    assert stream.answer is not None  # set when the stream ends
    final = _completion(stream.answer, model, stream=True, public=public, conversation=keep(question, stream.answer))
    final["id"], final["created"] = cid, created
    yield f"data: {json.dumps(final, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


def chat_routes(app: FastAPI, server: Server) -> None:
    """GET /v1/models (the caller's knowledge bases), POST /v1/chat/completions and /v1/search."""

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        """Knowledge bases, as OpenAI "models"."""
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "ragapp"}
                                           for n in server.names(caller(request))]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        """Answer the last user message from the knowledge base named by `model`, with citations (kept
        in the caller's conversation `conversation` on a shared server)."""
        rag = server.rag(request, body.model)
        question, history = _question(body.messages, server.config.serve.max_question_chars)
        note(request, question=question)
        who, keep = caller(request), server.keeper(request, body.model, body.conversation)
        try:
            turn = server.turns.admit(who.name, limited=server.doorman.limited(who))
        except Limited as exc:
            raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from exc
        if body.stream:
            return StreamingResponse(_sse(rag, question, history, body.top_k, body.model, server.public, turn, keep),
                                     media_type="text/event-stream")
        answer = await run_in_threadpool(_answer, rag, turn, question, body.top_k, history)
        kept = await run_in_threadpool(keep, question, answer)
        return _completion(answer, body.model, stream=False, public=server.public, conversation=kept)

    @app.post("/v1/search")
    async def search(body: SearchRequest, request: Request) -> dict:
        """Ranked passages with every stage's score (no LLM)."""
        rag = server.rag(request, body.knowledge_base)
        note(request, question=body.query)
        if len(body.query) > server.config.serve.max_question_chars:
            raise HTTPException(413, f"the query is {len(body.query)} characters; the limit is {server.config.serve.max_question_chars}")
        hits = await run_in_threadpool(rag.search, body.query, body.top_k)
        return {"object": "list", "data": [hit_entry(h, body.knowledge_base, rag, server.public) for h in hits]}

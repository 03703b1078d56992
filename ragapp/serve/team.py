"""A team's routes: who am I, the audit log (admins), and each caller's own saved conversations
(listed, read, exported as Markdown or JSON, deleted); and what every route uses to know its caller
and to add to its audit line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ragapp.records import Answer
from ragapp.serve.pages import cited
from ragapp.serve.people import Doorman
from ragapp.serve.public import PublicPaths
from ragapp.teams import Principal
from ragapp.teams.conversations import Conversations, markdown


def caller(request: Request) -> Principal:
    """Who sent the request (the guard put them there; a route reached without one is refused)."""
    who = request.scope.get("state", {}).get("principal")
    if not isinstance(who, Principal):
        raise HTTPException(401, "missing or wrong API key (send Authorization: Bearer <key>)")
    return who


def note(request: Request, **fields: str) -> None:
    """Add `fields` (kb, document, question) to the request's audit line."""
    request.scope.setdefault("state", {}).setdefault("audit", {}).update(fields)


def keeper(doorman: Doorman, conversations: Conversations, public: PublicPaths, request: Request, kb: str,
           conversation: str | None) -> Callable[[str, Answer], str | None]:
    """What saves one answer into the caller's conversation (a new one unless `conversation` is theirs)
    and gives its id; on a server without users or keys, nothing is kept (None)."""
    who = caller(request)
    if not doorman.shared:
        return lambda question, answer: None

    def keep(question: str, answer: Answer) -> str | None:
        citations = [cited(c, kb, public) for c in answer.citations]
        return conversations.add_turn(who.name, kb, conversation or "", question, answer.text, answer.answered, citations)
    return keep


def team_routes(app: FastAPI, doorman: Doorman, conversations: Conversations, names: Callable[[Principal], list[str]]) -> None:
    """GET /v1/me, GET /v1/audit, and /v1/conversations[/{id}[/export]]."""

    @app.get("/v1/me")
    async def me(request: Request) -> dict:
        """The caller: name, whether an admin, and their role on each knowledge base they see."""
        who = caller(request)
        return {"name": who.name, "admin": who.admin, "via": who.via, "knowledge_bases": {n: who.role(n) for n in names(who)}}

    @app.get("/v1/audit")
    async def audit(request: Request, user: str = "", kb: str = "", since: float = 0.0, limit: int = 1000) -> dict:
        """The audit log's lines (admins only), oldest first, of one user and one knowledge base."""
        if not caller(request).admin:
            raise HTTPException(403, "only an admin reads the audit log")
        lines = await run_in_threadpool(doorman.audit.read, user, kb, since, max(1, min(limit, 10_000)))
        return {"object": "list", "data": lines}

    @app.get("/v1/conversations")
    async def listed(request: Request) -> dict:
        """The caller's saved conversations, the latest first."""
        return {"object": "list", "data": await run_in_threadpool(conversations.list, caller(request).name)}

    def mine(request: Request, conversation: str) -> dict:
        found = conversations.get(caller(request).name, conversation)
        if found is None:
            raise HTTPException(404, f"no conversation {conversation!r}")
        return found

    @app.get("/v1/conversations/{conversation}")
    async def read(conversation: str, request: Request) -> dict:
        """One of the caller's conversations with its turns and citations."""
        return await run_in_threadpool(mine, request, conversation)

    @app.get("/v1/conversations/{conversation}/export")
    async def export(conversation: str, request: Request, format: Literal["markdown", "json"] = "markdown") -> Response:
        """The conversation as a Markdown or JSON download."""
        found = await run_in_threadpool(mine, request, conversation)
        if format == "json":
            import json

            body, kind = json.dumps(found, ensure_ascii=False, indent=1), "application/json"
        else:
            body, kind = markdown(found), "text/markdown; charset=utf-8"
        suffix = "json" if format == "json" else "md"
        return Response(body, media_type=kind,
                        headers={"Content-Disposition": f'attachment; filename="conversation-{conversation}.{suffix}"'})

    @app.delete("/v1/conversations/{conversation}")
    async def delete(conversation: str, request: Request) -> dict:
        if not await run_in_threadpool(conversations.delete, caller(request).name, conversation):
            raise HTTPException(404, f"no conversation {conversation!r}")
        return {"deleted": conversation}

"""`ragapp mcp`: the user's documents as Model Context Protocol tools, for desktop assistants, editors and
agent frameworks, through the official `mcp` SDK (stdio, or streamable HTTP on loopback by default).

Tools: `ask` (an answer with citations, or the exact refusal with answered=false), `search` (passages
with source, page and scores), `list_documents`, `list_knowledge_bases`, and `ingest_paths` only when
the server was started with folders it may read (`--allow-ingest`). Resources: a document's metadata
(`ragapp://{kb}/documents/{doc}`) and a cited passage (`ragapp://{kb}/passages/{row}-{hash}`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from ragapp.config import Config
from ragapp.errors import RagError
from ragapp.knowledge import KnowledgeBases
from ragapp.rag import RAG
from ragapp.records import Answer, DocumentInfo, Hit
from ragapp.teams import EVERYONE, Principal
from ragapp.teams.access import EDIT
from ragapp.version import __version__

INSTRUCTIONS = (
    "These tools read the user's own documents (Chinese and English files the user indexed with ragapp). "
    "Use `ask` for a question about their content: it answers only from the documents, with citations "
    "(file, page, quote). When it returns answered=false, the documents do not hold the answer: tell the "
    "user so rather than answering from memory. Use `search` to read the passages yourself.")
_READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
KnowledgeBase = Annotated[str | None, Field(description="Knowledge base name (see list_knowledge_bases); default: the main one.")]


class Shelf:
    """The knowledge bases one server answers from: a single index, or every one under a root (sharing
    one embedder and chat model)."""

    def __init__(self, config: Config, index: str | Path | None = None, root: str | Path | None = None) -> None:
        if (index is None) == (root is None):
            raise ValueError("give exactly one of index or root")
        self._single = RAG(index, config) if index is not None else None
        self._kbs = KnowledgeBases(Path(root), config) if root is not None else None

    def names(self, who: Principal = EVERYONE) -> list[str]:
        """The knowledge bases that exist for `who`, by name; the first is their default."""
        if self._single is not None:
            return who.sees([self._single.path.name])
        assert self._kbs is not None
        return who.sees([self._kbs.default.name, *(n for n in self._kbs.names() if n != self._kbs.default.name)])

    def rag(self, name: str | None, who: Principal = EVERYONE) -> RAG:
        """The RAG of a knowledge base (None: `who`'s default); ToolError naming their choices when it
        does not exist for them."""
        mine = self.names(who)
        name = name or (mine[0] if mine else "")
        if name in mine:
            if self._single is not None:
                return self._single
            assert self._kbs is not None
            if name == self._kbs.default.name:
                return self._kbs.base
            try:
                return self._kbs.open(self._kbs.named(str(name)))
            except (LookupError, ValueError):
                pass
        raise ToolError(f"no knowledge base named {name!r}; there are: {', '.join(mine) or 'none'}")


def caller(ctx: Context | None) -> Principal:
    """Who called a tool: over stdio the user who started the server; over HTTP whom the guard let in."""
    request = getattr(ctx.request_context, "request", None) if ctx is not None and ctx._request_context is not None else None
    if request is None:
        return EVERYONE
    who = request.scope.get("state", {}).get("principal")
    if not isinstance(who, Principal):
        raise ToolError("this request names no caller")
    return who


def opened(shelf: Shelf, ctx: Context | None, tool: str, knowledge_base: str | None, question: str = "") -> RAG:
    """The knowledge base a tool reads, for its caller; on a team's server over HTTP each call is a line
    of the audit log (the tool, the knowledge base, 200 or 404), beside the line of its HTTP request."""
    who = caller(ctx)
    request = getattr(ctx.request_context, "request", None) if ctx is not None and ctx._request_context is not None else None
    state = request.scope.get("state", {}) if request is not None else {}
    log, client = state.get("audit_log"), (request.scope.get("client") or ("", 0))[0] if request is not None else ""
    try:
        rag = shelf.rag(knowledge_base, who)
    except ToolError:
        if log is not None:
            log.write(who.who, client, f"mcp {tool}", 404, kb=knowledge_base or "", question=question)
        raise
    if log is not None:
        log.write(who.who, client, f"mcp {tool}", 200, kb=rag.path.name, question=question)
    return rag


def document_key(source: str) -> str:
    """A document's name in resource URIs (its path hashed: paths hold slashes)."""
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _citations(kb: str, answer: Answer) -> list[dict[str, Any]]:
    rows = {h.chunk.id: (h.row, h.chunk) for h in answer.hits}
    cited = []
    for n, c in enumerate(answer.citations, start=1):
        row = rows.get(c.chunk_id, (-1, None))[0]
        cited.append({"n": n, "source": c.source, "page": c.page, "place": c.place, "quote": c.quote, "start": c.start,
                      "end": c.end, "passage": f"ragapp://{kb}/passages/{row}-{c.chunk_id}" if row >= 0 else None})
    return cited


def _passage(kb: str, hit: Hit) -> dict[str, Any]:
    c = hit.chunk
    return {"source": c.source, "page": c.page, "place": c.place, "text": c.text, "support": hit.support_text,
            "score": round(hit.score, 6), "bm25_score": hit.bm25_score, "dense_score": hit.dense_score,
            "rerank_score": hit.rerank_score, "passage": f"ragapp://{kb}/passages/{hit.row}-{c.id}"}


def _document(kb: str, d: DocumentInfo) -> dict[str, Any]:
    return {**d.to_dict(), "uri": f"ragapp://{kb}/documents/{document_key(d.source)}"}


async def _call(fn, *args):
    """A library call in a worker thread (the event loop keeps serving), its errors as tool errors."""
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except RagError as exc:
        raise ToolError(str(exc)) from exc


def _allowed(paths: Sequence[str], allowed: Sequence[Path]) -> list[Path]:
    """The paths, resolved (links followed), each under a folder the server was started with."""
    resolved = [Path(p).expanduser().resolve() for p in paths]
    outside = [str(p) for p, r in zip(paths, resolved) if not any(r == a or a in r.parents for a in allowed)]
    if outside:
        raise ToolError(f"outside the folders this server may ingest from ({', '.join(map(str, allowed))}): {', '.join(outside)}")
    return resolved


def build_server(shelf: Shelf, allow_ingest: Sequence[str | Path] = ()) -> MCPServer:
    """The MCP server over `shelf`; `ingest_paths` exists only when `allow_ingest` names folders."""
    server = MCPServer("ragapp", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING")
    _read_tools(server, shelf)
    _resources(server, shelf)
    if allow_ingest:
        _ingest_tool(server, shelf, [Path(a).expanduser().resolve() for a in allow_ingest])
    return server


def _read_tools(server: MCPServer, shelf: Shelf) -> None:
    @server.tool(annotations=_READ_ONLY)
    async def ask(question: Annotated[str, Field(min_length=1, max_length=4000, description="The question, in the user's words.")],
                  knowledge_base: KnowledgeBase = None,
                  top_k: Annotated[int | None, Field(ge=1, le=50, description="Passages to consider.")] = None,
                  ctx: Context | None = None) -> dict[str, Any]:
        """Answer a question from the user's own documents (Chinese or English) with numbered citations (file,
        page, quote). answered=false means the documents do not hold the answer: then the answer is the
        exact refusal sentence, and you should tell the user so instead of answering from memory. confidence
        (0-1) is the estimated probability that the answer is right; a withheld low-confidence answer is in draft."""
        rag = opened(shelf, ctx, "ask", knowledge_base, question)
        answer: Answer = await _call(lambda: rag.ask(question, top_k=top_k))
        return {"answered": answer.answered, "answer": answer.text, "language": answer.language,
                "confidence": round(answer.confidence, 3), "draft": answer.draft,
                "citations": _citations(rag.path.name, answer), "reason": answer.reason,
                "table_query": answer.table.to_dict() if answer.table is not None else None}

    @server.tool(annotations=_READ_ONLY)
    async def search(query: Annotated[str, Field(min_length=1, max_length=4000, description="Words or a question to look for.")],
                     knowledge_base: KnowledgeBase = None,
                     top_k: Annotated[int, Field(ge=1, le=50, description="How many passages.")] = 5,
                     ctx: Context | None = None) -> dict[str, Any]:
        """Find the passages of the user's documents that best match a query (keyword and semantic search,
        reranked), each with its file, page, the best-matching sentence and scores. No answer is written:
        use it to read the sources yourself or to gather several passages."""
        rag = opened(shelf, ctx, "search", knowledge_base, query)
        hits = await _call(lambda: rag.search(query, top_k=top_k))
        return {"passages": [_passage(rag.path.name, h) for h in hits]}

    @server.tool(annotations=_READ_ONLY)
    async def list_documents(knowledge_base: KnowledgeBase = None, ctx: Context | None = None) -> dict[str, Any]:
        """List the documents of a knowledge base: file path, chunks, size, content hash and when each was
        ingested, with a resource URI for its metadata."""
        rag = opened(shelf, ctx, "list_documents", knowledge_base)
        documents = await _call(rag.documents)
        return {"knowledge_base": rag.path.name, "documents": [_document(rag.path.name, d) for d in documents]}

    @server.tool(annotations=_READ_ONLY)
    async def list_knowledge_bases(ctx: Context | None = None) -> dict[str, Any]:
        """List the knowledge bases this server answers from (the first is the default)."""
        return {"knowledge_bases": shelf.names(caller(ctx))}


def _resources(server: MCPServer, shelf: Shelf) -> None:
    # A resource's error reaches the client only as a ResourceError (anything else becomes "Error
    # creating resource from template URI", its reason withheld).
    def rag_of(knowledge_base: str, ctx: Context | None) -> RAG:
        try:
            return opened(shelf, ctx, "resource", knowledge_base)
        except ToolError as exc:
            raise ResourceNotFoundError(str(exc)) from exc

    async def call(fn):
        try:
            return await _call(fn)
        except ToolError as exc:
            raise ResourceError(str(exc)) from exc

    @server.resource("ragapp://{knowledge_base}/documents/{key}", mime_type="application/json")
    async def document(knowledge_base: str, key: str, ctx: Context | None = None) -> dict[str, Any]:
        """An indexed document's metadata: source path, chunks, size, sha256, ingest time."""
        rag = rag_of(knowledge_base, ctx)
        found = [d for d in await call(rag.documents) if document_key(d.source) == key]
        if not found:
            raise ResourceNotFoundError(f"no document {key} in {knowledge_base} (list_documents gives their URIs)")
        return _document(knowledge_base, found[0])

    @server.resource("ragapp://{knowledge_base}/passages/{passage}", mime_type="application/json")
    async def passage(knowledge_base: str, passage: str, ctx: Context | None = None) -> dict[str, Any]:
        """A cited passage: its whole text, source and page."""
        rag = rag_of(knowledge_base, ctx)
        row, _, chunk_id = passage.partition("-")

        def read() -> dict[str, Any]:
            index = rag.index()
            if not row.isdigit() or int(row) >= len(index) or index.chunk(int(row)).id != chunk_id:
                raise ResourceNotFoundError(f"no passage {passage} in {knowledge_base}: the index changed since it was "
                                            "cited (or the link is not one ragapp gave); search again")
            c = index.chunk(int(row))
            return {"source": c.source, "page": c.page, "place": c.place, "start": c.start, "end": c.end, "text": c.text}

        return await call(read)


def _ingest_tool(server: MCPServer, shelf: Shelf, allowed: list[Path]) -> None:
    where = ", ".join(map(str, allowed))

    @server.tool(description=f"Add or update files and folders in a knowledge base (only under: {where}). Unchanged files are "
                             "skipped; documents under a given folder that no longer exist leave the index. Returns what was "
                             "added, updated, removed and what failed, with the reason.",
                 annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                             open_world_hint=False))
    async def ingest_paths(paths: Annotated[list[str], Field(min_length=1, max_length=100, description="Files or folders.")],
                           knowledge_base: KnowledgeBase = None, ctx: Context | None = None) -> dict[str, Any]:
        who = caller(ctx)
        rag = opened(shelf, ctx, "ingest_paths", knowledge_base)
        if not who.may(rag.path.name, EDIT):
            raise ToolError(f"{who.name} is a {who.role(rag.path.name)} of {rag.path.name!r}; adding documents needs editor")
        report = await _call(lambda: rag.ingest(_allowed(paths, allowed)))
        return report.to_dict()


def run_stdio(server: MCPServer) -> None:
    """Serve over this process's stdin/stdout (the SDK points fd 1 at stderr meanwhile, so nothing a
    library prints can corrupt the protocol)."""
    server.run("stdio")


def run_http(server: MCPServer, config: Config, keys: frozenset[str], root: Path) -> None:
    """Serve streamable HTTP at http://{host}:{port}/mcp behind the HTTP API's guard (Host, Origin, API
    key or a user's key, body size, audit log: docs/security.md, docs/teams.md); the users and audit
    log are those of `root`."""
    import uvicorn

    from ragapp.serve.guards import Guard
    from ragapp.serve.people import Doorman

    host, port = config.serve.host, config.serve.port
    app = Guard(server.streamable_http_app(host=host), config.serve, Doorman(root, keys, config), lambda path: 1 << 20)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)

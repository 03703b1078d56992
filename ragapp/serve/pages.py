"""A citation on its page over HTTP: the page as a PNG with the quote boxed, and the link to it that
every citation in a chat or search reply carries (the boxes themselves are in the citation)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ragapp.records import Citation, Hit
from ragapp.show import drawable

if TYPE_CHECKING:
    from ragapp.rag import RAG
    from ragapp.serve.public import PublicPaths

_HIGHLIGHT = re.compile(r"(\d{1,9})-(\d{1,9})")


def cited(citation: Citation, kb: str, public: PublicPaths) -> dict:
    """A citation as a reply carries it: the source made public, its boxes, and where its page is drawn."""
    data = public.record(citation.to_dict())
    if drawable(citation.source) and citation.end > citation.start:
        data["page_image"] = _link(kb, data["source"], citation.page, citation.start, citation.end)
    return data


def hit_entry(hit: Hit, kb: str, rag: RAG, public: PublicPaths) -> dict:
    """A search hit as a reply carries it: the source made public, and its supporting sentence's boxes and
    page link (as a citation's)."""
    data = public.record(hit.to_dict())
    if hit.support is not None:
        c = hit.chunk
        start, end = c.start + hit.support[0], c.start + hit.support[1]
        data["boxes"] = [b.to_dict() for b in rag.page_boxes(c.source, c.page, start, end)]
        if drawable(c.source):
            data["page_image"] = _link(kb, data["source"], c.page, start, end)
    return data


def _link(kb: str, name: str, page: int | None, start: int, end: int) -> str:
    return f"/v1/knowledge_bases/{quote(kb, safe='')}/documents/{quote(name)}/pages/{page or 1}.png?highlight={start}-{end}"


def page_routes(app: FastAPI, rag_of: Callable[[Request, str], RAG], public: PublicPaths, renders: threading.Semaphore) -> None:
    """GET /v1/knowledge_bases/{name}/documents/{document}/pages/{n}.png?highlight=START-END&width=W; at most
    `renders` pages drawn at once (429 past them)."""

    @app.get("/v1/knowledge_bases/{name}/documents/{document:path}/pages/{page}.png")
    async def page_png(name: str, document: str, page: int, request: Request, highlight: str = "", width: int = 900) -> Response:
        """Page `page` of a document of the knowledge base, drawn about `width` pixels wide with characters
        START-END of its text boxed (a citation's start and end). A notice in the X-Ragapp-Notice
        header (and in the picture, when there is no page to show) says why it is shown otherwise."""
        rag = rag_of(request, name)
        request.scope.setdefault("state", {}).setdefault("audit", {})["document"] = document
        match = _HIGHLIGHT.fullmatch(highlight) if highlight else None
        if highlight and match is None:
            raise HTTPException(400, f"highlight must be START-END (character offsets). Currently, it is {highlight!r}")
        if not 16 <= width <= 4000 or page < 1:
            raise HTTPException(400, f"width must be 16..4000 and the page 1 or more. Currently, width={width}, page={page}")
        source = next((d.source for d in rag.documents() if public.name(d.source) == document), None)
        if source is None:
            raise HTTPException(404, f"no document {document!r} in {name!r}")
        if not drawable(source):
            raise HTTPException(404, "pages are drawn for PDFs and images; this document's citations are text")
        start, end = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        shown = await run_in_threadpool(rag.page_image, source, page, start, end, width, renders)
        headers = {"Cache-Control": "private, max-age=60"}
        if shown.notice:
            headers["X-Ragapp-Notice"] = public.text(shown.notice).encode("ascii", "replace").decode()
        return Response(shown.png, media_type="image/png", headers=headers)

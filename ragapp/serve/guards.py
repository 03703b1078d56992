"""What every request passes before a route sees it: the Host it was sent to, the page it came from,
the API key, and the size of its body (counted as it arrives, so nothing over the limit is read).

Browsers let any web page the user visits send "simple" requests (a form POST, a multipart upload)
to 127.0.0.1, and DNS rebinding lets a page read the replies of any route. A Host that is not this
server's name and an Origin that is not this server's own page are therefore refused, with or
without API keys (docs/security.md).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio

from ragapp.config import ServeConfig
from ragapp.net import LOOPBACK_NAMES, host_name, is_loopback
from ragapp.serve.people import Doorman, Refused
from ragapp.teams import Principal
from ragapp.teams.limits import Limited

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN = ("/health",)  # served without a key
_WILDCARD = ("0.0.0.0", "::", "[::]", "")


def error_body(status: int, message: str, kind: str) -> bytes:
    """Every error, one shape: {"error": {"message", "type", "code"}} (as OpenAI clients expect)."""
    return json.dumps({"error": {"message": message, "type": kind, "code": status}}, ensure_ascii=False).encode()


def allowed_hosts(config: ServeConfig, keyed: bool) -> frozenset[str] | None:
    """The Host names this server answers to (None: any). Without keys only loopback names (a
    rebound DNS name reaches 127.0.0.1 too); with keys on all interfaces, any name unless listed."""
    names = LOOPBACK_NAMES | {h.lower() for h in config.allowed_hosts}
    if keyed and not is_loopback(config.host):
        if config.host in _WILDCARD and not config.allowed_hosts:
            return None
        names |= {f"[{config.host}]" if ":" in config.host else config.host.lower()}
    return frozenset(names)


def origin_allowed(origin: str, host: str, config: ServeConfig) -> bool:
    """True for this server's own pages (the Origin names the Host asked for) or a configured origin."""
    origin = origin.strip().lower().rstrip("/")
    if origin in {o.lower().rstrip("/") for o in config.allowed_origins}:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == host.strip().lower() and not parts.path


def from_another_page(headers: dict[str, str], host: str, config: ServeConfig) -> bool:
    """True for a request a browser sent for another site's page without an Origin (an <img>, a link, a
    script or style tag: a GET carries none): its Sec-Fetch-Site says so, or, from an older browser,
    its Referer names another origin. Programs (curl, the OpenAI client) send neither."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site.strip().lower() not in ("same-origin", "none")
    referer = headers.get("referer")
    if not referer:
        return False
    parts = urlsplit(referer.strip())
    return not origin_allowed(f"{parts.scheme}://{parts.netloc}", host, config)


@dataclass(frozen=True)
class Stop:
    """A request that goes no further: its reply, what the audit log notes, and who sent it (if known)."""

    status: int
    message: str
    kind: str
    note: str = ""
    retry_after: int = 0
    who: Principal | None = None
    named: str = "-"  # how the audit log names a caller refused at the door


class Guard:
    """The ASGI layer that checks Host, Origin, caller (and their per-minute limit) and body size, in that
    order, before the app; with people told apart, every request's outcome goes to the audit log
    before its reply does."""

    def __init__(self, app: ASGIApp, config: ServeConfig, doorman: Doorman, body_limit: Callable[[str], int]) -> None:
        self.app, self.config, self.doorman, self.body_limit = app, config, doorman, body_limit
        self.hosts = allowed_hosts(config, doorman.shared)

    def refusal(self, scope: Scope, headers: dict[str, str]) -> Stop | None:
        """Why a request goes no further for its Host, Origin or size, or None."""
        host = headers.get("host", "")
        if self.hosts is not None and host_name(host) not in self.hosts:
            return Stop(403, f"Host {host!r} is not a name of this server (accepted: {', '.join(sorted(self.hosts))}; "
                             "add yours to [serve] allowed_hosts)", "forbidden_host")
        origin = headers.get("origin")
        if origin is not None and not origin_allowed(origin, host, self.config):
            return Stop(403, f"requests from the web page at {origin!r} are refused (only this server's own pages and "
                             "[serve] allowed_origins may call it)", "forbidden_origin")
        if origin is None and from_another_page(headers, host, self.config):
            return Stop(403, "requests from another site's page are refused (an <img> or link there carries no Origin; "
                             "only this server's own pages may load its data)", "forbidden_origin")
        length, limit = headers.get("content-length"), self.body_limit(scope["path"])
        if length is not None and (not length.isdigit() or int(length) > limit):
            return Stop(413, f"request body over the limit of {limit} bytes", "request_too_large")
        return None

    def caller(self, scope: Scope, headers: dict[str, str]) -> Principal | Stop:
        """Who sent the request, or why it goes no further (nobody, or over their per-minute limit)."""
        peer = (scope.get("client") or ("", 0))[0]
        who = self.doorman.identify(headers.get("authorization"), headers, peer)
        if isinstance(who, Refused):
            return Stop(401, who.message, "authentication_error", who.reason, named=who.who)
        try:
            if self.doorman.limited(who):
                self.doorman.minutes.take(who.name, who.name)
        except Limited as exc:
            return Stop(429, f"{exc} (requests)", "rate_limit_error", "rate limit", exc.retry_after, who)
        return who

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        stop = self.refusal(scope, headers)
        who: Principal | None = None
        if stop is None and scope["path"] not in OPEN:
            found = self.caller(scope, headers)
            stop, who = (found, found.who) if isinstance(found, Stop) else (None, found)
        if who is not None:
            scope.setdefault("state", {})["principal"] = who
            if self.doorman.shared:  # for what writes its own lines (the MCP tools)
                scope["state"]["audit_log"] = self.doorman.audit
        audited = self._audited(scope, send, who, stop)
        if stop is not None:
            retry = {"Retry-After": str(stop.retry_after)} if stop.retry_after else {}
            unread = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
            return await _reply(audited, stop.status, stop.message, stop.kind, retry, close=unread)
        await _counted(self.app, scope, receive, audited, self.body_limit(scope["path"]))

    def _audited(self, scope: Scope, send: Send, who: Principal | None, stop: Stop | None) -> Send:
        """`send`, writing the request's audit line (fsync'd) just before its reply starts."""
        if scope["path"] in OPEN or not self.doorman.shared:
            return send

        async def audited(message: Message) -> None:
            if message["type"] == "http.response.start":
                done = dict(scope.get("state", {}).get("audit", {}))
                line = {"user": who.who if who is not None else stop.named if stop else "-",
                        "client": (scope.get("client") or ("", 0))[0], "action": f"{scope['method']} {scope['path']}",
                        "status": message["status"], **done}
                if stop and stop.note:
                    line["note"] = stop.note
                await anyio.to_thread.run_sync(lambda: self.doorman.audit.write(**line))
            await send(message)
        return audited


async def _reply(send: Send, status: int, message: str, kind: str, headers: dict[str, str] | None = None,
                 close: bool = True) -> None:
    """An error reply; `close` ends the connection after it (a request body left unread must not be taken
    for the next request)."""
    body = error_body(status, message, kind)
    ending = [(b"connection", b"close")] if close else []
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *ending, *((k.encode(), v.encode()) for k, v in (headers or {}).items())]})
    await send({"type": "http.response.body", "body": body})


async def _counted(app: ASGIApp, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    """Run the app with its body counted as it arrives, so a chunked body without Content-Length stops
    at the same limit (413) instead of being read whole: past the limit the app sees the client go
    away, its own reply is dropped, and the 413 goes out instead."""
    seen, state = 0, {"over": False, "started": False}

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            state["over"] = True
            return {"type": "http.disconnect"}
        return message

    async def guarded(message: Message) -> None:
        if not state["over"]:
            state["started"] = True
            await send(message)

    try:
        await app(scope, counted, guarded)
    except Exception:
        if not state["over"]:
            raise
    if state["over"] and not state["started"]:
        await _reply(send, 413, f"request body over the limit of {limit} bytes", "request_too_large")

"""A team on one real `ragapp serve` (uvicorn on 127.0.0.1, the real embedder and packaged chat model)
with three users made by the real `ragapp users` CLI: root (admin), alice (editor of finance), bob
(reader of hr). Every route of the app × every user × every knowledge base; the MCP tools over HTTP;
a revoked key; the audit log against every request the test made; no secret in any file."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from conftest import SAMPLES
from helpers.api_server import ApiServer, no_server_paths, upload, wait_for_job

from ragapp.teams.access import ROLES

pytestmark = pytest.mark.integration

KBS = ("finance", "hr")
USERS = {"root": {"admin": True, "roles": {}}, "alice": {"admin": False, "roles": {"finance": "editor"}},
         "bob": {"admin": False, "roles": {"hr": "reader"}}}
PDF = SAMPLES / "en" / "photosynthesis.pdf"
TEXTS = {"finance": "The finance team's travel budget for 2025 is 48,000 euros, approved in March.\n",
         "hr": "New staff get 27 days of paid leave a year, plus public holidays.\n"}


def users_cli(root: Path, cache_dir: str, *args: str, stdin: str = "") -> str:
    done = subprocess.run([sys.executable, "-m", "ragapp.cli", "users", *args, "--knowledge-root", str(root)], input=stdin,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "RAGAPP_CACHE": cache_dir})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class Team:
    """The server, one client per user (and one with no key), and every request each client made."""

    def __init__(self, root: Path, server: ApiServer, keys: dict[str, str], passwords: dict[str, str]) -> None:
        self.root, self.server, self.keys, self.passwords = root, server, keys, passwords
        self.sent: Counter = Counter()
        self.clients = {name: self.client(name, key) for name, key in keys.items()}
        self.anonymous = self.client("-", "")
        self.jobs: dict[str, str] = {}
        self.uploads = itertools.count()

    def client(self, name: str, key: str) -> httpx.Client:
        def count(response: httpx.Response) -> None:
            if response.request.url.path != "/health":
                self.sent[(name, f"{response.request.method} {response.request.url.path}", response.status_code)] += 1
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=300,
                            event_hooks={"response": [count, no_server_paths(self.root)]})

    def role(self, user: str, kb: str) -> str | None:
        return "admin" if USERS[user]["admin"] else USERS[user]["roles"].get(kb)


@pytest.fixture(scope="module")
def team(tmp_path_factory, cache_dir):
    root = tmp_path_factory.mktemp("team")
    passwords = {name: f"pw-{name}-correct-horse" for name in USERS}
    keys = {}
    for name, user in USERS.items():
        grants = [a for kb, role in user["roles"].items() for a in ("--grant", f"{kb}={role}")]
        users_cli(root, cache_dir, "add", name, *(["--admin"] if user["admin"] else []), *grants)
        keys[name] = users_cli(root, cache_dir, "key", name)
        users_cli(root, cache_dir, "password", name, "--password-stdin", stdin=passwords[name] + "\n")
    # The table test sends a few hundred requests a minute; the limits have their own tests (test_team_limits.py).
    (root.parent / "team.toml").write_text("[auth]\nrequests_per_minute = 100000\n", encoding="utf-8")
    server = ApiServer(root, "", root.parent / "team-serve.log", cache_dir, config=root.parent / "team.toml")
    t = Team(root, server, keys, passwords)
    admin = t.clients["root"]
    for kb in KBS:
        assert admin.post("/v1/knowledge_bases", json={"name": kb}).status_code == 201
        (root.parent / f"{kb}.txt").write_text(TEXTS[kb], encoding="utf-8")
        state = upload(admin, kb, [root.parent / f"{kb}.txt", PDF])
        assert state["status"] == "done" and not state["report"]["failed"], state
        t.jobs[kb] = state["id"]
    yield t
    for c in [*t.clients.values(), t.anonymous]:
        c.close()
    server.stop()


def _upload_one(t: Team, client: httpx.Client, kb: str) -> httpx.Response:
    name = f"note-{next(t.uploads)}.txt"
    return client.post(f"/v1/knowledge_bases/{kb}/documents?replace=true",
                       files=[("files", (name, f"Note {name} about {kb}.\n".encode(), "text/plain"))])


def _delete(t: Team, client: httpx.Client, kb: str) -> httpx.Response:
    """Delete a document the admin has just added (so an allowed delete has something to delete)."""
    if kb not in KBS:
        return client.delete(f"/v1/knowledge_bases/{kb}/documents/note.txt")
    added = _upload_one(t, t.clients["root"], kb)
    wait_for_job(t.clients["root"], added.json()["job"])
    return client.delete(f"/v1/knowledge_bases/{kb}/documents/{added.json()['files'][0]}")


def _eval(t: Team, client: httpx.Client, kb: str) -> httpx.Response:
    r = client.post(f"/v1/knowledge_bases/{kb}/eval", json={"questions": 4})
    if r.status_code == 202:  # only that it starts: the admin cancels it at once
        assert t.clients["root"].delete(f"/v1/jobs/{r.json()['job']}").status_code == 200
        assert wait_for_job(t.clients["root"], r.json()["job"])["status"] == "cancelled"
    return r


ASK = {"messages": [{"role": "user", "content": "What is the capital of Mars?"}]}
# Each route that names a knowledge base: the role it needs, the request, and what "it works" means.
KB_ROUTES = {
    ("POST", "/v1/chat/completions"): ("reader", lambda t, c, kb: c.post("/v1/chat/completions", json={"model": kb, **ASK}),
                                       lambda r: r.status_code == 200 and r.json()["choices"]),
    ("POST", "/v1/search"): ("reader", lambda t, c, kb: c.post("/v1/search", json={"knowledge_base": kb, "query": "budget leave"}),
                             lambda r: r.status_code == 200 and r.json()["data"]),
    ("POST", "/v1/knowledge_bases/{name}/documents"): ("editor", _upload_one, lambda r: r.status_code == 202),
    ("GET", "/v1/knowledge_bases/{name}/documents"): ("reader", lambda t, c, kb: c.get(f"/v1/knowledge_bases/{kb}/documents"),
                                                      lambda r: r.status_code == 200 and r.json()["data"]),
    ("DELETE", "/v1/knowledge_bases/{name}/documents/{document:path}"): ("editor", _delete, lambda r: r.status_code == 200),
    ("GET", "/v1/knowledge_bases/{name}/documents/{document:path}/pages/{page}.png"): (
        "reader", lambda t, c, kb: c.get(f"/v1/knowledge_bases/{kb}/documents/{PDF.name}/pages/1.png"),
        lambda r: r.status_code == 200 and r.content.startswith(b"\x89PNG")),
    ("GET", "/v1/knowledge_bases/{name}/watch"): ("reader", lambda t, c, kb: c.get(f"/v1/knowledge_bases/{kb}/watch"),
                                                  lambda r: r.status_code == 200),
    ("GET", "/v1/jobs/{job_id}"): ("reader", lambda t, c, kb: c.get(f"/v1/jobs/{t.jobs.get(kb, 'nosuchjob')}"),
                                   lambda r: r.status_code == 200 and r.json()["status"] == "done"),
    # An ingest job runs to its end: the one allowed to cancel hears 409, not 403/404.
    ("DELETE", "/v1/jobs/{job_id}"): ("editor", lambda t, c, kb: c.delete(f"/v1/jobs/{t.jobs.get(kb, 'nosuchjob')}"),
                                      lambda r: r.status_code == 409 and "ingest" in r.text),
    ("POST", "/v1/knowledge_bases/{name}/eval"): ("editor", _eval, lambda r: r.status_code == 202),
    ("GET", "/v1/knowledge_bases/{name}/eval"): ("reader", lambda t, c, kb: c.get(f"/v1/knowledge_bases/{kb}/eval"),
                                                 lambda r: r.status_code == 404 and "has not been tested" in r.text),
    ("POST", "/v1/knowledge_bases/{name}/feedback"): (
        "reader", lambda t, c, kb: c.post(f"/v1/knowledge_bases/{kb}/feedback", json={"question": "Q?", "verdict": "good"}),
        lambda r: r.status_code == 201),
}
# Routes that name no knowledge base: who may call them ("user": anyone signed in; "admin"; "open": anyone).
OTHER_ROUTES = {("GET", "/v1/models"): "user", ("GET", "/v1/knowledge_bases"): "user", ("POST", "/v1/knowledge_bases"): "admin",
                ("GET", "/v1/me"): "user", ("GET", "/v1/audit"): "admin", ("GET", "/v1/conversations"): "user",
                ("GET", "/v1/conversations/{conversation}"): "user", ("GET", "/v1/conversations/{conversation}/export"): "user",
                ("DELETE", "/v1/conversations/{conversation}"): "user", ("GET", "/health"): "open",
                ("GET", "/openapi.json"): "user", ("GET", "/docs"): "user", ("GET", "/docs/oauth2-redirect"): "user",
                ("GET", "/redoc"): "user"}


def app_routes(tmp_path) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, from its own route list."""
    from ragapp.config import Config
    from ragapp.serve import create_app

    app = create_app(Config.load(None, serve__knowledge_root=str(tmp_path)))
    return {(m, r.path) for r in app.routes for m in getattr(r, "methods", ()) if m != "HEAD"}


def test_every_route_is_in_the_permission_table(tmp_path):
    missing = app_routes(tmp_path) - set(KB_ROUTES) - set(OTHER_ROUTES)
    assert not missing, f"routes without a row in the permission table (add one, and the check in the route): {sorted(missing)}"


def test_every_route_for_every_user_on_every_knowledge_base(team):
    for (method, path), (need, call, works) in KB_ROUTES.items():
        for user, kb in itertools.product(USERS, (*KBS, "nowhere")):
            r = call(team, team.clients[user], kb)
            role = team.role(user, kb) if kb != "nowhere" else None
            where = f"{method} {path} as {user} on {kb}: {r.status_code} {r.text[:200]}"
            if role is None:  # as if it did not exist: no other knowledge base's name, no role, no reason
                hidden = [k for k in KBS if k != kb and not team.role(user, k)]
                assert r.status_code == 404 and not any(k in r.text for k in hidden), where
            elif ROLES.index(role) < ROLES.index(need):
                assert r.status_code == 403, where
            else:
                assert works(r), where
        assert call(team, team.anonymous, "finance").status_code == 401


def test_lists_show_only_what_each_may_see(team):
    for user, client in team.clients.items():
        mine = [kb for kb in KBS if team.role(user, kb)]
        models = {m["id"] for m in client.get("/v1/models").json()["data"]}
        listed = {k["name"]: k["role"] for k in client.get("/v1/knowledge_bases").json()["data"]}
        me = client.get("/v1/me").json()
        assert set(mine) <= models and models - set(mine) <= ({"scratch"} if user == "root" else set()), (user, models)
        assert {k: v for k, v in listed.items() if k in KBS} == {kb: team.role(user, kb) for kb in mine}
        assert me["name"] == user and me["admin"] == USERS[user]["admin"]
    assert team.clients["root"].post("/v1/knowledge_bases", json={"name": "scratch"}).status_code == 201
    assert team.clients["alice"].post("/v1/knowledge_bases", json={"name": "mine"}).status_code == 403
    assert team.clients["bob"].get("/v1/audit").status_code == 403
    assert team.clients["root"].get("/v1/audit").json()["data"]
    for path in ("/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect", "/v1/models"):
        assert team.anonymous.get(path).status_code == 401 and team.clients["bob"].get(path).status_code == 200


def test_conversations_are_kept_per_person_and_exported(team):
    alice, bob = team.clients["alice"], team.clients["bob"]
    asked = {"model": "finance", "messages": [{"role": "user", "content": "What is the travel budget for 2025?"}]}
    first = alice.post("/v1/chat/completions", json=asked).json()
    assert first["answered"] and "48,000" in first["choices"][0]["message"]["content"], first
    conversation = first["conversation"]
    again = alice.post("/v1/chat/completions", json={**asked, "conversation": conversation, "messages": [
        *asked["messages"], {"role": "assistant", "content": first["choices"][0]["message"]["content"]},
        {"role": "user", "content": "When was it approved?"}]}).json()
    assert again["conversation"] == conversation
    kept = alice.get(f"/v1/conversations/{conversation}").json()
    assert [t["question"] for t in kept["turns"]] == ["What is the travel budget for 2025?", "When was it approved?"]
    assert conversation in [c["id"] for c in alice.get("/v1/conversations").json()["data"]]
    # Nobody else sees it, reads it, exports it, deletes it, or adds to it.
    assert conversation not in [c["id"] for c in bob.get("/v1/conversations").json()["data"]]
    for call in (bob.get, bob.delete):
        assert call(f"/v1/conversations/{conversation}").status_code == 404
    assert bob.get(f"/v1/conversations/{conversation}/export").status_code == 404
    other = bob.post("/v1/chat/completions", json={"model": "hr", "conversation": conversation, "messages": [
        {"role": "user", "content": "How many days of leave do new staff get?"}]}).json()
    assert other["conversation"] != conversation
    md = alice.get(f"/v1/conversations/{conversation}/export")
    assert md.headers["content-type"].startswith("text/markdown") and "attachment" in md.headers["content-disposition"]
    assert "## What is the travel budget for 2025?" in md.text and "1. finance.txt" in md.text and "48,000 euros" in md.text
    exported = alice.get(f"/v1/conversations/{conversation}/export?format=json").json()
    assert exported["turns"][0]["citations"][0]["quote"] and exported["knowledge_base"] == "finance"
    assert alice.delete(f"/v1/conversations/{conversation}").status_code == 200
    assert alice.get(f"/v1/conversations/{conversation}").status_code == 404


def test_a_revoked_key_and_a_removed_user_are_refused_on_the_next_request(team, cache_dir):
    key = users_cli(team.root, cache_dir, "key", "alice")
    client = team.client("alice", key)
    assert client.get("/v1/models").status_code == 200
    key_id = key.split("_")[1]
    users_cli(team.root, cache_dir, "key", "alice", "--revoke", key_id)
    refused = client.get("/v1/models")
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    assert team.clients["alice"].get("/v1/models").status_code == 200  # her other key still works
    users_cli(team.root, cache_dir, "add", "carol", "--grant", "hr=reader")
    carol = team.client("carol", users_cli(team.root, cache_dir, "key", "carol"))
    assert [m["id"] for m in carol.get("/v1/models").json()["data"]] == ["hr"]
    users_cli(team.root, cache_dir, "revoke", "carol", "hr")
    assert carol.get("/v1/knowledge_bases/hr/documents").status_code == 404
    users_cli(team.root, cache_dir, "remove", "carol")
    gone = team.client("-", carol.headers["authorization"].split()[1])  # whose key it was is forgotten with her
    assert gone.get("/v1/models").status_code == 401
    client.close(), carol.close(), gone.close()
    lines = [json.loads(x) for x in (team.root / ".ragapp" / "audit" / "audit.jsonl").read_text().splitlines()]
    assert any(x.get("note") == "revoked key" and x["status"] == 401 for x in lines)
    assert any(x["action"] == "users remove" and x.get("target") == "carol" for x in lines)


def test_the_audit_log_holds_every_request_and_no_secret(team):
    lines = [json.loads(x) for x in (team.root / ".ragapp" / "audit" / "audit.jsonl").read_text().splitlines()]
    served = Counter((x["user"].split(" (key ")[0], x["action"], x["status"]) for x in lines
                     if x["client"] != "local" and "mcp" not in x["action"])  # the CLI's and the MCP test's are theirs
    sent = Counter({(u if u != "-" else "-", a, s): n for (u, a, s), n in team.sent.items()})
    assert served == sent, (served - sent, sent - served)
    assert all(x["user"] == "-" or " (key " in x["user"] for x in lines if x["client"] != "local")
    assert any(x["user"].startswith("alice (key ") and x.get("note") == "revoked key" for x in lines)
    asked = [x for x in lines if x["action"] == "POST /v1/chat/completions" and x["status"] == 200]
    assert asked and all(x["question"] and x["kb"] for x in asked)
    secrets = [*team.keys.values(), *team.passwords.values()]
    for path in (team.root / ".ragapp").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [s for s in secrets if s.encode() in data or s.split("_")[-1].encode() in data], path


def test_mcp_tools_over_http_show_each_user_only_their_knowledge_bases(team, cache_dir, tmp_path):
    import anyio
    from helpers.net import free_port
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    port = free_port()
    log = open(tmp_path / "mcp.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "ragapp.cli", "mcp", "--http", "--port", str(port), "--knowledge-root",
                             str(team.root)], env={**os.environ, "RAGAPP_CACHE": cache_dir, "RAGAPP_API_KEYS": ""},
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/mcp"

    async def session(user: str) -> dict:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {team.keys[user]}"})
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            seen = {"list": (await client.call_tool("list_knowledge_bases", {})).structured_content["knowledge_bases"]}
            for kb in KBS:
                found = await client.call_tool("search", {"query": "budget leave", "knowledge_base": kb})
                seen[kb] = "error" if found.is_error else len(found.structured_content["passages"])
            return seen

    try:
        deadline = time.monotonic() + 120
        while not _up(url):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "mcp.log").read_text()
            time.sleep(0.3)
        assert httpx.post(url, json={}).status_code == 401  # users exist: a key is needed
        bob, alice = anyio.run(session, "bob"), anyio.run(session, "alice")
        assert bob["list"] == ["hr"] and bob["finance"] == "error" and bob["hr"] > 0
        assert alice["list"] == ["finance"] and alice["hr"] == "error" and alice["finance"] > 0
        lines = [json.loads(x) for x in (team.root / ".ragapp" / "audit" / "audit.jsonl").read_text().splitlines()]
        tools = {(x["user"].split(" (key ")[0], x["kb"], x["status"]) for x in lines if x["action"] == "mcp search"}
        assert {("bob", "finance", 404), ("bob", "hr", 200), ("alice", "hr", 404), ("alice", "finance", 200)} <= tools
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _up(url: str) -> bool:
    try:
        httpx.post(url, json={}, timeout=2)
        return True
    except httpx.HTTPError:
        return False

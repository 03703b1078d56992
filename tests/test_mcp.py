"""`ragapp mcp` as an MCP client sees it: the official SDK's own client spawns the server over stdio, or
talks streamable HTTP to it on 127.0.0.1; the packaged chat model answers."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import anyio
import pytest
from helpers.net import free_port
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from ragapp import RAG

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                 reason='the packaged chat model needs llama-cpp-python (pip install "ragapp[llama-cpp]"; '
                                        '.ci/run installs it)')]

REFUSAL = "I cannot answer from the given information."


@pytest.fixture(scope="module")
def index(tmp_path_factory, config, embedder) -> Path:
    import shutil

    from conftest import SAMPLES

    root = tmp_path_factory.mktemp("mcp")
    shutil.copytree(SAMPLES, root / "docs")
    (root / "inbox").mkdir()
    (root / "inbox" / "quux.md").write_text("Quux is a cold planet. Zorblax is its capital.\n", encoding="utf-8")
    (root / "private").mkdir()
    (root / "private" / "diary.md").write_text("Dear diary, nobody may index this.\n", encoding="utf-8")
    RAG(root / "index", config, embedder=embedder).ingest([root / "docs"])
    return root / "index"


def _env(cache_dir: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "RAGAPP_CACHE": cache_dir, **extra}


async def _check_the_tools(client: Client, index: Path, can_ingest: bool) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"ask", "search", "list_documents", "list_knowledge_bases"} <= set(tools)
    assert ("ingest_paths" in tools) == can_ingest
    assert "answered=false" in tools["ask"].description and tools["ask"].annotations.read_only_hint

    en = (await client.call_tool("ask", {"question": "How long does Mars take to orbit the Sun?"})).structured_content
    assert en["answered"] and "687" in en["answer"] and 0.0 < en["confidence"] <= 1.0 and en["draft"] == ""
    assert en["citations"][0]["source"].endswith("solar_system.md") and "687 Earth days" in en["citations"][0]["quote"]
    zh = (await client.call_tool("ask", {"question": "长城有多长？"})).structured_content
    assert zh["answered"] and "21196.18" in zh["answer"] and zh["citations"][0]["source"].endswith("长城.txt")
    outside = (await client.call_tool("ask", {"question": "What is the boiling point of tungsten?"})).structured_content
    assert outside["answered"] is False and outside["answer"] == REFUSAL and outside["citations"] == []

    passages = (await client.call_tool("search", {"query": "长城有多长", "top_k": 2})).structured_content["passages"]
    assert len(passages) == 2 and passages[0]["source"].endswith("长城.txt") and "21196.18" in passages[0]["text"]
    read = await client.read_resource(passages[0]["passage"])
    assert "21196.18" in read.contents[0].text
    for uri, why in (("ragapp://index/passages/0-x", "the index changed since it was cited"),
                     ("ragapp://nope/passages/0-x", "no knowledge base named 'nope'")):
        with pytest.raises(Exception) as failed:  # the reason reaches the client (issue 43)
            await client.read_resource(uri)
        assert why in str(failed.value), str(failed.value)

    docs = (await client.call_tool("list_documents", {})).structured_content["documents"]
    assert len([d for d in docs if d["source"].startswith(str(index.parent / "docs"))]) == 5
    assert '"chunks"' in (await client.read_resource(docs[0]["uri"])).contents[0].text

    bad = await client.call_tool("search", {"query": "x", "top_k": 0})
    assert bad.is_error and "top_k" in bad.content[0].text
    unknown = await client.call_tool("ask", {"question": "x", "knowledge_base": "nope"})
    assert unknown.is_error and "no knowledge base named 'nope'" in unknown.content[0].text


def test_stdio_tools_answer_cite_and_refuse(index, cache_dir):
    root = index.parent
    params = StdioServerParameters(command=sys.executable, args=["-m", "ragapp.cli", "mcp", "--index", str(index),
                                                                 "--allow-ingest", str(root / "inbox")],
                                   env=_env(cache_dir), cwd=str(root))

    async def session() -> None:
        async with Client(params) as client:
            await _check_the_tools(client, index, can_ingest=True)
            refused = await client.call_tool("ingest_paths", {"paths": [str(root / "private")]})
            assert refused.is_error and "outside the folders" in refused.content[0].text
            sneaky = await client.call_tool("ingest_paths", {"paths": [str(root / "inbox" / ".." / "private")]})
            assert sneaky.is_error
            report = (await client.call_tool("ingest_paths", {"paths": [str(root / "inbox")]})).structured_content
            assert report["added"] == [str(root / "inbox" / "quux.md")] and not report["failed"]
            hits = (await client.call_tool("search", {"query": "capital of Quux", "top_k": 1})).structured_content["passages"]
            assert "Zorblax" in hits[0]["text"]

    anyio.run(session)
    assert str(root / "private" / "diary.md") not in {d.source for d in RAG(index).documents()}


def test_stdio_without_allow_ingest_offers_no_write_tool(index, cache_dir):
    params = StdioServerParameters(command=sys.executable, args=["-m", "ragapp.cli", "mcp", "--index", str(index)],
                                   env=_env(cache_dir))

    async def session() -> None:
        async with Client(params) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "ingest_paths" not in names and "ask" in names
            called = await client.call_tool("ingest_paths", {"paths": ["/"]})
            assert called.is_error

    anyio.run(session)


def test_streamable_http_on_loopback_with_a_key(index, cache_dir, tmp_path):
    key = "k" * 24
    port = free_port()
    log = open(tmp_path / "mcp.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "ragapp.cli", "mcp", "--http", "--port", str(port), "--index", str(index)],
                            env=_env(cache_dir, RAGAPP_API_KEYS=key), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=2)
            except urllib.error.HTTPError as exc:
                assert exc.code == 401  # up, and the key is required
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "mcp.log").read_text()
                time.sleep(0.3)
        rebound = urllib.request.Request(url, method="POST", headers={"Host": "evil.example", "Authorization": f"Bearer {key}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebound, timeout=5)
        assert refused.value.code == 403

        async def session() -> None:
            http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
            async with http, Client(streamable_http_client(url, http_client=http)) as client:
                await _check_the_tools(client, index, can_ingest=False)

        anyio.run(session)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_the_documented_client_snippets_start_a_server(index, cache_dir):
    """docs/mcp.md's configuration snippets, as a client would run them (the index path replaced)."""
    import json
    import re
    import shutil

    from conftest import ROOT

    command = shutil.which("ragapp")
    if command is None:
        pytest.skip("the `ragapp` console script is not on PATH (pip install -e . puts it there)")
    text = (ROOT / "docs" / "mcp.md").read_text(encoding="utf-8")
    snippets = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]
    servers = [entry for s in snippets for group in s.values() for entry in group.values()]
    assert len(servers) == 3 and all(entry["command"] == "ragapp" for entry in servers)

    async def tools(args: list[str]) -> set[str]:
        params = StdioServerParameters(command=command, args=args, env=_env(cache_dir))
        async with Client(params) as client:
            return {t.name for t in (await client.list_tools()).tools}

    for entry in servers:
        args = [str(index) if a.endswith("/data/index") else str(index.parent) if a.endswith("/data") else a for a in entry["args"]]
        assert {"ask", "search", "list_documents"} <= anyio.run(tools, args), entry

"""Milvus going away (a Milvus Lite server on 127.0.0.1, SIGKILLed and started again on its data):
an ingest stops in one line with its exit code, what was committed before stays whole and
searchable, and the next ingest converges; a running `ragapp serve` answers a clear 503 during the
outage and answers again once Milvus is back, without a restart."""

import os
import random
import subprocess
import sys
import time

import httpx
import pytest
from conftest import SAMPLES
from helpers.api_server import ApiServer, upload
from helpers.milvus import MilvusLite
from test_milvus import _write_notes, state
from test_milvus_writers import _exactly

from ragapp.errors import IndexUnavailableError
from ragapp.index.milvus import collection_name

pytestmark = pytest.mark.integration

pytest.importorskip("milvus_lite", reason="Milvus Lite is a test dependency: pip install -e '.[test]'")

KEY = "milvus-faults-key-8e2a"


def _toml(tmp_path, uri: str):
    path = tmp_path / "ragapp.toml"
    path.write_text(f'[index]\nbackend = "milvus"\nuri = "{uri}"\n', encoding="utf-8")
    return path


def test_a_running_server_rides_out_a_milvus_outage(tmp_path, cache_dir):
    milvus = MilvusLite(tmp_path / "milvus")
    root = tmp_path / "kbs"
    root.mkdir()
    server = ApiServer(root, KEY, tmp_path / "serve.log", cache_dir, config=_toml(tmp_path, milvus.uri))
    ask = {"knowledge_base": "notes", "query": "How long does Mars take to orbit the Sun?", "top_k": 3}
    try:
        client = httpx.Client(base_url=server.url, headers=server.headers, timeout=300)
        assert client.post("/v1/knowledge_bases", json={"name": "notes"}).status_code == 201
        assert upload(client, "notes", sorted((SAMPLES / "en").iterdir()))["status"] == "done"
        before = client.post("/v1/search", json=ask).json()["data"]
        assert before[0]["source"].endswith("solar_system.md")

        milvus.kill()
        down = client.post("/v1/search", json=ask)
        assert down.status_code == 503, down.text
        message = down.json()["error"]["message"]
        assert message.startswith(f"Milvus at {milvus.uri}: ") and "check that the server answers" in message
        assert client.get("/health").status_code == 200  # the server itself is up
        chat = client.post("/v1/chat/completions", json={"model": "notes", "messages": [{"role": "user", "content": ask["query"]}]})
        assert chat.status_code == 503 and chat.json()["error"]["message"].startswith(f"Milvus at {milvus.uri}: ")

        milvus.start()
        deadline, back = time.monotonic() + 10, down
        while back.status_code == 503 and time.monotonic() < deadline:  # gRPC tries the server again within a second
            time.sleep(0.2)
            back = client.post("/v1/search", json=ask)
        assert back.status_code == 200, back.text
        assert [(h["source"], h["chunk_id"]) for h in back.json()["data"]] == [(h["source"], h["chunk_id"]) for h in before]
        added = upload(client, "notes", [SAMPLES / "zh" / "长城.txt"])
        assert added["status"] == "done" and len(added["report"]["added"]) == 1, added
    finally:
        server.stop()
        milvus.stop()


@pytest.mark.slow
def test_milvus_killed_at_random_moments_of_an_ingest(tmp_path, cache_dir):
    """Ten times: the Milvus server SIGKILLed at a random moment of `ragapp ingest` (models loading,
    files being written, the commit): the ingest exits with IndexUnavailableError's code and one line;
    Milvus started again shows each file whole in its old or its new version; the next ingest
    converges to exactly the folder."""
    milvus, corpus = MilvusLite(tmp_path / "milvus"), tmp_path / "corpus"
    env = {**os.environ, "RAGAPP_CACHE": cache_dir}
    cmd = [sys.executable, "-m", "ragapp.cli", "ingest", str(corpus), "--index", str(tmp_path / "index"),
           "--config", str(_toml(tmp_path, milvus.uri))]
    name = collection_name(tmp_path / "index")
    rng, stops = random.Random(7), []
    try:
        _write_notes(corpus, 1, range(10))
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
        for trial in range(10):
            before = state(milvus.uri, name)
            _write_notes(corpus, trial + 2, rng.sample(range(14), 5))  # some change, some are new
            (corpus / f"note_{rng.choice(range(14))}.txt").unlink(missing_ok=True)
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            t0 = time.perf_counter()
            time.sleep(rng.uniform(2, 14))
            milvus.kill()
            _, err = proc.communicate(timeout=300)
            lines = err.strip().splitlines()
            if proc.returncode == 0:  # it finished before the kill
                stops.append("finished")
            else:
                assert proc.returncode == IndexUnavailableError.exit_code, err
                assert [x for x in lines if x.startswith("error:")] == [lines[-1]], err
                assert lines[-1].startswith(f"error: Milvus at {milvus.uri}: "), err
                stops.append(f"{time.perf_counter() - t0:.0f} s")
            milvus.start()
            seen = state(milvus.uri, name)
            for source in seen:
                new = frozenset(open(source, encoding="utf-8").read().split()) if os.path.exists(source) else None
                words = frozenset(w for text in seen[source] for w in text.split())
                assert source in before and seen[source] == before[source] or words == new, f"trial {trial}: {source}"
            subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
            _exactly(milvus.uri, name, {str(p) for p in corpus.iterdir()})
        assert stops.count("finished") < 5, stops  # the kills fell inside the ingests
        print(f"milvus killed mid-ingest: {stops}")
    finally:
        milvus.stop()


def test_ragapp_keeps_a_connection_of_its_own_and_closes_it(tmp_path):
    """pymilvus shares one connection per address among a process's clients, made with the first one's
    options and kept open after close(): a test's (or the embedding program's) client left such a
    connection pinging an idle Milvus Lite server, which closed it (too_many_pings), and ragapp's next
    connect on it failed. ragapp's connection is its own: its options hold and close() ends it."""
    from pymilvus import MilvusClient

    from ragapp.index.milvus.connection import MilvusCollections

    server = MilvusLite(tmp_path / "server")
    try:
        theirs = MilvusClient(uri=server.uri)  # the process's shared connection to this address
        ours = MilvusCollections(server.uri, "own")
        assert ours.call("list", ours.client().list_collections) == []
        assert ours.client()._handler is not theirs._handler
        handler = ours.client()._handler
        ours.close()
        assert handler._channel is None  # closed, not left in pymilvus's pool
        assert theirs.list_collections() == []  # theirs untouched
        theirs.close()
    finally:
        server.stop()

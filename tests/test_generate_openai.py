"""The openai backend against a real HTTP server on 127.0.0.1 that fails on demand: answers,
refusals, and one clear line for every failure (the real llama.cpp server is in test_llama_cpp.py)."""

import json
import os
import subprocess
import sys
import time

import pytest
from helpers.net import free_port
from helpers.openai_stub import Stub

from ragapp import RAG
from ragapp.config import Config, GenerateConfig
from ragapp.errors import ModelServerError
from ragapp.generate import build_generator
from ragapp.query.prompt import FALLBACK

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "system", "content": "Answer."}, {"role": "user", "content": "Documents: The sky is blue.\n\nQuestion: colour?"}]


@pytest.fixture
def stub():
    server = Stub(needle="687")
    yield server
    server.close()


def generator(url, **kw):
    return build_generator(GenerateConfig(backend="openai", base_url=url, model="glm4", **kw))


def config_for(cache_dir, url, **kw) -> Config:
    return Config.load(None, cache_dir=cache_dir, generate__backend="openai", generate__base_url=url,
                       generate__model="glm4", **kw)


def test_ask_end_to_end_through_a_server(tmp_path, docs, stub, embedder, cache_dir):
    rag = RAG(tmp_path / "index", config_for(cache_dir, stub.url), embedder=embedder)
    rag.ingest([docs])
    stream = rag.ask_stream("How long does Mars take to orbit the Sun?")
    pieces = list(stream)
    answer = stream.answer
    assert answer.answered and "687" in answer.text and len(pieces) > 1  # streamed over SSE
    assert answer.citations and answer.citations[0].source.endswith("solar_system.md")
    assert answer.model == f"openai: glm4 @ {stub.url}"
    sent = stub.requests[-1]["body"]
    assert sent["model"] == "glm4" and sent["stream"] is True and sent["messages"][0]["role"] == "system"


def test_refusal_through_a_server_is_the_exact_fallback(tmp_path, docs, embedder, cache_dir):
    server = Stub(reply="The documents do not mention that.")
    try:
        rag = RAG(tmp_path / "index", config_for(cache_dir, server.url, rerank__min_score=0.0), embedder=embedder)
        rag.ingest([docs])
        answer = rag.ask("Which moon of Mars is larger?")
        assert not answer.answered and answer.text == FALLBACK["en"] and answer.citations == []
        assert answer.reason.startswith("the model found no answer in the passages (best passage scored ")
        assert len(server.requests) == 1
        gated = RAG(tmp_path / "index", config_for(cache_dir, server.url), embedder=embedder).ask("What is the population of Lisbon?")
        assert not gated.answered and len(server.requests) == 1  # the calibrated gate refuses before any model call
    finally:
        server.close()


def test_nothing_listening_is_one_line():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ModelServerError) as err:
        generator(url, max_retries=0).generate(MESSAGES)
    assert str(err.value) == (f"cannot reach {url} (nothing listening?): start the model server or fix "
                              "generate.base_url")


def test_wrong_key_and_unknown_model(stub, monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "s3cret-value")
    stub.script = [("status", 401)]
    with pytest.raises(ModelServerError, match=r"refused the API key \(401\): put the right key in the environment variable TEST_LLM_KEY"):
        generator(stub.url, api_key_env="TEST_LLM_KEY").generate(MESSAGES)
    assert stub.requests[-1]["auth"] == "Bearer s3cret-value"
    stub.script = [("status", 404)]
    with pytest.raises(ModelServerError, match=r"has no model 'glm4' \(404\): list its models at .*/v1/models"):
        generator(stub.url).generate(MESSAGES)


def test_429_and_5xx_are_retried_with_a_bound(stub):
    stub.script = [("status", 429), ("status", 503), "answer"]
    stub.reply = "Blue."
    assert generator(stub.url, max_retries=2).generate(MESSAGES) == "Blue."
    assert len(stub.requests) == 3
    stub.requests.clear()
    stub.script = [("status", 500)]
    with pytest.raises(ModelServerError, match=r"failed \(500\) after 1 retries: see the model server's log"):
        generator(stub.url, max_retries=1).generate(MESSAGES)
    assert len(stub.requests) == 2
    stub.requests.clear()
    stub.script = [("status", 429)]
    with pytest.raises(ModelServerError, match=r"is busy \(429 Too Many Requests\) after 0 retries"):
        generator(stub.url, max_retries=0).generate(MESSAGES)


def test_timeout_is_one_line(stub):
    stub.script = [("slow", 6)]
    t0 = time.perf_counter()
    with pytest.raises(ModelServerError, match=r"did not answer within 0.5 s \(generate.timeout_s\), after 0 retries"):
        generator(stub.url, timeout_s=0.5, max_retries=0).generate(MESSAGES)
    assert time.perf_counter() - t0 < 5  # gave up before the server answered (6 s), with room for a busy machine


def test_malformed_reply_is_one_line(stub):
    stub.script = ["garbage"]
    with pytest.raises(ModelServerError, match="not OpenAI-compatible"):
        generator(stub.url, max_retries=0).generate(MESSAGES)


def test_server_dying_mid_stream_gives_no_answer(tmp_path, docs, stub, embedder, cache_dir):
    rag = RAG(tmp_path / "index", config_for(cache_dir, stub.url, generate__max_retries=0), embedder=embedder)
    rag.ingest([docs])
    before = rag.manifest().generation
    stub.script = ["cut"]
    stream = rag.ask_stream("How long does Mars take to orbit the Sun?")
    with pytest.raises(ModelServerError, match="stopped in the middle of the answer"):
        for _ in stream:
            pass
    assert stream.answer is None  # the partial text never becomes an Answer
    assert rag.manifest().generation == before


def test_cli_error_is_one_line_and_the_key_stays_secret(tmp_path, docs, stub, cache_dir):
    index = tmp_path / "index"
    env = {**os.environ, "RAGAPP_CACHE": cache_dir, "TEST_LLM_KEY": "s3cret-value"}
    def run(*a):
        return subprocess.run([sys.executable, "-m", "ragapp.cli", *map(str, a)], capture_output=True, text=True,
                                        timeout=600, env=env)
    assert run("ingest", docs, "--index", index).returncode == 0
    dead = f"http://127.0.0.1:{free_port()}/v1"
    result = run("ask", "How long does Mars take to orbit the Sun?", "--index", index, "--llm-url", dead, "--llm-model", "glm4")
    assert result.returncode == ModelServerError.exit_code
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot reach {dead} (nothing listening?)")
    assert "Traceback" not in result.stderr
    ok = run("ask", "How long does Mars take to orbit the Sun?", "--index", index, "--llm-url", stub.url,
             "--llm-model", "glm4", "--llm-key-env", "TEST_LLM_KEY", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["model"] == f"openai: glm4 @ {stub.url}" and stub.requests[-1]["auth"] == "Bearer s3cret-value"
    info = run("info", "--index", index, "--json")
    everything = ok.stdout + ok.stderr + info.stdout + info.stderr + "".join(p.read_text(errors="replace")
                                                                            for p in index.rglob("*.json"))
    assert "s3cret-value" not in everything

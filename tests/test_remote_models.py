"""Embeddings and reranking through OpenAI-compatible servers: a real HTTP server serving the packaged
e5 embedder and a tiny real cross-encoder (see model_server.py for why not TEI or infinity here)."""

import pytest
from helpers.model_server import ModelServer

from ragapp import RAG
from ragapp.config import Config
from ragapp.errors import IndexMismatchError, ModelServerError
from ragapp.index import read_manifest

pytestmark = pytest.mark.integration

QUERIES = ["How long does Mars take to orbit the Sun?", "长城的总长度是多少？", "What does RuBisCO do?"]


@pytest.fixture
def server(embedder):
    s = ModelServer(encoder=embedder._torch_model())
    yield s
    s.close()


def remote_config(cache_dir, url, **kw) -> Config:
    return Config.load(None, cache_dir=cache_dir, embed__backend="openai", embed__base_url=url,
                       embed__model="multilingual-e5-small", **kw)


def test_index_built_and_searched_through_an_embedding_server(tmp_path, docs, server, embedder, config, cache_dir, echo_generator):
    remote = RAG(tmp_path / "remote", remote_config(cache_dir, server.url), generator=echo_generator())
    remote.ingest([docs])
    # Questions through sentence-transformers here too: the server computes them so (int8). Local passages go
    # through the packed int8 encoder, the server's through sentence-transformers' int8 batches: the same
    # vectors to within int8's noise (tests/test_packed.py), enough to swap a near tie at rank 3.
    local = RAG(tmp_path / "local", Config.load(None, cache_dir=cache_dir, embed__query_runtime="torch"),
                generator=echo_generator())
    local.ingest([docs])
    for q in QUERIES:
        ours, theirs = ([h.chunk.id for h in rag.search(q, top_k=3)] for rag in (remote, local))
        assert ours[0] == theirs[0] and len(set(ours) & set(theirs)) >= 2, q
    assert read_manifest(remote.path).embedding["backend"] == "openai"
    assert read_manifest(local.path).embedding["backend"] == "sentence-transformers"
    assert any(t.startswith("passage: ") for t in server.inputs) and f"query: {QUERIES[0]}" in server.inputs


def test_index_is_never_queried_with_another_backend(tmp_path, docs, server, embedder, config, cache_dir, echo_generator):
    RAG(tmp_path / "remote", remote_config(cache_dir, server.url), generator=echo_generator()).ingest([docs])
    with pytest.raises(IndexMismatchError, match=r"built with embedding.backend 'openai' \(asked: 'sentence-transformers'\)"):
        RAG(tmp_path / "remote", config, embedder=embedder, generator=echo_generator()).search("Mars")


def test_embedding_server_down_keeps_the_index(tmp_path, docs, server, cache_dir, echo_generator):
    rag = RAG(tmp_path / "remote", remote_config(cache_dir, server.url, embed__max_retries=0), generator=echo_generator())
    rag.ingest([docs])
    before = read_manifest(rag.path).generation
    server.close()
    (docs / "en" / "new.md").write_text("Ceres is the largest object in the asteroid belt.\n", encoding="utf-8")
    with pytest.raises(ModelServerError, match=r"cannot reach http://127.0.0.1:\d+/v1 \(nothing listening\?\): start the "
                                               r"model server or fix embed.base_url"):
        rag.ingest([docs])
    assert read_manifest(rag.path).generation == before and rag.index().manifest.generation == before


def test_http_reranker_orders_by_the_server_scores(tmp_path, docs, embedder, config, cache_dir, tiny_models, echo_generator):
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(tiny_models["cross-encoder"]), device="cpu")
    server = ModelServer(cross_encoder=ce)
    try:
        cfg = Config.load(None, cache_dir=cache_dir, rerank__kind="http", rerank__base_url=server.url, rerank__model="tiny-ce")
        rag = RAG(tmp_path / "index", cfg, embedder=embedder, generator=echo_generator())
        rag.ingest([docs])
        hits = rag.search(QUERIES[0], top_k=5)
        body = server.rerank_bodies[-1]
        expected = ce.predict([(QUERIES[0], h.chunk.text) for h in hits], show_progress_bar=False)
        assert [round(h.rerank_score, 5) for h in hits] == [round(float(s), 5) for s in expected]
        assert [h.rerank_score for h in hits] == sorted((h.rerank_score for h in hits), reverse=True)
        assert body["query"] == QUERIES[0] and body["model"] == "tiny-ce" and len(body["documents"]) >= 5
    finally:
        server.close()

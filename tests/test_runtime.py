"""Process-level settings: the library leaves os.environ alone; torch's thread count, set before each
encode, is the calling thread's own, so threads sharing one RAG never change it under each other."""

from __future__ import annotations

import os
import threading
from dataclasses import replace

import pytest

from ragapp import RAG

pytestmark = pytest.mark.integration


def test_rag_does_not_write_the_environment(tmp_path, config, embedder, echo_generator):
    before = dict(os.environ)
    RAG(tmp_path / "index", config, embedder=embedder, generator=echo_generator())
    RAG(tmp_path / "other", config)
    assert dict(os.environ) == before


def test_query_and_ingest_encodes_keep_their_own_thread_counts(config):
    """Queries encode with 1 thread, ingest with 2 (both measured best); run together from two
    threads (documents what torch's OpenMP backend does: the count is per thread), every forward pass sees the count its
    own caller asked for, at its start and at its end,
    in torch and in numba (the int8 embedder's loops)."""
    import numba
    import torch

    from ragapp.embed import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(replace(config.embed, query_runtime="torch"), config.cache_dir, config.threads,
                                           ingest_threads=config.ingest_threads)
    seen: list[tuple[str, int]] = []
    # Questions through the sentence-transformers module, passages through the packed encoder's first layer:
    # each runs once per encoded batch.
    modules = [embedder._torch_model()[0], embedder._passage_encoder().layers[0]]
    record = lambda *_: seen.append((threading.current_thread().name, torch.get_num_threads(), numba.get_num_threads()))  # noqa: E731
    handles = [h for m in modules for h in (m.register_forward_pre_hook(record), m.register_forward_hook(record))]
    texts = ["Otters hold hands while they sleep."] * 8

    def queries() -> None:
        for _ in range(20):
            embedder.embed_queries(texts[:1])

    def chunks() -> None:
        for _ in range(10):
            embedder.embed_chunks(texts, [((0, len(texts[0])),)] * len(texts))

    try:
        workers = [threading.Thread(target=queries, name="query"), threading.Thread(target=chunks, name="ingest")]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        for handle in handles:
            handle.remove()
    wanted = {"query": embedder._threads, "ingest": embedder._ingest_threads}
    assert embedder._threads != embedder._ingest_threads
    assert {name for name, *_ in seen} == {"query", "ingest"}
    assert all(ours == numbas == wanted[name] for name, ours, numbas in seen), sorted(set(seen))


@pytest.mark.parametrize("query_runtime", ["auto", "torch"])
def test_a_model_asked_for_by_several_threads_at_once_loads_once(config, monkeypatch, query_runtime):
    """Before, the embedder's warm_up had no lock: the first questions of an HTTP server's clients
    could each load the model (the torch one, or the question encoder and its onnxruntime layers)."""
    import ragapp.embed.sentence_transformers as st
    from ragapp.embed import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(replace(config.embed, query_runtime=query_runtime), config.cache_dir)
    loads, real_load = [], embedder._load
    embedder._load = lambda: loads.append("model") or real_load()
    for name in ("QueryEncoder", "OnnxLayers"):
        real = getattr(st, name)
        monkeypatch.setattr(st, name, lambda *a, _real=real, _name=name: loads.append(_name) or _real(*a))
    threads = [threading.Thread(target=embedder.warm_up) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert embedder.loaded and embedder.embed_queries(["otters"]).shape == (1, 384)
    assert loads == (["QueryEncoder", "OnnxLayers"] if query_runtime == "auto" else ["model"])

"""Index stage: every setting that shapes an index is checked on ingest and on open; a manifest
damaged after an index was opened is reported, never taken for the current one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ragapp import RAG
from ragapp.errors import IndexCorruptError, IndexMismatchError
from ragapp.index import PARTS, Manifest, check_settings, read_manifest

SETTINGS = {"embedding": {"model": "multilingual-e5-small", "dimension": 384, "backend": "sentence-transformers"},
            "split": {"chunk_size": 200, "chunk_overlap": 30},
            "bm25": {"k1": 0.9, "b": 0.4, "epsilon": 0.25, "chinese": "bigram", "stem": True}}


@pytest.mark.unit
def test_check_settings_names_every_difference_and_the_rebuild():
    built = Manifest(**{k: dict(v) for k, v in SETTINGS.items()})
    check_settings(built, SETTINGS, "idx")  # the same settings pass
    asked = {**SETTINGS, "split": {"chunk_size": 300, "chunk_overlap": 30}, "bm25": {**SETTINGS["bm25"], "chinese": "jieba"}}
    with pytest.raises(IndexMismatchError) as err:
        check_settings(built, asked, "idx")
    message = str(err.value)
    assert "split.chunk_size 200 (asked: 300)" in message and "bm25.chinese 'bigram' (asked: 'jieba')" in message
    assert "ragapp ingest --rebuild PATH --index idx" in message and "chunk_overlap" not in message


@pytest.mark.unit
def test_index_from_before_backends_were_recorded_counts_as_sentence_transformers():
    old = Manifest(embedding={"model": "multilingual-e5-small", "dimension": 384}, split={}, bm25={})
    check_settings(old, {"embedding": SETTINGS["embedding"]}, "idx")
    with pytest.raises(IndexMismatchError, match="embedding.backend 'sentence-transformers' \\(asked: 'openai'\\)"):
        check_settings(old, {"embedding": {**SETTINGS["embedding"], "backend": "openai"}}, "idx")


@pytest.mark.unit
def test_bm25_weights_are_parts_of_a_generation():
    assert {"bm25_weights.npy", "bm25_idf.npy", "bm25_colptr.npy", "bm25_rows.npy"} <= set(PARTS)


@pytest.fixture(scope="module")
def built(tmp_path_factory, config, embedder):
    from conftest import SAMPLES

    path = tmp_path_factory.mktemp("settings") / "index"
    RAG(path, config, embedder=embedder).ingest([SAMPLES])
    return path


def test_a_chunk_size_change_is_refused_on_ingest_and_on_open(built, docs, config, embedder, echo_generator):
    """Before: incremental ingest cut new files at the new size while the manifest kept the old one."""
    before = read_manifest(built)
    (docs / "new.md").write_text("Kelp forests shelter sea otters.\n", encoding="utf-8")
    changed = replace(config, split=replace(config.split, chunk_size=120))
    rag = RAG(built, changed, embedder=embedder, generator=echo_generator())
    with pytest.raises(IndexMismatchError, match="split.chunk_size 200 \\(asked: 120\\).*--rebuild"):
        rag.ingest([docs])
    with pytest.raises(IndexMismatchError, match="split.chunk_size"):
        rag.search("otters")
    assert read_manifest(built).generation == before.generation  # nothing written
    rebuilt = RAG(built.parent / "copy", changed, embedder=embedder, generator=echo_generator())
    assert rebuilt.ingest([docs]).ok and read_manifest(built.parent / "copy").split["chunk_size"] == 120


def test_a_manifest_damaged_after_opening_is_reported(tmp_path, built, config, embedder, echo_generator):
    """Before: one code path treated an unreadable manifest as "still current" and kept serving."""
    import shutil

    path = tmp_path / "index"
    shutil.copytree(built, path)
    rag = RAG(path, config, embedder=embedder, generator=echo_generator())
    assert rag.search("Neptune", top_k=1)
    (path / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="unreadable manifest.*--rebuild"):
        rag.search("Neptune", top_k=1)

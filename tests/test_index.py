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


@pytest.mark.integration
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


@pytest.mark.integration
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


# -- opening without reading, and the PQ codes of large indexes (issue 15) -------------------------

@pytest.mark.integration
def test_opening_reads_no_chunk_record_and_copies_no_vector(built, monkeypatch):
    """An index opens in the same time at any size: records are parsed when asked for, and the
    vectors and BM25 weights stay memory maps of the files."""
    import numpy as np

    from ragapp.index.chunkstore import ChunkStore
    from ragapp.index.reader import LocalReader

    parsed = []
    original = ChunkStore.record
    monkeypatch.setattr(ChunkStore, "record", lambda self, row: parsed.append(row) or original(self, row))
    index = LocalReader.open(built)
    assert parsed == []
    assert isinstance(index.dense.vectors, np.memmap) and isinstance(index.sentence_vectors, np.memmap)
    assert isinstance(index.bm25._weights, np.memmap) and isinstance(index.bm25._rows, np.memmap)
    assert index.chunk(3).text and parsed == [3]
    assert read_manifest(built).schema_version == 4 and read_manifest(built).dense == {}


def _many_notes(folder):
    """The samples and 60 short notes: enough chunks to train PQ codebooks on."""
    import shutil

    from conftest import SAMPLES

    shutil.copytree(SAMPLES, folder)
    for i in range(60):
        (folder / f"note{i:02d}.txt").write_text(f"Field note {i}: the heron count at pond {i} was {i * 7 + 3}.\n", encoding="utf-8")
    return folder


@pytest.mark.integration
def test_a_large_index_gets_pq_codes_whose_candidates_are_rescored_exactly(tmp_path, config, embedder, monkeypatch):
    import faiss
    import numpy as np

    from ragapp.index import dense
    from ragapp.index.reader import LocalReader

    monkeypatch.setattr(dense, "PQ_MIN_ROWS", 50)  # the rule is the same at 200,000 chunks
    path = tmp_path / "index"
    rag = RAG(path, config, embedder=embedder)
    rag.ingest([_many_notes(tmp_path / "docs")])
    manifest = read_manifest(path)
    assert manifest.dense == {"type": "pq", "m": 192, "nbits": 4} and set(dense.PQ_FILES) <= set(manifest.checksums)
    index = LocalReader.open(path)
    q = embedder.embed_queries(["How long does Mars take to orbit the Sun?"])[0]
    exact = faiss.knn(q[None], np.asarray(index.dense.vectors), 5, metric=faiss.METRIC_INNER_PRODUCT)
    # every row a candidate (fewer rows than PQ_RESCORE_MIN): the re-score makes it exact search
    assert [r for r, _ in index.dense_top_n(q, 5)] == list(exact[1][0])
    assert np.allclose([s for _, s in index.dense_top_n(q, 5)], exact[0][0], atol=1e-5)
    # the codes alone rank the exact best among their first few candidates
    assert exact[1][0][0] in index.dense.pq.candidates(q[None], 10)
    monkeypatch.setattr(dense, "PQ_RESCORE_MIN", 10)
    monkeypatch.setattr(dense, "PQ_RESCORE", 4)
    assert index.dense_top_n(q, 3)[0][0] == exact[1][0][0]
    hits = rag.search("How long does Mars take to orbit the Sun?", top_k=3)
    assert any("687" in h.chunk.text for h in hits)
    assert "143" in rag.search("What was the heron count at pond 20?", top_k=1)[0].chunk.text


@pytest.mark.integration
def test_pq_codes_of_another_shape_are_corrupt(tmp_path, config, embedder, monkeypatch):
    import numpy as np

    from ragapp.digest import file_sha256
    from ragapp.index import dense
    from ragapp.index.manifest import write_manifest
    from ragapp.index.reader import LocalReader

    monkeypatch.setattr(dense, "PQ_MIN_ROWS", 50)
    path = tmp_path / "index"
    RAG(path, config, embedder=embedder).ingest([_many_notes(tmp_path / "docs")])
    manifest = read_manifest(path)
    part = path / manifest.directory / "pq_codes.npy"
    np.save(part, np.load(part)[:-1])  # one row short
    manifest.checksums["pq_codes.npy"] = file_sha256(part)  # crafted, not damaged: the checksum agrees
    write_manifest(path, manifest)
    with pytest.raises(IndexCorruptError, match="PQ arrays disagree with the manifest.*--rebuild"):
        LocalReader.open(path)


@pytest.mark.integration
def test_an_index_written_with_the_earlier_ivf_opens_and_is_searched_exactly(tmp_path, built, config, embedder):
    """Indexes of 200,000+ chunks written before the PQ codes carry an IVF: they still open, and are
    searched exactly until the next ingest rewrites them."""
    import shutil
    from pathlib import Path

    import faiss
    import numpy as np

    from ragapp.digest import file_sha256
    from ragapp.index import dense
    from ragapp.index.manifest import write_manifest
    from ragapp.index.reader import LocalReader

    path = Path(shutil.copytree(built, tmp_path / "index"))
    manifest = read_manifest(path)
    for name in dense.IVF_FILES:  # their contents are never read any more, only checked like any part
        np.save(path / manifest.directory / name, np.zeros(1))
        manifest.checksums[name] = file_sha256(path / manifest.directory / name)
    manifest.dense = {"type": "ivf", "nlist": 4, "nprobe": 1}
    write_manifest(path, manifest)
    index = LocalReader.open(path)
    q = embedder.embed_queries(["How long does Mars take to orbit the Sun?"])[0]
    exact = faiss.knn(q[None], np.asarray(index.dense.vectors), 3, metric=faiss.METRIC_INNER_PRODUCT)[1][0]
    assert index.dense.pq is None and [r for r, _ in index.dense_top_n(q, 3)] == list(exact)


@pytest.mark.integration
def test_an_index_of_schema_3_still_opens_answers_and_is_upgraded_by_the_next_ingest(tmp_path, built, docs, config,
                                                                                      embedder, echo_generator):
    """Schema 3 had no offset or hash tables: the reader builds them in one pass over chunks.jsonl."""
    import shutil

    from ragapp.index.manifest import write_manifest

    path = tmp_path / "index"
    shutil.copytree(built, path)
    manifest = read_manifest(path)
    for name in ("chunk_offsets.npy", "chunk_hashes.npy"):
        (path / manifest.directory / name).unlink()
        del manifest.checksums[name]
    manifest.schema_version = 3
    write_manifest(path, manifest)
    rag = RAG(path, config, embedder=embedder, generator=echo_generator())
    assert "687" in rag.search("How long does Mars take to orbit the Sun?", top_k=1)[0].chunk.text
    (docs / "new.md").write_text("Kelp forests shelter sea otters.\n", encoding="utf-8")
    assert rag.ingest([docs]).ok
    assert read_manifest(path).schema_version == 4
    assert "otters" in rag.search("What do kelp forests shelter?", top_k=1)[0].chunk.text

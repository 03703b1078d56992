"""Ingest and search on the real embedder, FAISS and BM25: incremental updates, removals, consistency."""

import codecs
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.privileges import without_file_override

from ragapp import RAG
from ragapp.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError, NoDocumentsError
from ragapp.index import LocalReader

pytestmark = pytest.mark.integration


@pytest.fixture
def rag(tmp_path, config, embedder, echo_generator):
    return RAG(tmp_path / "index", config, embedder=embedder, generator=echo_generator())


@pytest.fixture(params=["local", "milvus"])
def any_rag(request, tmp_path, config, embedder, echo_generator):
    """The same RAG on each index backend (Milvus: Milvus Lite in a file of the test's own)."""
    from ragapp.config import IndexConfig

    if request.param == "milvus":
        config = config.with_(index=IndexConfig(backend="milvus", uri=str(tmp_path / "milvus.db")))
    return RAG(tmp_path / "index", config, embedder=embedder, generator=echo_generator())


def _chunks(index) -> list:
    return [c for _, c, _ in index.rows()]


def _consistent(index) -> None:
    """What a reader sees adds up: rows, the documents' records, their sentence vectors."""
    rows = list(index.rows())
    assert len(rows) == len(index) == index.manifest.chunks
    assert sum(r.chunks for r in index.manifest.files.values()) == len(rows)
    assert {c.source for _, c, _ in rows} == set(index.manifest.files)
    assert all(len(index.chunk_sentence_vectors(row)) == len(c.sentences) for row, c, _ in rows)
    if isinstance(index, LocalReader):
        assert len(index.dense) == len(index.bm25) == len(rows)


def test_ingest_search_and_pages(any_rag, docs):
    report = any_rag.ingest([docs])
    assert len(report.added) == 5 and not report.failed and report.chunks > 5
    hits = any_rag.search("How long does Mars take to orbit the Sun?", top_k=3)
    assert hits[0].chunk.source.endswith("solar_system.md")
    assert hits[0].support_text == "Mars takes 687 Earth days to orbit the Sun."
    assert hits[0].bm25_rank is not None and hits[0].dense_rank is not None and hits[0].rerank_score is not None
    pdf = any_rag.search("Which enzyme fixes carbon dioxide in the Calvin cycle?", top_k=1)[0]
    assert pdf.chunk.source.endswith("photosynthesis.pdf") and pdf.chunk.page == 2
    zh = any_rag.search("长城的总长度是多少？", top_k=1)[0]
    assert zh.chunk.source.endswith("长城.txt") and "21196.18千米" in zh.support_text
    # Cross-lingual: the dense side ranks the Chinese document first for an English question.
    tea = [h for h in any_rag.search("Which green tea comes from Hangzhou?", top_k=5) if h.chunk.source.endswith("茶.md")]
    assert tea and tea[0].dense_rank == 1 and "西湖龙井" in tea[0].chunk.text
    _consistent(any_rag.index())


def test_reingest_is_incremental(any_rag, docs):
    any_rag.ingest([docs])
    before = any_rag.index()
    old_vectors = {c.id: before.vector(row) for row, c, _ in before.rows()}
    again = any_rag.ingest([docs])
    assert len(again.unchanged) == 5 and not again.added and not again.updated and again.chunks_added == 0
    assert any_rag.index().manifest.generation == before.manifest.generation  # nothing changed: no new generation

    notes = docs / "en" / "ragapp_notes.txt"
    notes.write_text(notes.read_text() + "\nThe mascot of ragapp is a red panda named Bamboo.\n")
    (docs / "zh" / "茶.md").unlink()
    (docs / "en" / "new.md").write_text("Olympus Mons is the tallest volcano in the Solar System.\n")
    report = any_rag.ingest([docs])
    assert [p.endswith("ragapp_notes.txt") for p in report.updated] == [True]
    assert [p.endswith("茶.md") for p in report.removed] == [True]
    assert [p.endswith("new.md") for p in report.added] == [True]
    assert len(report.unchanged) == 3
    # Only chunks whose text changed are embedded again.
    assert 1 <= report.chunks_added <= 3
    index = any_rag.index()
    _consistent(index)
    assert not any(c.source.endswith("茶.md") for c in _chunks(index))
    assert "Bamboo" in any_rag.search("What is the name of the ragapp mascot?", top_k=1)[0].support_text
    assert all(not h.chunk.source.endswith("茶.md") for h in any_rag.search("西湖龙井", top_k=10))
    # Vectors of unchanged chunks were carried over exactly.
    for row, c, _ in index.rows():
        if c.id in old_vectors:
            np.testing.assert_array_equal(index.vector(row), old_vectors[c.id])


def test_removal_only_under_given_paths(any_rag, docs):
    any_rag.ingest([docs / "en"])
    any_rag.ingest([docs / "zh"])
    assert len(any_rag.index().manifest.files) == 5
    (docs / "zh" / "茶.md").unlink()
    report = any_rag.ingest([docs / "zh"])
    assert len(report.removed) == 1 and len(any_rag.index().manifest.files) == 4


def test_remove_document_by_source(any_rag, docs):
    any_rag.ingest([docs])
    tea = next(d.source for d in any_rag.documents() if d.source.endswith("茶.md"))
    report = any_rag.remove([tea])
    assert report.removed == [tea] and not report.added and len(any_rag.documents()) == 4
    _consistent(any_rag.index())
    assert all(not h.chunk.source.endswith("茶.md") for h in any_rag.search("西湖龙井", top_k=10))
    assert (docs / "zh" / "茶.md").exists()  # the file itself is left alone
    with pytest.raises(NoDocumentsError, match="not in the index"):
        any_rag.remove([tea])


def test_duplicate_files_embedded_once_and_both_cited(tmp_path, docs, config, embedder, echo_generator):
    import shutil

    (docs / "copy").mkdir()
    shutil.copy(docs / "en" / "solar_system.md", docs / "copy" / "solar_system (copy).md")
    rag = RAG(tmp_path / "index", config, embedder=embedder, generator=echo_generator(needle="687"))
    report = rag.ingest([docs])
    index = rag.index()
    assert report.chunks_added == len({h for _, _, h in index.rows()}) < len(index)
    answer = rag.ask("How long does Mars take to orbit the Sun?")
    cited = [c.source for c in answer.citations if "687" in c.quote]
    assert {s.rsplit("/", 1)[-1] for s in cited} == {"solar_system (copy).md", "solar_system.md"}


def test_file_deleted_or_truncated_while_ingest_runs(rag, docs):
    tea, notes = docs / "zh" / "茶.md", docs / "en" / "ragapp_notes.txt"
    acted = []

    def meddle(stage, item, done, total):
        if stage == "read" and not acted:  # after hashing, before any file is read
            acted.append(item)
            tea.unlink()
            notes.write_text(notes.read_text(encoding="utf-8")[:120], encoding="utf-8")

    report = rag.ingest([docs], progress=meddle)
    assert [(f.path.endswith("茶.md"), f.reason) for f in report.failed] == [(True, "file disappeared while ingesting")]
    assert len(report.added) == 4
    _consistent(rag.index())
    again = rag.ingest([docs])  # the truncated file's recorded hash is from before: it is read again
    assert [p.endswith("ragapp_notes.txt") for p in again.updated] == [True] and not again.failed
    assert not rag.ingest([docs]).updated


def test_failed_file_reported_and_rest_ingested(any_rag, docs):
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (docs / ".hidden.txt").write_text("hidden")
    (docs / "notes.txt.swp").write_text("swap")
    report = any_rag.ingest([docs])
    assert len(report.added) == 5
    assert [f.path.endswith("broken.pdf") for f in report.failed] == [True]
    assert report.failed[0].reason


def test_errors_are_named(tmp_path, config, embedder):
    with pytest.raises(IndexNotFoundError, match="no index at"):
        RAG(tmp_path / "none", config, embedder=embedder).search("x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoDocumentsError, match="no supported documents"):
        RAG(tmp_path / "i", config, embedder=embedder).ingest([tmp_path / "empty"])


def test_other_embedding_model_is_refused(any_rag, docs, config):
    from ragapp.config import EmbedConfig

    any_rag.ingest([docs / "en" / "ragapp_notes.txt"])
    other = RAG(any_rag.path, any_rag.config.with_(embed=EmbedConfig(model="all-MiniLM-L6-v2")))
    with pytest.raises(IndexMismatchError, match="multilingual-e5-small"):
        other.search("anything")


def test_tampered_index_is_detected(rag, docs):
    rag.ingest([docs / "en"])
    gen = rag.path / rag.index().manifest.directory
    lines = (gen / "chunks.jsonl").read_text().splitlines(keepends=True)
    (gen / "chunks.jsonl").write_text("".join(lines[:-1]))
    with pytest.raises(IndexCorruptError, match="chunks.jsonl: checksum mismatch.*--rebuild"):
        LocalReader.open(rag.path)


def test_truncated_faiss_and_edited_manifest_are_detected(rag, docs):
    import shutil

    rag.ingest([docs / "en"])
    gen = rag.path / rag.index().manifest.directory
    shutil.copytree(rag.path, rag.path.parent / "pristine")
    faiss_file = gen / "dense.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:-100])
    with pytest.raises(IndexCorruptError, match="dense.faiss: checksum mismatch.*ragapp ingest --rebuild"):
        LocalReader.open(rag.path)
    shutil.rmtree(rag.path)
    shutil.copytree(rag.path.parent / "pristine", rag.path)
    manifest = rag.path / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"chunks": ', '"chunks": 1', 1))
    with pytest.raises(IndexCorruptError, match="manifest.json|parts disagree|dense.faiss is .* bytes, not the|chunk store holds"):
        LocalReader.open(rag.path)
    manifest.write_text("{")
    with pytest.raises(IndexCorruptError, match="manifest.json: unreadable manifest.*--rebuild"):
        LocalReader.open(rag.path)
    rag.ingest([docs / "en"], rebuild=True)  # what the message advises works
    _consistent(LocalReader.open(rag.path))


def test_messy_folder_tree(rag, docs, tmp_path):
    deep = docs / "deep"
    for i in range(50):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (deep / "bottom.md").write_text("The treasure is buried under the old oak.\n", encoding="utf-8")
    (docs / "loop").mkdir()
    (docs / "loop" / "again").symlink_to(docs / "loop")
    (docs / "名字 with spaces 'and' \"quotes\".md").write_text("The kite is bright orange.\n", encoding="utf-8")
    for junk in (".hidden.md", ".notes.md.swp", "notes.md~", "~$draft.md"):
        (docs / junk).write_text("should not be indexed\n", encoding="utf-8")
    report = rag.ingest([docs])
    names = sorted(p.rsplit("/", 1)[-1] for p in report.added)
    assert "bottom.md" in names and "名字 with spaces 'and' \"quotes\".md" in names and len(names) == 7
    assert not report.failed
    assert rag.search("Where is the treasure buried?", top_k=1)[0].chunk.source.endswith("bottom.md")
    assert rag.search("What colour is the kite?", top_k=1)[0].chunk.source.endswith('"quotes".md')


def test_unreadable_file_is_reported(tmp_path, docs, cache_dir, config, embedder):
    locked = docs / "en" / "locked.txt"
    locked.write_text("secret", encoding="utf-8")
    locked.chmod(0)
    index = tmp_path / "index"
    r = subprocess.run([sys.executable, "-m", "ragapp.cli", "ingest", str(docs), "--index", str(index), "--json"],
                       env={**os.environ, "RAGAPP_CACHE": cache_dir}, capture_output=True, text=True, timeout=300,
                       preexec_fn=without_file_override)
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert [(Path(f["path"]).name, f["reason"]) for f in report["failed"]] == [("locked.txt", "cannot read (Permission denied)")]
    assert len(report["added"]) == 5
    hit = RAG(index, config, embedder=embedder).search("How long does Mars take to orbit the Sun?", top_k=1)[0]
    assert hit.chunk.source.endswith("solar_system.md")


def test_one_rag_shared_by_threads(any_rag, docs):
    from concurrent.futures import ThreadPoolExecutor

    any_rag.ingest([docs])
    questions = {"How long does Mars take to orbit the Sun?": "solar_system.md", "长城的总长度是多少？": "长城.txt",
                 "Which enzyme fixes carbon dioxide in the Calvin cycle?": "photosynthesis.pdf", "西湖龙井": "茶.md"}
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda q: (q, any_rag.search(q, top_k=1)[0].chunk.source), list(questions) * 5))
    assert all(source.endswith(questions[q]) for q, source in results)


def test_leftover_partial_generation_is_ignored(rag, docs):
    rag.ingest([docs / "en"])
    manifest = json.loads((rag.path / "manifest.json").read_text())
    junk = rag.path / f"gen-{manifest['generation'] + 1:06d}"
    junk.mkdir()
    (junk / "chunks.jsonl").write_text("half written")
    assert LocalReader.open(rag.path).manifest.generation == manifest["generation"]
    rag.ingest([docs])  # the next commit takes the next free number and removes the junk
    assert len(LocalReader.open(rag.path).manifest.files) == 5 and not junk.exists()


def test_big_text_file_is_streamed_into_the_index(rag, tmp_path):
    """A text file of several streamed segments: every chunk keeps its file position, repeated text is
    embedded once, and the sentence at the very end is found."""
    from ragapp.load import SEGMENT_CHARS

    filler = "The archive keeps daily weather logs from the coastal station, one line per day.\n"
    tail = "The last entry says the harbour froze on 3 February 1956.\n"
    text = filler * (int(2.5 * SEGMENT_CHARS) // len(filler)) + tail
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "log.txt").write_text(text, encoding="utf-8")
    report = rag.ingest([folder])
    assert report.added and not report.failed and report.chunks > 1000
    assert report.chunks_added < 20  # thousands of chunks, a handful of distinct texts
    index = rag.index()
    assert all(text[c.start : c.end] == c.text for c in _chunks(index))
    assert len(index.sentence_vectors) < 100  # chunks with equal text share their sentence vectors
    hit = rag.search("When did the harbour freeze?", top_k=1)[0]
    assert "harbour froze on 3 February 1956" in hit.support_text
    _consistent(index)


def test_writer_rolls_back_a_file_that_fails_half_way(tmp_path, embedder):
    """Rows written for a file that then fails are removed, with their terms, before the commit."""
    from ragapp.index import GenerationWriter, Manifest
    from ragapp.split import split_text

    a = split_text("Alpha particles are helium nuclei.", "a.txt")
    b = split_text("Zebrafish regrow their fins.", "b.txt")
    manifest = Manifest(embedding={"model": embedder.name, "dimension": embedder.dimension}, split={},
                        bm25={"k1": 0.9, "b": 0.4, "epsilon": 0.25})
    with GenerationWriter(tmp_path, embedder.dimension, manifest.bm25) as writer:
        for chunks, keep in ((a, True), (b, False)):
            mark = writer.mark()
            vecs, sents = embedder.embed_chunks([c.text for c in chunks], [c.sentences for c in chunks])
            for c, v in zip(chunks, vecs):
                writer.add(c, c.id, c.text.lower().split(), v, sents[: len(c.sentences)])
            if keep:
                kept = vecs[0]
            else:
                writer.rollback(mark)
        writer.commit(manifest)
    index = LocalReader.open(tmp_path)
    assert [c.source for c in _chunks(index)] == ["a.txt"] and len(index.sentence_vectors) == 1
    assert set(index.bm25.vocab) == {"alpha", "particles", "are", "helium", "nuclei."}
    assert np.allclose(index.vector(0), kept, atol=1e-6)
    assert index.dense_top_n(embedder.embed_queries(["helium"])[0], 1)[0][0] == 0


def test_file_failing_half_way_loses_only_its_own_chunks(rag, tmp_path):
    """A UTF-16 file whose last byte is cut off fails only at its end, after more than a thousand of its
    chunks went to the new generation: they are rolled back, the files before and after it stay."""
    from ragapp.load import SEGMENT_CHARS

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.md").write_text("Otters hold hands while they sleep.\n", encoding="utf-8")
    line = "The ledger lists one shipment of copper wire per line.\n"
    broken = codecs.BOM_UTF16_LE + (line * (int(2.5 * SEGMENT_CHARS) // len(line))).encode("utf-16-le") + b"\x00"
    (folder / "b.txt").write_bytes(broken)
    (folder / "c.md").write_text("Penguins propose with pebbles.\n", encoding="utf-8")
    report = rag.ingest([folder])
    assert [Path(f.path).name for f in report.failed] == ["b.txt"]
    assert report.chunks_added > 2  # b.txt's first segment was embedded and written before its end failed
    assert "invalid utf-16 text" in report.failed[0].reason and "truncated data" in report.failed[0].reason
    index = rag.index()
    assert sorted(Path(s).name for s in index.manifest.files) == ["a.md", "c.md"] and len(index) == 2
    assert set(index.bm25.vocab) >= {"otter", "penguin"} and "copper" not in index.bm25.vocab
    _consistent(index)
    assert rag.search("What do penguins propose with?", top_k=1)[0].chunk.source.endswith("c.md")


def test_token_counting_uses_the_embedding_tokenizer(embedder):
    from ragapp.split import split_text

    text = ("The Normans came from Normandy. They were led by Rollo! Did they settle in Italy? Yes, in the south. ") * 20
    chunks = split_text(text, "d", size=64, overlap=8, count_tokens=embedder.count_tokens)
    assert all(n <= 64 + 2 for n in embedder.count_tokens([c.text for c in chunks]))


def test_a_hostile_csv_costs_its_tables_never_the_folder_nor_the_next_ingest(rag, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "nul.csv").write_text("Re\x00gion,Revenue\nNorth,1200\nSouth,950\n", encoding="utf-8")
    (docs / "wide.csv").write_text(",".join(f"c{k}" for k in range(2100)) + "\n" + ",".join(str(k) for k in range(2100)) + "\n",
                                   encoding="utf-8")
    (docs / "notes.txt").write_text("The lighthouse at Zorblax Point was built in 1871.\n", encoding="utf-8")
    report = rag.ingest([docs])
    assert not report.failed and sorted(Path(s).name for s in report.added) == ["notes.txt", "nul.csv", "wide.csv"]
    [wide] = [w for w in report.warnings if w.path.endswith("wide.csv")]
    assert "tables were not kept" in wide.reason and "2,100 columns" in wide.reason
    assert not [w for w in report.warnings if w.path.endswith("nul.csv")]  # its header's NUL is a space now
    assert any(h.chunk.source.endswith("wide.csv") for h in rag.search("c2099 2099"))  # the text is indexed
    conn = sqlite3.connect(rag.path / "tables.sqlite")
    assert [json.loads(c)[0][0] for (c,) in conn.execute("SELECT columns FROM ragapp_tables WHERE complete = 1")] == ["Re gion"]
    (docs / "good.txt").write_text("Florp is the third moon of Quux.\n", encoding="utf-8")
    assert [Path(s).name for s in rag.ingest([docs]).added] == ["good.txt"]  # the next ingest is not broken
    assert rag.search("Florp moon")[0].chunk.source.endswith("good.txt")


def test_a_file_name_that_is_not_utf8_is_reported_and_the_rest_indexed(rag, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    with open(os.fsencode(docs) + b"/" + "报告.txt".encode("gbk"), "wb") as out:  # what unzip makes of a Chinese Windows zip
        out.write("季度报告。".encode())
    (docs / "notes.txt").write_text("The lighthouse at Zorblax Point was built in 1871.\n", encoding="utf-8")
    report = rag.ingest([docs])
    assert [Path(s).name for s in report.added] == ["notes.txt"]
    [bad] = report.failed
    assert bad.path.endswith("/\ufffd\ufffd\ufffd\ufffd.txt") and "not valid UTF-8" in bad.reason
    assert json.dumps(report.to_dict(), ensure_ascii=False).encode()  # printable, storable
    result = subprocess.run([sys.executable, "-m", "ragapp.cli", "ingest", str(docs), "--index", str(tmp_path / "cli-index")],
                            capture_output=True, text=True, env={**os.environ, "RAGAPP_CACHE": rag.config.cache_dir}, timeout=300)
    assert result.returncode == 1, result.stderr  # 1: some files failed, listed (the rest is indexed)
    assert "not valid UTF-8" in result.stdout + result.stderr and "Traceback" not in result.stderr

"""The Milvus backend on Milvus Lite: answers with citations in both languages, deletes that reach
every collection, SIGKILL during an ingest, and one clear line for each bad setting (several writers
at once: test_milvus_writers.py)."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from helpers.net import free_port

from ragapp import RAG
from ragapp.config import IndexConfig
from ragapp.errors import IndexCorruptError, IndexMismatchError, IndexUnavailableError, NotAnIndexError
from ragapp.index.milvus import MilvusIndex, collection_name, source_id

pytestmark = pytest.mark.integration

pytest.importorskip("milvus_lite", reason="Milvus Lite is a test dependency: pip install -e '.[test]'")


def milvus_config(config, uri: str, **more):
    return config.with_(index=IndexConfig(backend="milvus", uri=uri, **more))


def state(uri: str, name: str) -> dict[str, frozenset[str]]:
    """What a reader sees: each document's chunk texts."""
    seen: dict[str, set[str]] = {}
    with closing(MilvusIndex(uri, name)) as b:
        for _, chunk, _ in b.open().rows():
            seen.setdefault(chunk.source, set()).add(chunk.text)
    return {s: frozenset(t) for s, t in seen.items()}


def every_row(uri: str, name: str) -> tuple[int, int, int]:
    """All rows of the chunk and sentence collections, visible or not (leftovers show here), and the
    chunks the committed documents hold."""
    with closing(MilvusIndex(uri, name)) as b:
        return b.count("chunks", "pk >= 0"), b.count("sentences", "pk >= 0"), b.manifest().chunks


def test_ask_cite_update_delete_in_both_languages(tmp_path, docs, config, embedder, echo_generator):
    uri = str(tmp_path / "m.db")
    cfg = milvus_config(config, uri)
    rag = RAG(tmp_path / "index", cfg, embedder=embedder, generator=echo_generator(needle="687"))
    rag.ingest([docs])
    answer = rag.ask("How long does Mars take to orbit the Sun?")
    top = answer.citations[0]
    assert answer.answered and top.quote == "Mars takes 687 Earth days to orbit the Sun." and top.source.endswith("solar_system.md")
    assert open(top.source, encoding="utf-8").read()[top.start:top.end] == top.quote
    zh = RAG(tmp_path / "index", cfg, embedder=embedder, generator=echo_generator(needle="21196.18")).ask("长城的总长度是多少？")
    assert zh.answered and zh.language == "zh" and zh.citations[0].source.endswith("长城.txt") and "21196.18" in zh.citations[0].quote
    pdf = rag.search("Which enzyme fixes carbon dioxide in the Calvin cycle?", top_k=1)[0]
    assert pdf.chunk.source.endswith("photosynthesis.pdf") and pdf.chunk.page == 2
    on_page = RAG(tmp_path / "index", cfg, embedder=embedder, generator=echo_generator(needle="stroma"))
    cited = on_page.ask("Where does the Calvin cycle take place?").citations[0]
    assert cited.page == 2 and cited.boxes and on_page.page_image(cited.source, 2, cited.start, cited.end).notice == ""

    tea = docs / "zh" / "茶.md"
    tea.unlink()
    report = rag.ingest([docs])
    assert [s.endswith("茶.md") for s in report.removed] == [True]
    # Gone everywhere: no chunk row, sentence row or files row of it is left, visible or not.
    b, sid = rag.store, source_id(str(tea))
    assert b.count("chunks", f"sid == {sid}") == b.count("sentences", f"sid == {sid}") == b.count("files", f"pk == {sid}") == 0
    assert b.count("chunks", "pk >= 0") == rag.index().manifest.chunks
    assert all(not h.chunk.source.endswith("茶.md") for h in rag.search("西湖龙井", top_k=10))


def _write_notes(folder, version: int, names: range) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(version)
    words = "river mountain copper violin harbour lantern orchard glacier meadow falcon".split()
    for i in names:
        lines = [f"Note {i} version {version} says the {rng.choice(words)} is {rng.randint(1, 999)} units away." for _ in range(14 + version * 6)]
        (folder / f"note_{i}.txt").write_text(" ".join(lines) + "\n", encoding="utf-8")


def test_kill_during_ingest_shows_each_file_old_or_new(tmp_path, cache_dir):
    """SIGKILL `ragapp ingest` into Milvus Lite at random moments: each file is seen whole in its old
    version or whole in its new one (or, added, absent); the next ingest finishes and leaves no rows behind."""
    corpus, db = tmp_path / "corpus", tmp_path / "m.db"
    _write_notes(corpus, 1, range(10))
    (tmp_path / "ragapp.toml").write_text(f'[index]\nbackend = "milvus"\nuri = "{db}"\n', encoding="utf-8")
    env = {**os.environ, "RAGAPP_CACHE": cache_dir}
    cmd = [sys.executable, "-m", "ragapp.cli", "ingest", str(corpus), "--index", str(tmp_path / "index"),
           "--config", str(tmp_path / "ragapp.toml")]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    before = state(str(db), collection_name(tmp_path / "index"))
    _write_notes(corpus, 2, range(2, 12))  # 2-9 change, 10-11 are new
    for i in (0, 1):
        (corpus / f"note_{i}.txt").unlink()
    shutil.copytree(db, tmp_path / "before.db")
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    duration = time.perf_counter() - t0
    after = state(str(db), collection_name(tmp_path / "index"))
    assert set(after) == {str(corpus / f"note_{i}.txt") for i in range(2, 12)}

    rng, mixed = random.Random(3), {"old": 0, "new": 0}
    for trial in range(6):
        shutil.rmtree(db)
        shutil.copytree(tmp_path / "before.db", db)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Half anywhere after the models load, half near the end, where the commit is.
        time.sleep(rng.uniform(duration * 0.3, duration) if trial % 2 else rng.uniform(duration * 0.9, duration * 1.02))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen = state(str(db), collection_name(tmp_path / "index"))
        for source in set(before) | set(after):
            assert seen.get(source) in (before.get(source), after.get(source)), f"trial {trial}: {source} is half old, half new"
            mixed["new" if seen.get(source) == after.get(source) != before.get(source) else "old"] += 1
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    assert state(str(db), collection_name(tmp_path / "index")) == after
    rows = every_row(str(db), collection_name(tmp_path / "index"))
    assert rows[0] == rows[2]  # a killed writer's rows were deleted when its files were taken over
    print(f"milvus kill test: {json.dumps({'trials': 6, **mixed})}")


def test_unreachable_server_is_one_line(tmp_path, config, embedder):
    uri = f"http://127.0.0.1:{free_port()}"
    rag = RAG(tmp_path / "index", milvus_config(config, uri), embedder=embedder)
    with pytest.raises(IndexUnavailableError, match=f"Milvus at {uri}: connect failed .*check that the server answers"):
        rag.search("anything")
    done = subprocess.run([sys.executable, "-m", "ragapp.cli", "info", "--index", str(tmp_path / "index"), "--config",
                           _toml(tmp_path, uri)], capture_output=True, text=True, timeout=120)
    assert done.returncode == IndexUnavailableError.exit_code
    assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith(f"error: Milvus at {uri}")


def _toml(tmp_path, uri: str) -> str:
    path = tmp_path / "ragapp.toml"
    path.write_text(f'[index]\nbackend = "milvus"\nuri = "{uri}"\n', encoding="utf-8")
    return str(path)


def test_foreign_and_mismatched_collections_are_refused(tmp_path, docs, config, embedder):
    from pymilvus import DataType, MilvusClient

    uri = str(tmp_path / "m.db")
    client = MilvusClient(uri)
    schema = client.create_schema(auto_id=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=8)
    index = client.prepare_index_params()
    index.add_index("embedding", index_type="FLAT", metric_type="L2")
    client.create_collection(collection_name(tmp_path / "theirs"), schema=schema, index_params=index)
    client.close()
    theirs = RAG(tmp_path / "theirs", milvus_config(config, uri), embedder=embedder)
    with pytest.raises(NotAnIndexError, match="collection 'theirs_[0-9a-f]+' .* was not made by ragapp"):
        theirs.ingest([docs])
    # Made by ragapp with another embedding model: the model is named.
    from ragapp.config import EmbedConfig

    RAG(tmp_path / "index", milvus_config(config, uri), embedder=embedder).ingest([docs / "en" / "ragapp_notes.txt"])
    other = RAG(tmp_path / "index", milvus_config(config, uri).with_(embed=EmbedConfig(model="all-MiniLM-L6-v2")))
    with pytest.raises(IndexMismatchError, match="multilingual-e5-small"):
        other.ingest([docs])
    with pytest.raises(IndexMismatchError, match="multilingual-e5-small"):
        other.search("anything")
    # A collection of another ragapp layout (another version's schema) is named as such.
    mine = RAG(tmp_path / "index", milvus_config(config, uri), embedder=embedder)
    mine.store.client().alter_collection_properties(mine.store.name, {"ragapp.layout": "0"})
    with pytest.raises(IndexMismatchError, match="has ragapp layout 0, this ragapp reads 1"):
        mine.search("anything")
    # Settings that are not ragapp's JSON: a corrupt index, said in one line.
    mine.store.client().alter_collection_properties(mine.store.name, {"ragapp.layout": "1", "ragapp.settings": '{"embedding": 1'})
    with pytest.raises(IndexCorruptError, match="'index_[0-9a-f]+' at .*settings property unreadable.*rebuild with"):
        mine.search("anything")


def test_index_settings_are_checked_where_they_enter():
    from ragapp.errors import ConfigError
    assert collection_name("data/index").startswith("index_")
    # Knowledge bases named in Chinese (or with spaces) get distinct collections.
    names = {collection_name(n) for n in ("笔记", "日记", "my notes", "my_notes", "2024")}
    assert len(names) == 5 and all(n[0].isalpha() and n.replace("_", "").isalnum() and n.isascii() for n in names)

    with pytest.raises(ConfigError, match="uri = 'PATH.db'"):
        IndexConfig(backend="milvus", uri="somewhere")
    with pytest.raises(ConfigError, match="collection must be letters"):
        MilvusIndex("x.db", "bad name; drop")


def test_http_api_on_milvus(tmp_path, cache_dir):
    """`ragapp serve` with [index] backend = "milvus": a knowledge base, an upload, a search, a delete."""
    import httpx
    from conftest import SAMPLES
    from helpers.api_server import ApiServer
    from test_serve import upload

    root = tmp_path / "kbs"
    root.mkdir()
    server = ApiServer(root, "milvus-test-key-5d1c", tmp_path / "serve.log", cache_dir, config=Path(_toml(tmp_path, str(tmp_path / "m.db"))))
    try:
        client = httpx.Client(base_url=server.url, headers=server.headers, timeout=300)
        assert client.post("/v1/knowledge_bases", json={"name": "笔记"}).status_code == 201
        state = upload(client, "笔记", sorted((SAMPLES / "en").iterdir()))
        assert state["status"] == "done" and len(state["report"]["added"]) == 3, state
        ask = {"knowledge_base": "笔记", "query": "How long does Mars take to orbit the Sun?", "top_k": 3}
        assert client.post("/v1/search", json=ask).json()["data"][0]["source"].endswith("solar_system.md")
        assert client.delete("/v1/knowledge_bases/笔记/documents/solar_system.md").json() == {"deleted": "solar_system.md"}
        assert not any(h["source"].endswith("solar_system.md") for h in client.post("/v1/search", json=ask).json()["data"])
        assert not (root / "笔记" / "manifest.json").exists()  # the index is in Milvus, not in the folder
    finally:
        server.stop()


def test_chat_ui_on_milvus(tmp_path, cache_dir, monkeypatch):
    """The Streamlit page, unchanged, over a Milvus Lite index: an answer with its citation."""
    from conftest import SAMPLES
    from streamlit.testing.v1 import AppTest
    from test_ui import APP, ask

    from ragapp.config import Config

    cfg = tmp_path / "ragapp.toml"
    cfg.write_text(f'cache_dir = "{cache_dir}"\n[ui]\nknowledge_root = "{tmp_path}"\n[index]\nbackend = "milvus"\n'
                   f'uri = "{tmp_path / "m.db"}"\n', encoding="utf-8")
    RAG(tmp_path / "index", Config.load(cfg)).ingest([SAMPLES / "en"])
    monkeypatch.setenv("RAGAPP_INDEX", str(tmp_path / "index"))
    monkeypatch.setenv("RAGAPP_CONFIG", str(cfg))
    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    ask(at, "How long does Mars take to orbit the Sun?")
    assert any("687" in m.value for m in at.markdown)
    assert [e.label for e in at.expander][0].startswith("[1] solar\\_system\\.md")
    assert not at.exception and not (tmp_path / "index" / "manifest.json").exists()


def test_two_folders_of_the_same_name_never_share_a_collection(tmp_path, docs, config, embedder):
    """a/index and b/index on one Milvus Lite: each answers from its own documents, a rebuild of one
    leaves the other whole, and a collection owned by another folder is refused in one line."""
    uri = str(tmp_path / "m.db")
    a = RAG(tmp_path / "a" / "index", milvus_config(config, uri), embedder=embedder)
    b = RAG(tmp_path / "b" / "index", milvus_config(config, uri), embedder=embedder)
    a.ingest([docs / "en" / "solar_system.md"])
    b.ingest([docs / "zh"])
    assert a.store.name != b.store.name and a.store.name.startswith("index_")
    assert [Path(d.source).name for d in a.documents()] == ["solar_system.md"]
    assert sorted(Path(d.source).name for d in b.documents()) == ["茶.md", "长城.txt"]
    b.ingest([docs / "en" / "ragapp_notes.txt"], rebuild=True)
    assert [Path(d.source).name for d in b.documents()] == ["ragapp_notes.txt"]
    assert [Path(d.source).name for d in a.documents()] == ["solar_system.md"]
    assert a.search("How long does Mars take to orbit the Sun?", top_k=1)[0].chunk.source.endswith("solar_system.md")
    # A collection recorded as another folder's is refused, never read or dropped.
    thief = MilvusIndex(uri, a.store.name, owner=str((tmp_path / "c" / "index").resolve()))
    with pytest.raises(NotAnIndexError, match="belongs to the index at .*a/index, not .*c/index"):
        thief.manifest()
    thief.close()
    # A collection an earlier ragapp named after the folder's last name only: the way on, in one line.
    from ragapp.errors import IndexNotFoundError

    RAG(tmp_path / "old" / "index", milvus_config(config, uri, collection="index"), embedder=embedder).ingest(
        [docs / "en" / "solar_system.md"])
    moved = RAG(tmp_path / "old" / "index", milvus_config(config, uri), embedder=embedder)
    with pytest.raises(IndexNotFoundError, match=r"'index' there was named by an earlier ragapp.*collection = 'index'"):
        moved.search("How long does Mars take to orbit the Sun?")


def test_eval_writes_runs_and_applies_its_threshold_on_milvus(tmp_path, config, embedder):
    """ragapp eval on a Milvus knowledge base: chunks drawn by Milvus row ids, documents hidden by the
    search filter, the fitted threshold kept in the knowledge base's folder and in force there."""
    from test_evaluate import FactModel, write_corpus

    cfg = milvus_config(config, str(tmp_path / "m.db"))
    rag = RAG(tmp_path / "kb", cfg, embedder=embedder, generator=FactModel())
    rag.ingest([write_corpus(tmp_path / "docs")])
    report = rag.evaluate(40, seed=2, apply=True)
    assert report.questions["answerable"] == 30 and report.figures["all"]["fitted"]["hit@1"] == 1.0
    assert report.figures["all"]["fitted"]["probe_refusals"] == 1.0  # hidden on Milvus too: their towns are never found
    again = RAG(tmp_path / "kb", cfg, embedder=embedder, generator=FactModel())
    assert again.min_score("en") == report.thresholds["en"]["fitted"] and "fitted on this knowledge base" in again.threshold("en").origin

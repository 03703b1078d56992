"""Several writers on one Milvus collection through a Milvus Lite server on 127.0.0.1: each race of
claim → write → commit played in a fixed order (two clients in one process, one held at a chosen
Milvus call until the other has done its step), then real `ragapp ingest` processes at once."""

import json
import os
import subprocess
import sys
import threading
import time
from contextlib import closing

import numpy as np
import pytest
from helpers.milvus import MilvusLite

from ragapp.config import BM25Config
from ragapp.index.manifest import FileRecord, Manifest, index_settings
from ragapp.index.milvus import MilvusIndex, collection_name
from ragapp.ingestion.run import bm25_settings
from ragapp.records import Chunk
from ragapp.terms import Tokenizer

pytestmark = pytest.mark.integration

pytest.importorskip("milvus_lite", reason="Milvus Lite is a test dependency: pip install -e '.[test]'")

DIM = 8


@pytest.fixture
def milvus_server(tmp_path):
    """A Milvus Lite gRPC server on 127.0.0.1 (a Milvus Lite file is one process's; a server is many's)."""
    server = MilvusLite(tmp_path / "server")
    yield server.uri
    server.stop()


class Held(MilvusIndex):
    """A client whose `what` Milvus call (its `nth` one) waits until `go` is set: the place one writer
    stops while the other takes its step."""

    def __init__(self, *args, hold: str = "", nth: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hold, self.nth, self.go, self.waiting = hold, nth, threading.Event(), threading.Event()

    def call(self, what, fn, *args, **kwargs):
        if what == self.hold:
            self.nth -= 1
            if self.nth == 0:
                self.waiting.set()
                assert self.go.wait(60), f"held at {what} for 60 s"
        return super().call(what, fn, *args, **kwargs)


def _settings() -> dict:
    embedding = {"model": "test", "backend": "test", "dimension": DIM, "query_prefix": "", "passage_prefix": "",
                 "sentence_vectors": "separate"}
    return index_settings(embedding, {"chunk_tokens": 100}, bm25_settings(BM25Config(), Tokenizer()))


def _write(writer, source: str, text: str, seed: int) -> FileRecord:
    """One document of one chunk of one sentence, with made-up vectors (the index stores what it is given)."""
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    chunk = Chunk(id=f"{source}#0", text=text, source=source, page=None, start=0, end=len(text), sentences=((0, len(text)),))
    writer.add(chunk, f"{seed:032x}", text.lower().split(), vector / np.linalg.norm(vector), vector[None, :])
    return FileRecord(sha256=f"{seed:064x}", size=len(text), chunks=1, ingested_at=time.time())


def _ingest(backend: MilvusIndex, docs: dict[str, str], seed: int, previous=None) -> list[str]:
    """One writer's ingest of `docs`: claim, write, commit. Returns the files it committed."""
    with backend.writer(DIM, _settings()["bm25"], previous) as writer:
        records = {s: _write(writer, s, t, seed + i) for i, (s, t) in enumerate(docs.items()) if writer.claim(s, f"{seed + i:064x}")}
        manifest = previous.manifest if previous is not None else Manifest(**_settings())
        manifest.files = {**manifest.files, **records}
        committed = writer.commit(manifest, set(records))
    return [s for s in records if s in committed.files]


def _seen(uri: str, name: str) -> tuple[dict[str, str], int]:
    """Each visible document's text, and every chunk row there is (visible or not)."""
    with closing(MilvusIndex(uri, name)) as b:
        texts: dict[str, str] = {}
        for _, chunk, _ in b.open().rows():
            texts[chunk.source] = (texts.get(chunk.source, "") + " " + chunk.text).strip()
        return texts, b.count("chunks", "pk >= 0")


def _exactly(uri: str, name: str, files: set[str]) -> None:
    """The collection holds each of `files` whole, once, and nothing else: no chunk row beyond those
    the committed documents count, and each document's chunks are its text."""
    texts, rows = _seen(uri, name)
    with closing(MilvusIndex(uri, name)) as b:
        manifest = b.manifest()
    assert set(texts) == set(manifest.files) == files
    assert rows == manifest.chunks == sum(len(c) for c in _chunks(uri, name).values())
    for source, text in texts.items():
        words = open(source, encoding="utf-8").read().split()
        assert set(text.split()) == set(words), f"{source} is not whole"


def _chunks(uri: str, name: str) -> dict[str, list[int]]:
    with closing(MilvusIndex(uri, name)) as b:
        seen: dict[str, list[int]] = {}
        for row, chunk, _ in b.open().rows():
            seen.setdefault(chunk.source, []).append(row)
        return seen


def test_a_first_commit_made_while_another_writer_starts_is_kept(milvus_server):
    """B looks (no index yet), A commits the first generation, then B starts its writer: B joins the
    collection A made. (B used to take A's commit for its own `--rebuild` and drop the collection.)"""
    b = MilvusIndex(milvus_server, "race_first")
    assert not b.exists()
    with closing(MilvusIndex(milvus_server, "race_first")) as a:
        assert _ingest(a, {"/a.txt": "alpha text"}, 1) == ["/a.txt"]
    assert _ingest(b, {"/b.txt": "bravo text"}, 2) == ["/b.txt"]
    b.close()
    assert _seen(milvus_server, "race_first") == ({"/a.txt": "alpha text", "/b.txt": "bravo text"}, 2)


def test_two_writers_creating_the_collection_at_once(milvus_server):
    """B is held at its first create_collection until A has made all four collections."""
    a, b = MilvusIndex(milvus_server, "race_make"), Held(milvus_server, "race_make", hold="create_collection")
    done: dict[str, list[str]] = {}
    thread = threading.Thread(target=lambda: done.update(b=_ingest(b, {"/b.txt": "bravo text"}, 2)))
    thread.start()
    assert b.waiting.wait(60)
    done["a"] = _ingest(a, {"/a.txt": "alpha text"}, 1)
    b.go.set()
    thread.join(120)
    a.close(), b.close()
    assert done == {"a": ["/a.txt"], "b": ["/b.txt"]}
    assert _seen(milvus_server, "race_make") == ({"/a.txt": "alpha text", "/b.txt": "bravo text"}, 2)


def test_both_writers_read_a_file_free_then_both_claim_it(milvus_server):
    """B reads the file's row (free) and is held before writing its claim; A claims the file, writes it
    and is held before its commit; B writes its claim over A's, writes and commits; A commits. One
    of them owns the file, the other's commit leaves it out, and no row of the loser is left."""
    with closing(MilvusIndex(milvus_server, "race_claim")) as first:
        _ingest(first, {"/seed.txt": "seed text"}, 9)  # the collections exist
    # A's third query is its commit's first (after its claim's read and read-back).
    a, b = Held(milvus_server, "race_claim", hold="query", nth=3), Held(milvus_server, "race_claim", hold="upsert")
    done: dict[str, list[str]] = {}
    tb = threading.Thread(target=lambda: done.update(b=_ingest(b, {"/f.txt": "written by b"}, 2)))
    tb.start()
    assert b.waiting.wait(60)  # B has read the row of /f.txt: no claim on it
    ta = threading.Thread(target=lambda: done.update(a=_ingest(a, {"/f.txt": "written by a"}, 1)))
    ta.start()
    assert a.waiting.wait(60)  # A holds the claim (read back as its own) and has written its row
    b.go.set()
    tb.join(120)
    a.go.set()
    ta.join(120)
    a.close(), b.close()
    assert done == {"b": ["/f.txt"], "a": []}
    texts, rows = _seen(milvus_server, "race_claim")
    assert texts == {"/seed.txt": "seed text", "/f.txt": "written by b"} and rows == 2


def test_a_file_committed_by_another_since_this_ingest_looked_is_not_written_again(milvus_server):
    with closing(MilvusIndex(milvus_server, "race_late")) as a:
        assert _ingest(a, {"/a.txt": "alpha text"}, 1) == ["/a.txt"]
        # Same content (sha256 of seed 1): left as it is; other content: written.
        assert _ingest(a, {"/a.txt": "alpha text"}, 1) == []
        assert _ingest(a, {"/a.txt": "alpha changed"}, 5) == ["/a.txt"]
    assert _seen(milvus_server, "race_late") == ({"/a.txt": "alpha changed"}, 1)


def _write_notes(folder, names: range) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in names:
        lines = [f"Note {i} line {n} says the lantern is {i * 31 + n} units away." for n in range(20)]
        (folder / f"note_{i}.txt").write_text(" ".join(lines) + "\n", encoding="utf-8")


def test_two_ingest_processes_share_one_collection(tmp_path, cache_dir, milvus_server):
    corpus = tmp_path / "corpus"
    _write_notes(corpus, range(12))
    (tmp_path / "ragapp.toml").write_text(f'[index]\nbackend = "milvus"\nuri = "{milvus_server}"\n', encoding="utf-8")
    env = {**os.environ, "RAGAPP_CACHE": cache_dir}
    cmd = [sys.executable, "-m", "ragapp.cli", "ingest", str(corpus), "--index", str(tmp_path / "index"),
           "--config", str(tmp_path / "ragapp.toml"), "--json"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    reports = [json.loads(out) for out, _ in outputs]
    added = [set(r["added"]) for r in reports]
    files = {str(corpus / f"note_{i}.txt") for i in range(12)}
    # Every file written once, by one of them; what one left, the other wrote.
    assert added[0] | added[1] == files and not added[0] & added[1]
    assert set(reports[0]["taken"]) <= added[1] and set(reports[1]["taken"]) <= added[0]
    _exactly(milvus_server, collection_name(tmp_path / "index"), files)


@pytest.mark.slow
def test_four_ingest_processes_each_with_a_folder_and_one_shared(tmp_path, cache_dir, milvus_server):
    """Four machines' worth of `ragapp ingest` at once: four folders of their own and one they all
    name; afterwards the collection holds exactly the files on disk, each once, written by one of them."""
    _write_notes(tmp_path / "shared", range(100, 108))
    for n in range(4):
        _write_notes(tmp_path / f"own{n}", range(n * 10, n * 10 + 5))
    (tmp_path / "ragapp.toml").write_text(f'[index]\nbackend = "milvus"\nuri = "{milvus_server}"\n', encoding="utf-8")
    env = {**os.environ, "RAGAPP_CACHE": cache_dir}
    procs = [subprocess.Popen([sys.executable, "-m", "ragapp.cli", "ingest", str(tmp_path / f"own{n}"), str(tmp_path / "shared"),
                               "--index", str(tmp_path / "index"), "--config", str(tmp_path / "ragapp.toml"), "--json"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
    outputs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [(p.returncode, err[-1500:]) for p, (_, err) in zip(procs, outputs) if p.returncode]
    added = [set(json.loads(out)["added"]) for out, _ in outputs]
    files = {str(f) for f in tmp_path.glob("*/note_*.txt")}
    assert sum(len(a) for a in added) == len(files) and set().union(*added) == files
    _exactly(milvus_server, collection_name(tmp_path / "index"), files)

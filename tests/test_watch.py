"""Watched folders: the metadata fast path of ingest, the watcher in a thread, and `ragapp watch` as a
user runs it (a real process, real file-system events, SIGTERM and SIGKILL)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ragapp import RAG, FolderWatcher
from ragapp.watch import WatchStatus

pytestmark = pytest.mark.integration


@pytest.fixture
def rag(tmp_path, config, embedder, echo_generator):
    return RAG(tmp_path / "index", config, embedder=embedder, generator=echo_generator("Zorblax"))


def _settled() -> None:
    """Files written less than a second ago are hashed again on the next ingest (ragapp/ingestion/run.py)."""
    time.sleep(1.1)


def test_an_ingest_reads_only_files_whose_stat_changed(rag, docs):
    _settled()
    first = rag.ingest([docs])
    assert first.hashed == 5 and len(first.added) == 5
    again = rag.ingest([docs])
    assert again.hashed == 0 and len(again.unchanged) == 5 and again.chunks_added == 0

    # Same size, mtime put back: ctime still moves, so the file is read and the edit found.
    mars = next(docs.rglob("solar_system.md"))
    st = mars.stat()
    text = mars.read_text(encoding="utf-8")
    mars.write_text(text.replace("687", "688"), encoding="utf-8")
    os.utime(mars, ns=(st.st_atime_ns, st.st_mtime_ns))
    _settled()
    edited = rag.ingest([docs])
    assert edited.hashed == 1 and edited.updated == [str(mars)]
    assert "688 Earth days" in rag.search("How long is a year on Mars?", top_k=1)[0].chunk.text

    os.utime(mars)  # touched, content the same: hashed, unchanged, nothing embedded
    touched = rag.ingest([docs])
    assert touched.hashed == 1 and touched.unchanged and not touched.updated and touched.chunks_added == 0


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := predicate()):
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_a_watcher_thread_syncs_a_burst_once_and_holds_a_file_still_being_written(rag, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("Zorblax is the capital of Quux.\n", encoding="utf-8")
    batches = []
    watcher = FolderWatcher(rag, [folder], settle=0.4, max_wait=1.5, on_batch=batches.append)
    watcher.start()
    try:
        _wait(lambda: watcher.status().state == "idle", 120, "the first sync")
        assert len(batches) == 1 and batches[0].report.added == [str(folder / "a.md")]

        for n in range(20):  # a burst: one sync
            (folder / f"b{n}.md").write_text(f"Note {n}: the lighthouse keeper counted {n * 7} gulls.\n", encoding="utf-8")
        _wait(lambda: len(batches) == 2 and watcher.status().state == "idle", 60, "the burst's sync")
        assert len(batches[1].report.added) == 20 and "added 20" in batches[1].line()

        # A log that is appended to without a pause: after max_wait the rest is synced, the log held.
        log = folder / "busy.md"
        with open(log, "w", encoding="utf-8") as out:
            (folder / "c.md").write_text("Florp is a moon of Quux.\n", encoding="utf-8")
            for n in range(20):
                out.write(f"Line {n} of the busy log.\n")
                out.flush()
                time.sleep(0.15)
                if len(batches) > 2:
                    break
        _wait(lambda: len(batches) >= 3, 30, "a sync while the log is still written")
        assert batches[2].report.added == [str(folder / "c.md")] and batches[2].held == 1
        _wait(lambda: str(log) in {d.source for d in rag.documents()}, 30, "the log once it settled")
    finally:
        watcher.stop()
    assert watcher.status().state == "stopped" and WatchStatus.read(rag.path).state == "stopped"
    assert not WatchStatus.read(rag.path).alive


class WatchProcess:
    """`ragapp watch FOLDER --index INDEX` in a process of its own; its stderr lines in a file."""

    def __init__(self, folder: Path, index: Path, log: Path, cache_dir: str) -> None:
        self.log = log
        self._out = open(log, "ab")
        env = {**os.environ, "RAGAPP_CACHE": cache_dir}
        self.proc = subprocess.Popen([sys.executable, "-m", "ragapp.cli", "watch", str(folder), "--index", str(index)],
                                     cwd=folder.parent, env=env, stdout=self._out, stderr=subprocess.STDOUT)

    def lines(self) -> list[str]:
        return [line for line in self.log.read_text(encoding="utf-8").splitlines() if re.match(r"\d\d:\d\d:\d\d ", line)]

    def wait_lines(self, n: int, timeout: float = 180) -> list[str]:
        def enough():
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            return len(self.lines()) >= n and self.lines()

        return _wait(enough, timeout, f"{n} sync lines in {self.log}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self._out.close()
        return code


def _sources(index: Path) -> set[str]:
    manifest = json.loads((index / "manifest.json").read_text(encoding="utf-8"))
    return set(manifest["files"])


def test_ragapp_watch_follows_new_edited_renamed_and_deleted_files(tmp_path, docs, config, embedder, echo_generator, cache_dir):
    index = tmp_path / "index"
    watch = WatchProcess(docs, index, tmp_path / "watch.log", cache_dir)
    try:
        assert "added 5" in watch.wait_lines(1)[0]
        rag = RAG(index, config, embedder=embedder, generator=echo_generator("Zorblax"))
        new = docs / "quux.md"
        new.write_text("Quux is a cold planet. Zorblax is the capital of Quux, founded in 3021.\n", encoding="utf-8")
        assert "added 1" in watch.wait_lines(2, 30)[1]
        answer = rag.ask("What is the capital of Quux?")
        assert answer.answered and "Zorblax" in answer.text and answer.citations[0].source == str(new)

        new.rename(docs / "quux-renamed.md")  # the same text: its vectors are reused
        line = watch.wait_lines(3, 30)[2]
        assert "added 1" in line and "removed 1" in line and "0 chunks embedded" in line

        (docs / "quux-renamed.md").write_text("Florp replaced Zorblax as the capital of Quux in 3050.\n", encoding="utf-8")
        assert "updated 1" in watch.wait_lines(4, 30)[3]
        assert all("3021" not in h.chunk.text for h in rag.search("capital of Quux founded", top_k=5))

        # Written slowly over 3 s: synced once, whole.
        slow = docs / "slow.md"
        with open(slow, "w", encoding="utf-8") as out:
            for n in range(10):
                out.write(f"Slow line {n}: the lighthouse on Quux has {n + 10} lamps.\n")
                out.flush()
                time.sleep(0.3)
        lines = watch.wait_lines(5, 30)
        time.sleep(2)
        assert len(watch.lines()) == 5 and "added 1" in lines[4]
        assert "Slow line 9" in rag.search("lighthouse on Quux lamps", top_k=1)[0].chunk.text

        (docs / "quux-renamed.md").unlink()
        assert "removed 1" in watch.wait_lines(6, 30)[5]
        assert str(docs / "quux-renamed.md") not in _sources(index)
    finally:
        code = watch.stop()
    assert code == 0 and watch.log.read_text().rstrip().endswith("stopped")
    info = subprocess.run([sys.executable, "-m", "ragapp.cli", "info", "--index", str(index), "--json"], capture_output=True,
                          text=True, env={**os.environ, "RAGAPP_CACHE": cache_dir}, cwd=tmp_path, timeout=300)
    watched = json.loads(info.stdout)["watch"]
    assert watched["state"] == "stopped" and not watched["alive"] and watched["folders"] == [str(docs)]


def test_ragapp_watch_batches_a_copy_of_1000_files_and_survives_sigterm_and_sigkill_mid_sync(tmp_path, cache_dir):
    folder, index = tmp_path / "notes", tmp_path / "index"
    folder.mkdir()
    (folder / "first.md").write_text("The first note is about otters.\n", encoding="utf-8")
    watch = WatchProcess(folder, index, tmp_path / "watch.log", cache_dir)
    watch.wait_lines(1)
    staging = tmp_path / "staging"
    staging.mkdir()
    for n in range(1000):
        (staging / f"n{n:04d}.txt").write_text(f"Note {n}: station {n % 37} logged {n * 13 % 997} millimetres of rain.\n",
                                                encoding="utf-8")
    subprocess.run(["cp", "-r", f"{staging}/.", str(folder)], check=True)
    def syncing(proc: WatchProcess, batches: int) -> bool:
        s = WatchStatus.read(index)
        return s is not None and s.pid == proc.proc.pid and s.state == "syncing" and s.batches == batches

    # Stopped (SIGTERM) while the copy is being synced: the sync is abandoned, the index stays the one before.
    _wait(lambda: syncing(watch, 1), 60, "the copy's sync")
    time.sleep(1.0)
    assert watch.stop(signal.SIGTERM) == 130 and "abandoned" in watch.log.read_text()
    assert _sources(index) == {str(folder / "first.md")}
    # Killed (SIGKILL) in the middle of the next try: the same, and a restart converges.
    killed = WatchProcess(folder, index, tmp_path / "watch-killed.log", cache_dir)
    _wait(lambda: syncing(killed, 0), 120, "the restarted sync")
    time.sleep(1.0)
    killed.stop(signal.SIGKILL)
    assert _sources(index) == {str(folder / "first.md")}

    again = WatchProcess(folder, index, tmp_path / "watch2.log", cache_dir)
    try:
        lines = again.wait_lines(1, 300)
        assert "added 1000" in lines[0], lines
        assert len(_sources(index)) == 1001
    finally:
        assert again.stop() == 0

    # Copied at once into a watched folder: one or a few syncs (here counted), not a thousand.
    watch3 = WatchProcess(folder, index, tmp_path / "watch3.log", cache_dir)
    try:
        watch3.wait_lines(1)
        more = tmp_path / "more"
        more.mkdir()
        for n in range(1000):
            (more / f"m{n:04d}.txt").write_text(f"Memo {n}: pier {n % 41} counted {n * 17 % 991} boats.\n", encoding="utf-8")
        subprocess.run(["cp", "-r", f"{more}/.", str(folder)], check=True)
        _wait(lambda: len(_sources(index)) == 2001 and WatchStatus.read(index).state == "idle", 300, "the second copy")
        syncs = watch3.lines()[1:]
        assert 1 <= len(syncs) <= 3 and sum(int(re.search(r"added (\d+)", s)[1]) for s in syncs) == 1000, syncs
    finally:
        assert watch3.stop() == 0


def test_ragapp_serve_watch_keeps_a_knowledge_base_in_step_and_reports_it(tmp_path, cache_dir):
    import httpx
    from helpers.api_server import ApiServer

    folder, root = tmp_path / "shared notes", tmp_path / "kbs"
    folder.mkdir()
    root.mkdir()
    (folder / "otters.md").write_text("Sea otters hold hands while they sleep.\n", encoding="utf-8")
    key = "w" * 24
    api = ApiServer(root, key, tmp_path / "serve.log", cache_dir, args=("--watch", f"notes={folder}"))
    try:
        client = httpx.Client(base_url=api.url, headers=api.headers, timeout=60)
        state = lambda: client.get("/v1/knowledge_bases/notes/watch").json()["watch"]  # noqa: E731
        _wait(lambda: (s := state()) and s["state"] == "idle" and s["batches"] == 1, 180, "the first sync")
        (folder / "quux.md").write_text("Zorblax is the capital of the planet Quux.\n", encoding="utf-8")
        _wait(lambda: state()["batches"] == 2, 30, "the new file's sync")
        status = state()
        assert status["alive"] and "added 1" in status["last"] and status["failures"] == []
        assert str(tmp_path) not in json.dumps(status)  # server paths stay private
        hits = client.post("/v1/search", json={"knowledge_base": "notes", "query": "capital of Quux", "top_k": 1}).json()["data"]
        assert hits[0]["source"] == "quux.md" or hits[0]["source"].endswith("quux.md")
        listed = {kb["name"]: kb for kb in client.get("/v1/knowledge_bases").json()["data"]}
        assert listed["notes"]["documents"] == 2 and listed["notes"]["watch"]["state"] == "idle"
    finally:
        api.stop()
    assert WatchStatus.read(root / "notes").state == "stopped"


def test_a_file_name_that_is_not_utf8_never_stops_ragapp_watch(tmp_path, cache_dir):
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / "a.md").write_text("Zorblax is the capital of Quux.\n", encoding="utf-8")
    index = tmp_path / "index"
    watch = WatchProcess(folder, index, tmp_path / "watch.log", cache_dir)
    try:
        assert "added 1" in watch.wait_lines(1)[0]
        with open(os.fsencode(folder) + b"/" + "报告.txt".encode("gbk"), "wb") as out:  # unzip of a Chinese Windows zip
            out.write("季度报告。".encode())
        assert "failed 1" in watch.wait_lines(2, 60)[1]
        (folder / "b.md").write_text("Florp is a moon of Quux.\n", encoding="utf-8")
        watch.wait_lines(3, 60)
        _wait(lambda: str(folder / "b.md") in _sources(index), 30, "b.md in the index")
        status = WatchStatus.read(index)
        assert status is not None and status.alive and any("not valid UTF-8" in f["reason"] for f in status.failures)
    finally:
        code = watch.stop()
    assert code == 0 and "Traceback" not in watch.log.read_text()


def test_ragapp_serve_watch_converges_under_a_stream_of_changes_and_never_serves_a_stale_note(tmp_path, cache_dir):
    """Issue 47's long watch in seconds (bench/watch.py `long` runs it for 15 minutes): 80 creates, edits,
    renames and deletes in bursts while another thread searches; no hit may come from a change already
    synced, and at the end the index holds exactly the folder's files."""
    import random
    import threading

    import httpx
    from helpers.api_server import ApiServer
    from helpers.churn import Churn, StaleCheck, relative, run_in_thread

    folder, root = tmp_path / "notes", tmp_path / "kbs"
    root.mkdir()
    churn = Churn(folder, seed=11)
    churn.seed_files(20)
    api = ApiServer(root, "c" * 24, tmp_path / "serve.log", cache_dir, args=("--watch", f"notes={folder}"))
    stop = threading.Event()
    try:
        client = httpx.Client(base_url=api.url, headers=api.headers, timeout=60)
        check = StaleCheck(client, "notes", churn)
        _wait(lambda: check.syncs() >= 1, 180, "the first sync")
        searcher = run_in_thread(lambda: check.search(check.question()), stop)
        pause = random.Random(3)
        for burst in range(8):
            for _ in range(10):
                churn.step()
                check.changed()
            time.sleep(pause.uniform(1.2, 2.0))  # quiet long enough for the watcher to sync (settle: 1 s)
        _wait(check.settled, 120, "a sync after the last change")
        stop.set()
        searcher.join(60)
        listed = client.get("/v1/knowledge_bases/notes/documents").json()["data"]
        assert all(d["source"].startswith(("notes/a/", "notes/b/")) for d in listed)  # its place in the folder, no more
        assert {relative(d["source"]): d["sha256"] for d in listed} == churn.digests()
        for rel, word in list(churn.files.items())[:10]:
            hits = client.post("/v1/search", json={"knowledge_base": "notes", "query": f"the harbour of {word}", "top_k": 1}).json()["data"]
            assert relative(hits[0]["source"]) == rel and word in hits[0]["text"]
        assert check.stale == [], check.stale[:5]
        assert check.searches >= 20 and check.synced >= 20 and sum(churn.counts.values()) == 80 and min(churn.counts.values()) >= 5
    finally:
        stop.set()
        api.stop()

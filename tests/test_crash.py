"""Crashes, full disks and concurrent use: the index is always the old one or the new one, never a mix."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ragapp import RAG
from ragapp.errors import IndexLockedError, IndexWriteError
from ragapp.index import LocalReader, write_lock

pytestmark = pytest.mark.integration


def state(path) -> tuple[int, frozenset[str]]:
    """What a reader sees: the generation and the chunk ids (opening verifies every checksum)."""
    index = LocalReader.open(path)
    return index.manifest.generation, frozenset(c.id for _, c, _ in index.rows())


def make_notes(folder, n, seed):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    words = "river mountain copper violin harbour lantern orchard glacier meadow falcon".split()
    for i in range(n):
        body = " ".join(f"Note {seed}-{i} says the {rng.choice(words)} is {rng.randint(1, 999)} units away." for _ in range(12))
        (folder / f"note_{seed}_{i}.txt").write_text(body + "\n", encoding="utf-8")


def test_enospc_during_commit_keeps_previous_index(tmp_path, docs, config, embedder, echo_generator, monkeypatch):
    rag = RAG(tmp_path / "index", config, embedder=embedder, generator=echo_generator())
    rag.ingest([docs])
    before = state(rag.path)
    (docs / "en" / "more.md").write_text("Ceres is the largest object in the asteroid belt.\n", encoding="utf-8")

    real_save = np.save

    def full_disk(file, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(file))

    monkeypatch.setattr(np, "save", full_disk)
    with pytest.raises(IndexWriteError, match="No space left on device; the previous index is unchanged"):
        rag.ingest([docs])
    assert state(rag.path) == before
    assert sorted(p.name for p in rag.path.glob("gen-*")) == [f"gen-{before[0]:06d}"]  # the partial generation is gone
    monkeypatch.setattr(np, "save", real_save)
    report = rag.ingest([docs])
    assert [p.endswith("more.md") for p in report.added] == [True]
    assert rag.search("largest object in the asteroid belt", top_k=1)[0].chunk.source.endswith("more.md")


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB file system (tmpfs); skipped where mounting is not allowed."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_mid_ingest_keeps_previous_index(small_disk, tmp_path, docs, config, embedder, echo_generator):
    """The kernel says ENOSPC half way through writing a new generation: the error says so, the
    partial generation is removed, and the previous index answers as before."""
    rag = RAG(small_disk / "index", config, embedder=embedder, generator=echo_generator())
    rag.ingest([docs])
    before = state(rag.path)
    line = "Station log: the tide gauge at the north pier read normal at noon.\n"
    (docs / "en" / "log.md").write_text(line * 40_000 + "The gauge was replaced in March.\n", encoding="utf-8")
    with pytest.raises(IndexWriteError, match="No space left on device; the previous index is unchanged"):
        rag.ingest([docs])
    assert state(rag.path) == before
    assert sorted(p.name for p in rag.path.glob("gen-*")) == [f"gen-{before[0]:06d}"]
    assert rag.search("How long does Mars take to orbit the Sun?", top_k=1)[0].chunk.source.endswith("solar_system.md")


def _fill(disk, room: int) -> None:
    """Leave about `room` bytes free on `disk` (a ballast file takes the rest)."""
    st = os.statvfs(disk)
    with open(disk / "ballast", "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - room))


def _listing(disk) -> list[str]:
    return sorted(str(p.relative_to(disk)) for p in disk.rglob("*") if p.name != "ballast")


def test_a_full_disk_at_any_moment_of_ingest_costs_nothing(small_disk, docs, config, embedder, echo_generator, cache_dir):
    """The disk fills at moment after moment of an ingest (less room left each time, down to none): each
    time the ingest stops with "disk full" naming the folder and what it was writing (the tables, the
    pages' geometry, the index), the previous generation opens and answers, nothing is left behind, and
    with room again the next ingest converges. The eval store's files likewise; the CLI in one line."""
    rag = RAG(small_disk / "index", config, embedder=embedder, generator=echo_generator())
    rag.ingest([docs])
    before, files = state(rag.path), _listing(small_disk)
    (docs / "en" / "a_rates.csv").write_text("year,revenue,staff\n" + "".join(f"{y},{y * 3},{y % 7}\n" for y in range(1990, 2024)))
    (docs / "en" / "b_copy.pdf").write_bytes((docs / "en" / "photosynthesis.pdf").read_bytes())
    (docs / "en" / "c_log.md").write_text("Station log: the tide gauge at the north pier read normal at noon.\n" * 300)
    stopped: list[str] = []
    for room in range(0, 2_000_000, 20_000):
        _fill(small_disk, room)
        try:
            report = rag.ingest([docs])
        except IndexWriteError as exc:
            assert str(exc).startswith("disk full: cannot write ") and str(rag.path) in str(exc), exc
            stopped.append(str(exc).split(" at ")[0].removeprefix("disk full: cannot write "))
            assert state(rag.path) == before and _listing(small_disk) == files  # nothing half-written stays
            assert rag.search("How long does Mars take to orbit the Sun?", top_k=1)[0].chunk.source.endswith("solar_system.md")
            continue
        finally:
            (small_disk / "ballast").unlink()
        assert sorted(Path(s).name for s in report.added) == ["a_rates.csv", "b_copy.pdf", "c_log.md"]
        break
    else:
        pytest.fail("the ingest never fitted on the disk")
    kinds = {what.split(" of ")[0] for what in stopped}
    assert {"the tables", "the page geometry", "the index"} <= kinds, stopped
    assert rag.search("tide gauge at the north pier", top_k=1)[0].chunk.source.endswith("c_log.md")

    from ragapp.evaluate.testset import TestItem, TestSet, read_set, set_path
    from ragapp.query.threshold import FittedThreshold, read_fitted, write_fitted

    saved = TestSet([TestItem("How long is a year on Mars?")]).save(set_path(rag.path))
    write_fitted(rag.path, FittedThreshold({"en": 0.5}, "e5", "rr", time.time()))
    files = _listing(small_disk)
    _fill(small_disk, 0)
    try:
        with pytest.raises(IndexWriteError, match=r"^disk full: cannot write the test set at .*previous test set is unchanged"):
            TestSet([TestItem(f"question {n} " + "x" * 500) for n in range(200)]).save(saved)
        with pytest.raises(IndexWriteError, match=r"^disk full: cannot write the fitted threshold at "):
            write_fitted(rag.path, FittedThreshold({"en": 0.7, "zh": 0.1} | {f"l{n}": 0.1 for n in range(500)}, "e5", "rr", 0.0))
        assert _listing(small_disk) == files  # no temporary left
        assert [i.question for i in read_set(saved).items] == ["How long is a year on Mars?"]
        assert read_fitted(rag.path, "e5", "rr").values == {"en": 0.5}
        (docs / "en" / "d_more.md").write_text("Ceres is the largest object in the asteroid belt.\n")
        done = subprocess.run([sys.executable, "-m", "ragapp.cli", "ingest", str(docs), "--index", str(rag.path)],
                              env={**os.environ, "RAGAPP_CACHE": cache_dir}, capture_output=True, text=True, timeout=300)
    finally:
        (small_disk / "ballast").unlink()
    assert done.returncode == IndexWriteError.exit_code
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [done.stderr.strip().splitlines()[-1]]
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: disk full: cannot write the index at {rag.path}")


def test_second_writer_waits_or_fails_fast(tmp_path, docs, cache_dir):
    index = tmp_path / "index"
    env = {**os.environ, "RAGAPP_CACHE": cache_dir}
    with write_lock(index):
        r = subprocess.run([sys.executable, "-m", "ragapp.cli", "ingest", str(docs), "--index", str(index), "--no-wait"],
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == IndexLockedError.exit_code
        assert r.stderr.strip().splitlines() == [f"error: index {index} is being written by another process "
                                                 "(try again, or drop --no-wait to wait)"]
        waiting = subprocess.Popen([sys.executable, "-m", "ragapp.cli", "ingest", str(docs), "--index", str(index)],
                                   env=env, stderr=subprocess.PIPE, text=True)
        said = next((line for line in waiting.stderr if "waiting for another ingest" in line), "")  # once it met the lock
        assert said and waiting.poll() is None
        assert not (index / "manifest.json").exists()
    _, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0 and "added 5" in err


def test_readers_see_a_consistent_snapshot_during_ingest(tmp_path, docs, config, embedder, echo_generator):
    writer = RAG(tmp_path / "index", config, embedder=embedder, generator=echo_generator())
    writer.ingest([docs / "en"])
    reader = RAG(tmp_path / "index", config, embedder=embedder, generator=echo_generator())
    first = reader.search("Mars orbit", top_k=1)[0].chunk.source
    errors: list[BaseException] = []
    done = threading.Event()

    def ingest():
        try:
            writer.ingest([docs / "zh"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=ingest)
    thread.start()
    seen = 0
    while not done.is_set():
        hits = reader.search("长城的总长度是多少？", top_k=3)
        assert hits and all(h.chunk.text for h in hits)
        assert reader.search("Mars orbit", top_k=1)[0].chunk.source == first
        seen += 1
    thread.join()
    assert not errors and seen > 0
    # The committed ingest is visible to the same object without reopening it.
    assert reader.search("长城的总长度是多少？", top_k=1)[0].chunk.source.endswith("长城.txt")


def test_an_answer_reads_one_generation_while_a_sync_commits_another_mid_answer(tmp_path, config, embedder, echo_generator):
    """A watched folder synced while the model writes (bench/watch.py long found it): the answer's
    confidence and citations read the generation its passages came from, not the one committed since
    (whose rows are other chunks: a 503 'index N is out of bounds', or silently another passage's vectors)."""
    folder = tmp_path / "notes"
    make_notes(folder / "a", 6, 1)
    (folder / "z_quux.md").write_text("Quux is a planet. Zorblax is the capital of the planet Quux. It has nine moons.\n", encoding="utf-8")
    writer = RAG(tmp_path / "index", config, embedder=embedder, generator=echo_generator())
    writer.ingest([folder])

    class SyncMidAnswer(echo_generator):
        def stream(self, messages):
            for old in (folder / "a").iterdir():  # the rows before the answer's passages go away
                old.unlink()
            writer.ingest([folder])
            yield from super().stream(messages)

    reader = RAG(tmp_path / "index", config, embedder=embedder, generator=SyncMidAnswer("Zorblax"))
    before = reader.index().manifest.generation
    answer = reader.ask("What is the capital of Quux?", min_score=-1.0)
    assert reader.index().manifest.generation == before + 1  # the sync did commit during the answer
    assert answer.answered and "Zorblax" in answer.text and 0.0 <= answer.confidence <= 1.0
    assert answer.citations and all(c.source.endswith("z_quux.md") for c in answer.citations)


def test_kill_during_ingest_leaves_old_or_new_index(tmp_path, cache_dir):
    """SIGKILL `ragapp ingest` at 20 random moments; every time the index opens and is the state
    before or after; re-running converges."""
    corpus = tmp_path / "corpus"
    make_notes(corpus / "a", 30, seed=1)
    index = tmp_path / "index"
    env = {**os.environ, "RAGAPP_CACHE": cache_dir}
    cmd = [sys.executable, "-m", "ragapp.cli", "ingest", str(corpus), "--index", str(index)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    make_notes(corpus / "b", 30, seed=2)
    (corpus / "a" / "note_1_0.txt").unlink()
    before = state(index)

    # One uninterrupted run (on a copy) gives the "after" state and the duration to sample kills from.
    import shutil

    shutil.copytree(index, tmp_path / "probe")
    t0 = time.perf_counter()
    subprocess.run(cmd[:-1] + [str(tmp_path / "probe")], env=env, check=True, capture_output=True, timeout=600)
    duration = time.perf_counter() - t0
    after_ids = state(tmp_path / "probe")[1]

    shutil.copytree(index, tmp_path / "before")
    rng = random.Random(7)
    outcomes = {"old": 0, "new": 0}
    for trial in range(20):
        shutil.rmtree(index)
        shutil.copytree(tmp_path / "before", index)
        # Half the kills anywhere, half in the last third of the run, where embedding and commit happen.
        moment = rng.uniform(0, duration) if trial % 2 == 0 else rng.uniform(duration * 2 / 3, duration * 1.05)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(moment)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        generation, ids = state(index)
        assert ids in (before[1], after_ids), f"trial {trial}: index is neither the old nor the new state"
        outcomes["old" if ids == before[1] else "new"] += 1
        hits = RAG(index).search("How far away is the copper?", top_k=3)
        assert hits and {h.chunk.id for h in hits} <= ids  # it answers, from the state it shows
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    assert state(index)[1] == after_ids
    print(f"kill test: {json.dumps({'trials': 20, 'recovered': 20, **outcomes, 'lost': 0})}")

"""Watched folders: how soon a written file is answerable, what a watcher costs at rest, how bursts
become syncs, a folder of 10,000 files, and the two file-system watchers side by side. Prints the
figures docs/benchmarks.md ("Watched folders") quotes.

    python bench/watch.py latency [--runs 20]     # `ragapp watch`: file written -> indexed and cited, seconds
    python bench/watch.py scale [--files 10000]   # copies of 1,000 files, then 10,000: syncs, memory, idle CPU
    python bench/watch.py watchers                # watchdog (used) vs watchfiles (pip install watchfiles)
    python bench/watch.py long [--changes 1000 --minutes 15]   # `ragapp serve --watch` under a stream of changes

Each runs the real `ragapp watch` (or, for `watchers`, each library alone in a child process) on folders
under bench/out; idle CPU is the process's own CPU time over 60 s (/proc), as a share of one core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.common import OUT, machine  # noqa: E402
from ragapp.watch import WatchStatus  # noqa: E402

SAMPLES = ROOT / "data" / "samples"
IDLE_SECONDS = 60


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _idle_cpu(pid: int, seconds: float = IDLE_SECONDS) -> float:
    """Share of one core a process used over `seconds` at rest."""
    before = _cpu_seconds(pid)
    time.sleep(seconds)
    return (_cpu_seconds(pid) - before) / seconds


def _start(folder: Path, index: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ragapp.cli", "watch", str(folder), "--index", str(index)],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def _wait(predicate, timeout: float, what: str, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := predicate()):
            return value
        time.sleep(step)
    raise SystemExit(f"timed out waiting for {what}")


def _status(index: Path) -> WatchStatus | None:
    return WatchStatus.read(index)


def _settled(index: Path, batches: int):
    return lambda: (s := _status(index)) is not None and s.batches >= batches and s.state == "idle" and s


def _indexed(index: Path) -> set[str]:
    try:
        return set(json.loads((index / "manifest.json").read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError):
        return set()


def latency(runs: int) -> None:
    """Seconds from a new file's close to its being in the index, then checked answerable and cited."""
    from ragapp import RAG

    work = OUT / "watch-latency"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(SAMPLES, work / "docs")
    proc = _start(work / "docs", work / "index", work / "watch.log")
    try:
        _wait(_settled(work / "index", 1), 300, "the first sync")
        rag = RAG(work / "index")
        seconds, cited = [], 0
        for n in range(runs):
            path = work / "docs" / f"new-{n}.md"
            word = f"Zorblax{n}"
            batches = _status(work / "index").batches
            with open(path, "w", encoding="utf-8") as out:
                out.write(f"Quux is a cold planet. {word} is the capital of Quux district {n}, founded in {3000 + n}.\n")
            t0 = time.perf_counter()
            _wait(lambda path=path: str(path) in _indexed(work / "index"), 60, f"{path.name} in the index")
            seconds.append(time.perf_counter() - t0)
            _wait(_settled(work / "index", batches + 1), 60, "the sync's end")
            hit = rag.search(f"What is the capital of Quux district {n}?", top_k=1)[0]
            cited += hit.chunk.source == str(path) and word in hit.chunk.text
            time.sleep(0.5)
        cpu = _idle_cpu(proc.pid)
        rss = _rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    s = sorted(seconds)
    print(f"\n## Watched folder: a new file answerable ({runs} files, one at a time; {machine()})\n")
    print("| runs | cited by search | median s | p90 s | min s | max s | idle CPU (60 s) | resident MB |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {runs} | {cited}/{runs} | {statistics.median(s):.2f} | {s[int(0.9 * (len(s) - 1))]:.2f} | {s[0]:.2f} | {s[-1]:.2f} | "
          f"{cpu * 100:.2f} % of a core | {rss:.0f} |")
    print("\nall (s): " + " ".join(f"{x:.2f}" for x in seconds))


def _write_files(folder: Path, start: int, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(start, start + count):
        (folder / f"note-{n:05d}.txt").write_text(
            f"Note {n}: weather station {n % 97} logged {n * 13 % 997} millimetres of rain in week {n % 52}; "
            f"the observer was number {n * 7 % 1009}.\n", encoding="utf-8")


def _copy_in(staging: Path, folder: Path, index: Path, expect: int) -> tuple[int, float]:
    """Copy every file of `staging` into the watched folder at once: (syncs it took, seconds until indexed)."""
    before = _status(index).batches
    t0 = time.perf_counter()
    subprocess.run(["cp", "-r", f"{staging}/.", str(folder)], check=True)
    _wait(lambda: len(_indexed(index)) >= expect and _status(index).state == "idle", 3600, f"{expect} files indexed", 0.2)
    return _status(index).batches - before, time.perf_counter() - t0


def scale(files: int) -> None:
    from ragapp.digest import file_sha256

    work = OUT / "watch-scale"
    shutil.rmtree(work, ignore_errors=True)
    folder, index = work / "notes", work / "index"
    _write_files(folder, 0, 1)
    proc = _start(folder, index, work / "watch.log")
    rows = []
    try:
        _wait(_settled(index, 1), 300, "the first sync")
        _write_files(work / "stage-1000", 1, 1000)
        syncs, secs = _copy_in(work / "stage-1000", folder, index, 1001)
        rows.append(("1,000 files copied at once", syncs, secs))
        _write_files(work / "stage-rest", 1001, files - 1001)
        syncs, secs = _copy_in(work / "stage-rest", folder, index, files)
        rows.append((f"{files - 1001:,} more copied at once", syncs, secs))
        time.sleep(2)
        one = folder / "note-00500.txt"
        before = _status(index).batches
        one.write_text(one.read_text(encoding="utf-8") + "Amended: the gauge was recalibrated.\n", encoding="utf-8")
        t0 = time.perf_counter()
        last = _wait(_settled(index, before + 1), 120, "the edit's sync")
        edit_seconds = time.perf_counter() - t0
        cpu, rss, peak = _idle_cpu(proc.pid), _rss_mb(proc.pid), _rss_mb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(60)
    t0 = time.perf_counter()
    for f in folder.iterdir():
        file_sha256(f)
    hash_all = time.perf_counter() - t0
    print(f"\n## Watched folder of {files:,} files ({machine()})\n")
    print("| what | syncs | seconds until indexed |\n|---|---|---|")
    for what, syncs, secs in rows:
        print(f"| {what} | {syncs} | {secs:.1f} |")
    print(f"\none file edited among {files:,}: indexed {edit_seconds:.2f} s after its write; the sync: {last.last}")
    print(f"hashing all {files:,} files instead (what every sync cost before the metadata fast path, files in the page "
          f"cache): {hash_all:.2f} s")
    print(f"watcher at rest with {files:,} files: {cpu * 100:.2f} % of a core over {IDLE_SECONDS} s; resident {rss:.0f} MB, "
          f"peak {peak:.0f} MB")


_PROBE = r'''
import json, os, sys, threading, time
from pathlib import Path
kind, folder, idle = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
seen = {}
def note(path):
    seen.setdefault(os.path.basename(path), time.perf_counter())
stop = threading.Event()
if kind == "watchfiles":
    import watchfiles
    def loop():
        for changes in watchfiles.watch(folder, stop_event=stop, rust_timeout=250, yield_on_timeout=True, debounce=250):
            for _, p in changes:
                note(p)
    t = threading.Thread(target=loop, daemon=True); t.start()
else:
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer
    class H(FileSystemEventHandler):
        def on_any_event(self, event):
            note(event.src_path)
    obs = Observer(); obs.schedule(H(), str(folder), recursive=True); obs.start()
time.sleep(3)
t0 = time.process_time(); time.sleep(idle); idle_cpu = (time.process_time() - t0) / idle
lat = []
for n in range(20):
    name = f"probe-{kind}-{n}.txt"
    with open(folder / name, "w") as f:
        f.write("x\n")
    t = time.perf_counter()
    while name not in seen and time.perf_counter() - t < 10:
        time.sleep(0.001)
    lat.append(seen.get(name, float("nan")) - t)
    (folder / name).unlink()
    time.sleep(0.3)
stop.set()
print(json.dumps({"idle_cpu": idle_cpu, "latency": sorted(lat)}))
'''


def watchers() -> None:
    folder = OUT / "watch-scale" / "notes"
    if not folder.is_dir():
        folder = OUT / "watch-watchers"
        _write_files(folder, 0, 10_000)
    count = sum(1 for _ in folder.iterdir())
    print(f"\n## watchfiles vs watchdog on a folder of {count:,} files ({machine()})\n")
    print("| library | event latency median ms | p90 ms | idle CPU (60 s) |\n|---|---|---|---|")
    import importlib.util

    for kind in ("watchfiles", "watchdog"):
        if importlib.util.find_spec(kind) is None:
            print(f"| {kind} | not installed (pip install {kind}) | | |")
            continue
        out = subprocess.run([sys.executable, "-c", _PROBE, kind, str(folder), str(IDLE_SECONDS)], capture_output=True,
                             text=True, check=True).stdout
        r = json.loads(out)
        lat = r["latency"]
        print(f"| {kind} | {statistics.median(lat) * 1000:.1f} | {lat[int(0.9 * (len(lat) - 1))] * 1000:.1f} | "
              f"{r['idle_cpu'] * 100:.3f} % of a core |")


def long(changes: int, minutes: float) -> None:
    """A real `ragapp serve --watch` (the packaged model) over a folder of 100 notes receiving `changes`
    creates, edits, renames and deletes at random moments over `minutes`, searched and asked throughout
    (tests/helpers/churn.py): stale hits and citations, convergence file by file, RSS every 10 s."""
    import random
    import threading

    import httpx
    from helpers.api_server import ApiServer
    from helpers.churn import Churn, StaleCheck, relative, run_in_thread

    from ragapp.config import Config

    work = OUT / "watch_long"
    shutil.rmtree(work, ignore_errors=True)
    (work / "kbs").mkdir(parents=True)
    churn = Churn(work / "notes", seed=47)
    churn.seed_files(100)
    api = ApiServer(work / "kbs", "long-watch-operator-key-47", work / "serve.log", Config().cache_dir,
                    args=("--watch", f"notes={work / 'notes'}"))
    stop, rss = threading.Event(), []
    try:
        client = httpx.Client(base_url=api.url, headers=api.headers, timeout=600)
        check = StaleCheck(client, "notes", churn)
        _wait(lambda: check.syncs() >= 1, 600, "the first sync", step=0.2)
        threads = [run_in_thread(lambda: check.search(check.question()), stop),
                   run_in_thread(lambda: check.ask(check.question()), stop),
                   run_in_thread(lambda: (rss.append((time.monotonic(), _rss_mb(api.proc.pid))), stop.wait(10)), stop)]
        rng, t0 = random.Random(47), time.monotonic()
        moments = sorted(rng.uniform(0, minutes * 60) for _ in range(changes))
        for at in moments:
            time.sleep(max(0.0, t0 + at - time.monotonic()))  # the script's own timetable, not a wait on the server
            churn.step()
            check.changed()
        t_last = time.monotonic()
        _wait(check.settled, 600, "a sync after the last change", step=0.1)
        converge, syncs = time.monotonic() - t_last, check.syncs()
        stop.set()
        for thread in threads:
            thread.join(600)
        listed = client.get("/v1/knowledge_bases/notes/documents").json()["data"]
        indexed, on_disk = {relative(d["source"]): d["sha256"] for d in listed}, churn.digests()
        top = sum(relative(client.post("/v1/search", json={"knowledge_base": "notes", "query": f"the harbour of {w}",
                                                          "top_k": 1}).json()["data"][0]["source"]) == rel
                  for rel, w in churn.files.items())
    finally:
        stop.set()
        api.stop()
    last5 = [mb for t, mb in rss if t >= rss[-1][0] - 300]
    print(f"# {machine()}, {time.strftime('%Y-%m-%d')}; {changes} changes over {minutes:g} min, "
          f"{len(churn.files)} notes at the end")
    print("| changes (create / edit / rename / delete) | syncs | searches | answers | stale hits or citations "
          "| files as on disk | top hit right | converged after the last change s | RSS MB first / last 5 min |")
    print("|---|---:|---:|---:|---:|---|---|---:|---|")
    kinds = " / ".join(str(churn.counts.get(k, 0)) for k in ("create", "edit", "rename", "delete"))
    same = sum(indexed.get(rel) == digest for rel, digest in on_disk.items())
    print(f"| {kinds} | {syncs} | {check.searches} | {check.answers} | {len(check.stale)} "
          f"| {same} of {len(on_disk)} (+{len(indexed.keys() - on_disk.keys())} not on disk) | {top} of {len(churn.files)} "
          f"| {converge:.1f} | {rss[0][1]:.0f} / {min(last5):.0f}–{max(last5):.0f} |")
    print("RSS MB each minute: " + ", ".join(f"{mb:.0f}" for t, mb in rss[::6]))
    for line in check.stale[:10]:
        print("stale:", line)
    print(f"errors: {len(check.errors)}")
    for line in check.errors[:10]:
        print("error:", line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["latency", "scale", "watchers", "long"])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=15)
    args = parser.parse_args()
    {"latency": lambda: latency(args.runs), "scale": lambda: scale(args.files), "watchers": watchers,
     "long": lambda: long(args.changes, args.minutes)}[args.part]()


if __name__ == "__main__":
    main()

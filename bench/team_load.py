"""A team on one `ragapp serve`: 20 users with their own keys, two of them flooding, the packaged model
answering. Prints the figures docs/benchmarks.md ("A team on one server") quotes.

    python bench/team_load.py [--minutes 10] [--baseline MINUTES] [--users 20] [--flooders 2]

First one user alone (questions one after another); then `--baseline` minutes (as many as the
flood's unless told) of the ordinary users only: each asks a question, reads for 60-120 s, asks again;
then `--minutes` of the same with the flooders, each keeping 6 requests in flight without pause.
Reported side by side: the ordinary users' answer p50/p95 without and with the flood, replies by
status per kind of user, and the server's resident memory, threads and open descriptors every 10 s.
A real server on 127.0.0.1; the run stops by itself.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers.api_server import ApiServer, upload  # noqa: E402

from bench.common import ROOT, machine  # noqa: E402
from bench.serve import QUESTIONS  # noqa: E402
from ragapp.config import Config  # noqa: E402
from ragapp.teams import UserStore  # noqa: E402


def _sample(pid: int) -> tuple[float, int, int]:
    """The server's resident memory (MB), threads and open file descriptors."""
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return int(status["VmRSS"].split()[0]) / 1024, int(status["Threads"]), len(os.listdir(f"/proc/{pid}/fd"))


def _ask(client: httpx.Client, question: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    r = client.post("/v1/chat/completions", json={"model": "team", "messages": [{"role": "user", "content": question}]})
    return r.status_code, time.perf_counter() - t0


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values[0] if values else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--baseline", type=float, default=None, help="minutes without the flood (default: --minutes)")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--flooders", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ragapp-team-"))
    store = UserStore(root)
    keys = {}
    for n in range(args.users):
        name = f"user{n:02d}"
        store.add(name, admin=n == 0)
        store.grant(name, "team", "reader")
        keys[name] = store.new_key(name)[1]
    server = ApiServer(root, "", root / "serve.log", Config().cache_dir)
    clients = {n: httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {k}"}, timeout=900) for n, k in keys.items()}
    try:
        admin = clients["user00"]
        admin.post("/v1/knowledge_bases", json={"name": "team"}).raise_for_status()
        upload(admin, "team", sorted(p for p in (ROOT / "data" / "samples").rglob("*") if p.is_file()))
        _ask(admin, QUESTIONS[0])  # models loaded
        alone = [_ask(admin, q)[1] for q in QUESTIONS * 2]
        print(f"# {machine()}, {time.strftime('%Y-%m-%d')}; {args.users} users, {args.flooders} flooding, {args.minutes:g} min")
        print(f"one user alone: answer p50 {_pct(alone, 50):.2f} s, p95 {_pct(alone, 95):.2f} s ({len(alone)} answers)", flush=True)
        calm, calm_use = _load(server, clients, args.users - 1 - args.flooders, 0, args.baseline or args.minutes)
        _resources(calm_use, "no flood")
        calm_answers = [s for kind, status, s in calm if status == 200]
        print(f"ordinary users, no flood: p50 {_pct(calm_answers, 50):.2f} s, p95 {_pct(calm_answers, 95):.2f} s", flush=True)
        _report(*_load(server, clients, args.users - 1 - args.flooders, args.flooders, args.minutes), alone, calm_answers)
    finally:
        for c in clients.values():
            c.close()
        server.stop()


def _load(server: ApiServer, clients: dict[str, httpx.Client], people: int, floods: int, minutes: float
          ) -> tuple[list[tuple[str, int, float]], list[tuple[float, float, int, int]]]:
    """`minutes` of `people` ordinary users and `floods` flooders: every reply, and the server's
    (seconds, RSS MB, threads, descriptors) every 10 s."""
    names = sorted(clients)
    ordinary, flooders = names[-people:], names[1 : 1 + floods]
    end = time.monotonic() + minutes * 60
    results: list[tuple[str, int, float]] = []
    rss: list[tuple[float, float, int, int]] = []
    lock = threading.Lock()

    def record(kind: str, status: int, seconds: float) -> None:
        with lock:
            results.append((kind, status, seconds))

    def person(name: str) -> None:
        rng = random.Random(name)
        time.sleep(rng.uniform(0, 60))
        while time.monotonic() < end:
            record("ordinary", *_ask(clients[name], rng.choice(QUESTIONS)))
            time.sleep(rng.uniform(60, 120))

    def flood(name: str) -> None:
        rng = random.Random(name)
        while time.monotonic() < end:
            status, seconds = _ask(clients[name], rng.choice(QUESTIONS))
            record("flooder", status, seconds)
            if status == 429:
                time.sleep(0.2)

    threads = [threading.Thread(target=person, args=(n,)) for n in ordinary]
    threads += [threading.Thread(target=flood, args=(n,)) for n in flooders for _ in range(6)]
    for t in threads:
        t.start()
    start = time.monotonic()
    while time.monotonic() < end:
        rss.append((time.monotonic() - start, *_sample(server.proc.pid)))
        time.sleep(10)
    for t in threads:
        t.join()
    return results, rss


def _report(results: list[tuple[str, int, float]], rss: list[tuple[float, float, int, int]], alone: list[float],
            calm: list[float]) -> None:
    mine = [s for kind, status, s in results if kind == "ordinary" and status == 200]
    print("| | answers | p50 s | p95 s |\n|---|---:|---:|---:|")
    print(f"| one user alone | {len(alone)} | {_pct(alone, 50):.2f} | {_pct(alone, 95):.2f} |")
    print(f"| the ordinary users, no flood | {len(calm)} | {_pct(calm, 50):.2f} | {_pct(calm, 95):.2f} |")
    print(f"| the ordinary users, two flooding | {len(mine)} | {_pct(mine, 50):.2f} | {_pct(mine, 95):.2f} |")
    statuses = Counter((kind, status) for kind, status, _ in results)
    print("replies by status: " + ", ".join(f"{kind} {status}: {n}" for (kind, status), n in sorted(statuses.items())))
    print(f"5xx: {sum(n for (_, status), n in statuses.items() if status >= 500)}")
    _resources(rss, "two flooding")


def _resources(rss: list[tuple[float, float, int, int]], phase: str) -> None:
    half = [row for row in rss if row[0] >= rss[-1][0] / 2]
    for name, col in (("RSS MB", 1), ("threads", 2), ("descriptors", 3)):
        print(f"{phase}, server {name}: first {rss[0][col]:.0f}, max {max(r[col] for r in rss):.0f}, last {rss[-1][col]:.0f}; "
              f"second half min {min(r[col] for r in half):.0f} max {max(r[col] for r in half):.0f} (every 10 s: {len(rss)})")


if __name__ == "__main__":
    main()

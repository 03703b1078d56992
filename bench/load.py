"""A busy `ragapp serve`: 32 clients at once for 10 minutes, mixing search, chat completions (streamed and
not), document lists, page images and uploads, with the packaged model answering. Prints what
docs/benchmarks.md ("A busy server") quotes.

    python bench/load.py [--minutes 10] [--clients 32] [--mix "search=40,chat=10,..."]

Each client picks its next request at random (search 40 %, chat 10 %, streamed chat 10 %, document list
15 %, page image 15 %, upload 10 %: a small file of its own, replaced each time) and sends it as soon as
the last one is answered. Beside them a probe asks `/health` every second, and the server's resident
memory, open descriptors and threads are sampled every 10 s. Reported: p50/p95/p99 per route, replies
by status per route, `/health` latency, and each resource first, over the last 5 minutes, and last.
A real server on 127.0.0.1 with an operator key (no per-user limits: the queue for the model is the
only bound); the run stops by itself.
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
from collections import Counter, defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers.api_server import ApiServer, upload  # noqa: E402

from bench.common import ROOT, machine  # noqa: E402
from bench.serve import QUESTIONS  # noqa: E402
from ragapp.config import Config  # noqa: E402

KEY = "load-bench-operator-key-51f0"
MIX = {"search": 40, "chat": 10, "chat stream": 10, "documents": 15, "page image": 15, "upload": 10}


def _sample(pid: int) -> tuple[float, int, int]:
    """The server's resident memory (MB), open descriptors and threads."""
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return int(status["VmRSS"].split()[0]) / 1024, len(os.listdir(f"/proc/{pid}/fd")), int(status["Threads"])


def _request(client: httpx.Client, kind: str, n: int, rng: random.Random) -> int:
    """Send one request of `kind` (client number `n`); its status."""
    question = rng.choice(QUESTIONS)
    if kind == "search":
        return client.post("/v1/search", json={"knowledge_base": "load", "query": question, "top_k": 5}).status_code
    if kind == "chat":
        body = {"model": "load", "messages": [{"role": "user", "content": question}]}
        return client.post("/v1/chat/completions", json=body).status_code
    if kind == "chat stream":
        body = {"model": "load", "messages": [{"role": "user", "content": question}], "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=body) as r:
            for _ in r.iter_bytes():
                pass
            return r.status_code
    if kind == "documents":
        return client.get("/v1/knowledge_bases/load/documents").status_code
    if kind == "page image":
        return client.get("/v1/knowledge_bases/load/documents/photosynthesis.pdf/pages/1.png").status_code
    text = f"Client {n} note {rng.randint(0, 10**6)}: the tide gauge read {rng.randint(1, 99)} cm at noon.\n"
    files = [("files", (f"client_{n}.txt", text.encode(), "text/plain"))]
    return client.post("/v1/knowledge_bases/load/documents?replace=true", files=files).status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--mix", default=",".join(f"{k}={v}" for k, v in MIX.items()),
                        help="weights per route, ROUTE=N,... (a route left out is not sent; the routes: %(default)s)")
    args = parser.parse_args()
    mix = {k.strip(): float(v) for k, v in (item.split("=") for item in args.mix.split(","))}
    if not mix or set(mix) - set(MIX):
        parser.error(f"--mix routes are among {', '.join(MIX)}")
    root = Path(tempfile.mkdtemp(prefix="ragapp-load-"))
    server = ApiServer(root, KEY, root / "serve.log", Config().cache_dir)
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=600) as c:
            c.post("/v1/knowledge_bases", json={"name": "load"}).raise_for_status()
            upload(c, "load", sorted(p for p in (ROOT / "data" / "samples").rglob("*") if p.is_file()))
            c.post("/v1/chat/completions", json={"model": "load", "messages": [{"role": "user", "content": QUESTIONS[0]}]})
        print(f"# {machine()}; {args.clients} clients, {args.minutes:g} min, mix {args.mix}", flush=True)
        _report(mix, *_run(server, args.clients, args.minutes, mix))
    finally:
        server.stop()


def _run(server: ApiServer, clients: int, minutes: float, mix: dict[str, float]):
    end = time.monotonic() + minutes * 60
    times: dict[str, list[float]] = defaultdict(list)
    statuses: Counter[tuple[str, int]] = Counter()
    health: list[tuple[float, float]] = []
    use: list[tuple[float, float, int, int]] = []
    lock = threading.Lock()
    start = time.monotonic()

    def client(n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=600) as c:
            while time.monotonic() < end:
                kind = rng.choices(list(mix), weights=list(mix.values()))[0]
                t0 = time.perf_counter()
                try:
                    status = _request(c, kind, n, rng)
                except httpx.HTTPError as exc:  # a dropped connection counts as a failure of its route
                    status = type(exc).__name__
                with lock:
                    statuses[(kind, status)] += 1
                    if status == 200 or status == 202:
                        times[kind].append(time.perf_counter() - t0)

    def probe() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                ok = c.get("/health").status_code == 200
                health.append((time.monotonic() - start, (time.perf_counter() - t0) if ok else float("inf")))
                time.sleep(1)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)] + [threading.Thread(target=probe)]
    for t in threads:
        t.start()
    while time.monotonic() < end:
        use.append((time.monotonic() - start, *_sample(server.proc.pid)))
        time.sleep(10)
    for t in threads:
        t.join()
    return times, statuses, health, use


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values[0] if values else float("nan"))


def _report(mix, times, statuses, health, use) -> None:
    print("| route | replies | p50 ms | p95 ms | p99 ms | by status |\n|---|---:|---:|---:|---:|---|")
    for kind in mix:
        by = ", ".join(f"{s}: {n}" for (k, s), n in sorted(statuses.items(), key=lambda x: str(x[0][1])) if k == kind)
        t = [x * 1000 for x in times[kind]]
        print(f"| {kind} | {sum(n for (k, _), n in statuses.items() if k == kind)} | {_pct(t, 50):.0f} | {_pct(t, 95):.0f} "
              f"| {_pct(t, 99):.0f} | {by} |")
    errors = sum(n for (_, s), n in statuses.items() if not isinstance(s, int) or s >= 500)
    print(f"5xx and dropped connections: {errors}")
    h = [x * 1000 for _, x in health]
    print(f"/health: {len(h)} probes, p50 {_pct(h, 50):.1f} ms, p99 {_pct(h, 99):.1f} ms, max {max(h):.1f} ms, "
          f"over 100 ms: {sum(x > 100 for x in h)}")
    last = [row for row in use if row[0] >= use[-1][0] - 300]
    for name, col in (("RSS MB", 1), ("descriptors", 2), ("threads", 3)):
        print(f"server {name}: first {use[0][col]:.0f}, last 5 min {min(r[col] for r in last):.0f}–{max(r[col] for r in last):.0f}, "
              f"last {use[-1][col]:.0f} (every 10 s: {len(use)})")


if __name__ == "__main__":
    main()

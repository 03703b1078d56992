"""`ragapp serve` under load: latency p50/p95 and throughput for 1, 4 and 8 concurrent clients, search-only
and ask, on the bundled samples; then a transcript of the official openai client streaming an answer.

    python bench/serve.py [--ask 24] [--search 60]

A real server on 127.0.0.1 (subprocess, its own API key), the default models; requests per level are
bounded, so the run stops by itself (about 4 minutes here).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers.api_server import ApiServer  # noqa: E402

from bench.common import ROOT, machine  # noqa: E402

QUESTIONS = ["How long does Mars take to orbit the Sun?", "Which planet is the hottest?", "Who discovered Neptune?",
             "长城的总长度是多少？", "西湖龙井属于哪一类茶？", "What does the enzyme RuBisCO do?"]


def _setup(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=600) as c:
        c.post("/v1/knowledge_bases", json={"name": "samples"}).raise_for_status()
        files = [("files", (p.name, p.read_bytes())) for p in sorted((ROOT / "data" / "samples").rglob("*")) if p.is_file()]
        job = c.post("/v1/knowledge_bases/samples/documents", files=files).json()["job"]
        while c.get(f"/v1/jobs/{job}").json()["status"] not in ("done", "failed"):
            time.sleep(0.5)
        c.post("/v1/chat/completions", json={"model": "samples", "messages": [{"role": "user", "content": QUESTIONS[0]}]})


def _level(server: ApiServer, kind: str, clients: int, total: int) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = [0]
    counter = iter(range(total))
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=600) as c:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                q = QUESTIONS[n % len(QUESTIONS)]
                t0 = time.perf_counter()
                if kind == "search":
                    r = c.post("/v1/search", json={"knowledge_base": "samples", "query": q, "top_k": 5})
                else:
                    r = c.post("/v1/chat/completions", json={"model": "samples", "messages": [{"role": "user", "content": q}]})
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    errors[0] += r.status_code != 200

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0], time.perf_counter() - t0


def _transcript(server: ApiServer) -> None:
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.key)
    print('\nopenai client, stream=True, model="samples": "Who discovered Neptune?"')
    for chunk in client.chat.completions.create(model="samples", stream=True,
                                                messages=[{"role": "user", "content": "Who discovered Neptune?"}]):
        if chunk.choices and chunk.choices[0].delta.content:
            print(f"  chunk: {chunk.choices[0].delta.content!r}")
        if chunk.model_extra.get("citations") is not None:
            print(f"  last chunk: finish_reason={chunk.choices[0].finish_reason!r} answered={chunk.model_extra['answered']}")
            for c in chunk.model_extra["citations"]:
                print(f"    citation: {Path(c['source']).name}, chars {c['start']}-{c['end']}, score {c['score']:.3f}: {c['quote']!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ask", type=int, default=24, help="asks per concurrency level")
    parser.add_argument("--search", type=int, default=60, help="searches per concurrency level")
    args = parser.parse_args()
    from ragapp.config import Config

    work = Path(tempfile.mkdtemp(prefix="ragapp-serve-bench-"))
    (work / "kbs").mkdir()
    server = ApiServer(work / "kbs", "bench-key-0123456789abcdef", work / "serve.log", Config().cache_dir)
    try:
        _setup(server)
        print(f"\nragapp serve, samples knowledge base, default models; {machine()}")
        print("| requests | clients | n | p50 s | p95 s | throughput req/s | errors |\n|---|---|---|---|---|---|---|")
        for kind, total in (("search", args.search), ("ask", args.ask)):
            for clients in (1, 4, 8):
                lat, errors, wall = _level(server, kind, clients, total)
                q = statistics.quantiles(lat, n=20)
                print(f"| {kind} | {clients} | {len(lat)} | {statistics.median(lat):.2f} | {q[18]:.2f} | "
                      f"{len(lat) / wall:.2f} | {errors} |", flush=True)
        _transcript(server)
    finally:
        server.stop()


if __name__ == "__main__":
    main()

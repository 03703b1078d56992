"""The resident memory of `ragapp serve` while it answers, with glibc's malloc arenas as ragapp caps them
and as glibc leaves them: two servers side by side under the same questions, RSS every 20 s.

    python bench/server_memory.py [--minutes 9] [--clients 4]

Each server gets `--clients` clients asking the bundled samples' questions with 0-3 s between
answers (worker threads come and go, as in a real server). "capped" is ragapp's default (two arenas);
"glibc default" sets MALLOC_ARENA_MAX=16, glibc's own cap on two cores (eight per core). The run
stops by itself.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers.api_server import ApiServer, upload  # noqa: E402

from bench.common import ROOT, machine  # noqa: E402
from bench.serve import QUESTIONS  # noqa: E402
from ragapp.config import Config  # noqa: E402

VARIANTS = {"capped": {}, "glibc default": {"MALLOC_ARENA_MAX": "16"}}


def _rss_mb(pid: int) -> int:
    return int(dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))["VmRSS"].split()[0]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=9)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    servers: dict[str, ApiServer] = {}
    try:
        for name, env in VARIANTS.items():
            root = Path(tempfile.mkdtemp(prefix="ragapp-memory-"))
            servers[name] = server = ApiServer(root, "memory-bench-key-7c1d", root / "serve.log", Config().cache_dir, extra_env=env)
            with httpx.Client(base_url=server.url, headers=server.headers, timeout=600) as c:
                c.post("/v1/knowledge_bases", json={"name": "kb"}).raise_for_status()
                upload(c, "kb", sorted(p for p in (ROOT / "data" / "samples").rglob("*") if p.is_file()))
        print(f"# {machine()}; {args.clients} clients per server, {args.minutes:g} min")
        _run(servers, args.clients, args.minutes)
    finally:
        for server in servers.values():
            server.stop()


def _run(servers: dict[str, ApiServer], clients: int, minutes: float) -> None:
    end = time.monotonic() + minutes * 60

    def ask(server: ApiServer, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=600) as c:
            while time.monotonic() < end:
                c.post("/v1/chat/completions", json={"model": "kb", "messages": [{"role": "user", "content": rng.choice(QUESTIONS)}]})
                time.sleep(rng.uniform(0, 3))

    threads = [threading.Thread(target=ask, args=(s, n)) for s in servers.values() for n in range(clients)]
    for t in threads:
        t.start()
    start, rows = time.monotonic(), []
    print("| s | " + " | ".join(f"{name} RSS MB" for name in servers) + " |\n|---:|" + "---:|" * len(servers))
    while time.monotonic() < end:
        rows.append([_rss_mb(s.proc.pid) for s in servers.values()])
        print(f"| {time.monotonic() - start:.0f} | " + " | ".join(map(str, rows[-1])) + " |", flush=True)
        time.sleep(20)
    for t in threads:
        t.join()
    after = rows[len(rows) // 4:]  # past the first answers' warm-up
    for n, name in enumerate(servers):
        print(f"{name}: {after[0][n]} → {after[-1][n]} MB over the last three quarters (+{after[-1][n] - after[0][n]} MB)")


if __name__ == "__main__":
    main()

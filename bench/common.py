"""Helpers shared by the benchmarks: evaluation data from ../shared/eval, metrics, corpus folders."""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from ragapp.evaluate.scoring import contains_answer, normalise_answer  # noqa: E402,F401 - the benches' metric

ROOT = Path(__file__).resolve().parent.parent
EVAL = Path(os.environ.get("RAGAPP_EVAL", ROOT.parent / "shared" / "eval"))
OUT = ROOT / "bench" / "out"


def jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id → {doc id: relevance} from a BEIR qrels TSV."""
    out: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            q, d, s = line.rstrip("\n").split("\t")
            out.setdefault(q, {})[d] = int(s)
    return out


def write_corpus(rows: list[dict], folder: Path, exclude: set[str] = frozenset()) -> Path:
    """One .txt file per corpus row (title, blank line, text), named by its id; reused when present."""
    marker = folder / ".complete"
    if marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        if row["_id"] in exclude:
            continue
        body = (row.get("title", "") + "\n\n" + row["text"]).strip() + "\n"
        (folder / f"{row['_id']}.txt").write_text(body, encoding="utf-8")
    marker.write_text("ok")
    return folder


def doc_id(source: str) -> str:
    """Corpus id of a chunk's source file."""
    return Path(source).stem


def doc_ranking(sources: list[str]) -> list[str]:
    """Chunk sources in rank order → distinct document ids in rank order."""
    seen: dict[str, None] = {}
    for s in sources:
        seen.setdefault(doc_id(s), None)
    return list(seen)


def ndcg_at(ranking: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """nDCG@k with graded relevance (BEIR's definition)."""
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranking: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """Share of relevant documents found in the top k."""
    rel = {d for d, r in relevant.items() if r > 0}
    return len(rel & set(ranking[:k])) / len(rel) if rel else 0.0


def machine() -> str:
    """One line describing where and when the figures were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} vCPU {cpu}, Python {platform.python_version()}"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def search_latencies(rag, queries: list[str]) -> tuple[list[float], dict[str, list[float]]]:
    """Milliseconds of `RAG._search` per query (after one warm-up), and each stage's milliseconds."""
    import time

    rag.search(queries[0])
    total: list[float] = []
    stages: dict[str, list[float]] = {"embed_ms": [], "retrieve_ms": [], "rerank_ms": []}
    for q in queries:
        timings: dict[str, float] = {}
        t = time.perf_counter()
        rag._search(rag.index(), q, 10, timings)
        total.append((time.perf_counter() - t) * 1000)
        for k in stages:
            stages[k].append(timings[k])
    return total, stages


def run_cli(code: Path, args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak resident MB and stdout of `python -m ragapp.cli ARGS` run from `code`'s tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ragapp.cli", *args], cwd=code, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env={**env, "PYTHONPATH": str(code)}, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{args} from {code} exited {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024, out


def worktree(ref: str) -> Path:
    """A checkout of git commit `ref` under bench/out, to run its code beside this tree's."""
    where = OUT / f"worktree-{ref}"
    if not where.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), ref], check=True,
                       capture_output=True)
    return where

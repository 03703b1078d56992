"""Speed and memory on this machine. Prints the figures the README quotes.

    python bench/speed.py            # all parts
    python bench/speed.py bm25       # BM25 at 100k chunks: vectorised vs rank-bm25
    python bench/speed.py ingest     # ingest chunks/s by stage on SciFact documents
    python bench/speed.py search     # RAG.search latency p50/p95 on the SciFact index (no LLM)
    python bench/speed.py ask        # RAG.ask latency with the default LLM on the bundled samples
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EVAL, OUT, ROOT, jsonl, machine, peak_rss_mb, write_corpus  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bm25(args) -> None:
    from rank_bm25 import BM25Okapi

    from ragapp.bm25 import BM25Index

    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(50_000)])
    ranks = np.arange(1, len(vocab) + 1)
    p = 1 / ranks**1.1
    p /= p.sum()
    n = args.chunks
    docs = [list(vocab[rng.choice(len(vocab), size=int(rng.integers(50, 150)), p=p)]) for _ in range(n)]
    queries = [list(vocab[rng.choice(len(vocab), size=5, p=p)]) for _ in range(200)]
    t0 = time.perf_counter()
    index = BM25Index.build(docs)
    build = time.perf_counter() - t0
    times = []
    for q in queries:
        t = time.perf_counter()
        index.top_n(q, 50)
        times.append((time.perf_counter() - t) * 1000)
    ref = BM25Okapi(docs, k1=0.9, b=0.4)
    ref_times, max_diff = [], 0.0
    for q in queries[:10]:
        t = time.perf_counter()
        s = ref.get_scores(q)
        ref_times.append((time.perf_counter() - t) * 1000)
        max_diff = max(max_diff, float(np.abs(s - index.scores(q)).max()))
    print(f"\nBM25, {n:,} synthetic Zipf chunks, 5-term queries; {machine()}")
    print("| | build s | query p50 ms | query p95 ms |\n|---|---|---|---|")
    print(f"| ragapp sparse-matrix BM25 (top 50) | {build:.1f} | {_pct(times, 50):.2f} | {_pct(times, 95):.2f} |")
    print(f"| rank-bm25 get_scores (10 queries) | - | {_pct(ref_times, 50):.0f} | {_pct(ref_times, 95):.0f} |")
    print(f"max score difference vs rank-bm25: {max_diff:.2e}")


def ingest(args) -> None:
    from ragapp import RAG

    rows = jsonl(EVAL / "scifact" / "corpus.jsonl")[: args.docs]
    folder = write_corpus(rows, OUT / "corpora" / f"scifact-{args.docs}")
    tmp = Path(tempfile.mkdtemp(prefix="ragapp-speed-"))
    try:
        t0 = time.perf_counter()
        report = RAG(tmp / "index").ingest([folder])
        total = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    st = report.stage_seconds
    print(f"\nIngest {len(report.added)} SciFact documents → {report.chunks} chunks in {total:.1f} s "
          f"({report.chunks / total:.1f} chunks/s overall, incl. model load); {machine()}")
    print("| stage | seconds | chunks/s |\n|---|---|---|")
    for stage, secs in st.items():
        print(f"| {stage} | {secs:.2f} | {report.chunks / secs if secs else float('inf'):.0f} |")
    print(f"peak memory: {peak_rss_mb():.0f} MB")


def search(args) -> None:
    from ragapp import RAG

    path = OUT / "indexes" / "scifact"
    if not (path / "manifest.json").exists():
        print("build the SciFact index first: python bench/quality.py retrieval")
        return
    rag = RAG(path)
    rag.embedder.warm_up()
    t0 = time.perf_counter()
    rag.index()
    opened = time.perf_counter() - t0
    queries = [r["text"] for r in jsonl(EVAL / "scifact" / "queries.jsonl")][:200]
    rag.search(queries[0])
    times, stages = [], {"embed_ms": [], "retrieve_ms": [], "rerank_ms": []}
    for q in queries:
        timings: dict[str, float] = {}
        t = time.perf_counter()
        rag._search(q, 10, timings)
        times.append((time.perf_counter() - t) * 1000)
        for k in stages:
            stages[k].append(timings[k])
    print(f"\nRAG.search on the SciFact index ({len(rag.index()):,} chunks), {len(queries)} queries, 1 thread; {machine()}")
    print(f"index schema {rag.manifest().schema_version} opened in {opened:.2f} s (checksums, FAISS, BM25)")
    print(f"p50 {_pct(times, 50):.1f} ms, p95 {_pct(times, 95):.1f} ms; median by stage: "
          + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in stages.items()))
    print(f"peak memory: {peak_rss_mb():.0f} MB")


def ask(args) -> None:
    from ragapp import RAG

    tmp = Path(tempfile.mkdtemp(prefix="ragapp-ask-"))
    try:
        rag = RAG(tmp / "index")
        rag.ingest([ROOT / "data" / "samples"])
        t0 = time.perf_counter()
        rag.generator.warm_up()
        load = time.perf_counter() - t0
        questions = ["How long does Mars take to orbit the Sun?", "Which planet is the hottest?", "Who discovered Neptune?",
                     "长城的总长度是多少？", "西湖龙井属于哪一类茶？", "What does the enzyme RuBisCO do?"]
        times, first = [], []
        for q in questions:
            a = rag.ask(q)
            times.append(a.timings_ms["total_ms"])
            first.append(a.timings_ms.get("first_token_ms", a.timings_ms["total_ms"]))
            print(f"  {a.timings_ms['total_ms'] / 1000:5.1f} s  {q} → {a.text[:70]!r}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nRAG.ask with {rag.model_label} ({rag.config.generate.threads} threads); {machine()}")
    print(f"model load {load:.1f} s; ask p50 {_pct(times, 50) / 1000:.1f} s, first token p50 {_pct(first, 50) / 1000:.1f} s; "
          f"peak memory {peak_rss_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", default="all", choices=["bm25", "ingest", "search", "ask", "all"])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--docs", type=int, default=300)
    args = parser.parse_args()
    for part in (["bm25", "ingest", "search", "ask"] if args.part == "all" else [args.part]):
        globals()[part](args)


if __name__ == "__main__":
    main()

"""The local backend and Milvus Lite side by side in one run, on the same chunks and vectors.

    python bench/milvus.py            # quality, then speed and size
    python bench/milvus.py quality    # SciFact nDCG@10 (300 test queries), cmrc2018_dev Recall@5
    python bench/milvus.py speed      # write rows/s, ingest of 300 SciFact documents, query p50/p95, bytes per chunk

The Milvus collections are filled from bench/quality.py's and bench/calibrate.py's local indexes
(bench/out/indexes/scifact, cmrc2018_dev-calibration; built there first if missing) through the
Milvus backend's own writer, so both backends hold the same chunks, vectors and sentence vectors:
what differs is the store — Milvus's BM25 over its jieba analyzer against ragapp's BM25 (English
stemming, Chinese bigrams), Milvus's HNSW against ragapp's exact search. The ingest row runs the real
`RAG.ingest` on both.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EVAL, OUT, jsonl, machine, ndcg_at, qrels, search_latencies, write_corpus  # noqa: E402
from bench.quality import _qa_sets, build, rankings  # noqa: E402
from ragapp import RAG  # noqa: E402
from ragapp.config import Config, IndexConfig  # noqa: E402
from ragapp.index import Manifest  # noqa: E402

DB = OUT / "milvus" / "bench.db"


def milvus_twin(local: RAG, name: str, uri: Path = DB, bm25_terms: str = "ragapp") -> tuple[RAG, float | None]:
    """A RAG over a Milvus Lite collection holding the local index's rows (copied once), and the
    seconds the copy took (None when it was there already)."""
    config = local.config.with_(index=IndexConfig(backend="milvus", uri=str(uri), collection=name, bm25_terms=bm25_terms))
    twin = RAG(OUT / "indexes" / f"{name}-milvus", config, embedder=local.embedder)
    if twin.store.exists():
        return twin, None
    index, tokenize = local.index(), local.tokenizer()
    m = index.manifest
    t0 = time.perf_counter()
    claimed: set[str] = set()
    with twin.store.writer(m.embedding["dimension"], m.bm25, None) as writer:
        for row, chunk, text_hash in index.rows():
            if chunk.source not in claimed:
                claimed.add(chunk.source)
                writer.claim(chunk.source)
            writer.add(chunk, text_hash, tokenize(chunk.text), index.vector(row), index.chunk_sentence_vectors(row))
        writer.commit(Manifest(embedding=m.embedding, split=m.split, bm25=m.bm25, files=m.files), set(m.files))
    return twin, time.perf_counter() - t0


def _twins(local: RAG, name: str) -> dict[str, RAG]:
    """The local index and its Milvus Lite copies, BM25 over ragapp's terms and over jieba's."""
    rags = {"local": local}
    for terms in ("ragapp", "jieba"):
        rags[f"Milvus Lite, {terms} terms"], copied = milvus_twin(local, f"{name}_{terms}", bm25_terms=terms)
        if copied:
            print(f"[{name}] copied {local.index().manifest.chunks} chunks into Milvus Lite ({terms} terms) in {copied:.0f} s", flush=True)
    return rags


def _table(title: str, totals: dict[str, dict[str, float]], n: int) -> None:
    names = list(totals)
    print(f"\n{title}\n| method | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for method in totals["local"]:
        base = totals["local"][method] / n
        cells = [f"{base:.3f}"] + [f"{totals[b][method] / n:.3f} ({totals[b][method] / n - base:+.3f})" for b in names[1:]]
        print(f"| {method} | " + " | ".join(cells) + " |")


def quality(args) -> None:
    rows = jsonl(EVAL / "scifact" / "corpus.jsonl")
    queries = {r["_id"]: r["text"] for r in jsonl(EVAL / "scifact" / "queries.jsonl")}
    rel = qrels(EVAL / "scifact" / "qrels" / "test.tsv")
    rags = _twins(build("scifact", rows), "scifact")
    totals: dict[str, dict[str, float]] = {b: {} for b in rags}
    for qid, relevant in rel.items():
        for backend, rag in rags.items():
            for method, ranking in rankings(rag, queries[qid]).items():
                totals[backend][method] = totals[backend].get(method, 0.0) + ndcg_at(ranking, relevant, 10)
    _table(f"SciFact test ({len(rel)} queries), nDCG@10, same chunks and vectors; {machine()}", totals, len(rel))

    name, corpus, holdout, qa, _ = next(s for s in _qa_sets() if s[0] == "cmrc2018_dev")
    local = RAG(OUT / "indexes" / f"{name}-calibration", Config())
    rags = _twins(local, "cmrc2018_calibration")
    present = {Path(s).stem for s in local.index().manifest.files}
    asks = [r for r in qa if r["expect"] == "answer" and r["gold_pid"] in present]
    totals = {b: {} for b in rags}
    for r in asks:
        for backend, rag in rags.items():
            for method, ranking in rankings(rag, r["question"], 50).items():
                totals[backend][method] = totals[backend].get(method, 0) + (r["gold_pid"] in ranking[:5])
    _table(f"cmrc2018_dev Recall@5 of the gold paragraph ({len(asks)} answerable questions whose paragraph is in "
           f"bench/calibrate.py's index, {len(present)} paragraphs; local BM25 on bigrams)", totals, len(asks))


def _folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def speed(args) -> None:
    rows = jsonl(EVAL / "scifact" / "corpus.jsonl")
    local = build("scifact", rows)
    m = local.index().manifest
    scratch = OUT / "milvus" / "scratch.db"
    shutil.rmtree(scratch, ignore_errors=True)
    _, copy_s = milvus_twin(local, "scifact_copy", scratch)
    twin, _ = milvus_twin(local, "scifact_ragapp")
    print(f"\nMilvus Lite beside the local backend; {machine()}")
    print(f"write: {m.chunks} chunks with {m.sentences} sentence vectors copied through the Milvus writer in {copy_s:.0f} s "
          f"({m.chunks / copy_s:.0f} chunks/s, insert + flush + commit)")
    local_mb, milvus_mb = _folder_mb(local.path), _folder_mb(scratch)
    print(f"size: local index {local_mb:.0f} MB ({local_mb * 1e6 / m.chunks:.0f} B/chunk); Milvus Lite files "
          f"{milvus_mb:.0f} MB ({milvus_mb * 1e6 / m.chunks:.0f} B/chunk); {m.sentences / m.chunks:.2f} sentence vectors per chunk")
    shutil.rmtree(scratch, ignore_errors=True)

    folder = write_corpus(rows[: args.docs], OUT / "corpora" / f"scifact-{args.docs}")
    print(f"\n| ingest of {args.docs} SciFact documents (real RAG.ingest) | seconds | chunks | index-stage s |\n|---|---|---|---|")
    for backend in ("local", "milvus"):
        target = OUT / "milvus" / f"ingest-{backend}"
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(OUT / "milvus" / "ingest.db", ignore_errors=True)
        config = Config() if backend == "local" else Config().with_(index=IndexConfig(backend="milvus", uri=str(OUT / "milvus" / "ingest.db")))
        rag = RAG(target, config, embedder=local.embedder)
        report = rag.ingest([folder])
        print(f"| {backend} | {report.seconds:.1f} | {report.chunks} | {report.stage_seconds['index']:.1f} |", flush=True)

    questions = [r["text"] for r in jsonl(EVAL / "scifact" / "queries.jsonl")][: args.queries]
    print(f"\n| search, {len(questions)} SciFact queries, full index | p50 ms | p95 ms | retrieve p50 | rerank p50 |\n|---|---|---|---|---|")
    for backend, rag in (("local", local), ("milvus", twin)):
        total, stages = search_latencies(rag, questions)
        q = statistics.quantiles(total, n=20)
        print(f"| {backend} | {statistics.median(total):.1f} | {q[18]:.1f} | {statistics.median(stages['retrieve_ms']):.1f} | "
              f"{statistics.median(stages['rerank_ms']):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", default="all", choices=["quality", "speed", "all"])
    parser.add_argument("--docs", type=int, default=300, help="documents for the ingest row")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    if args.part in ("quality", "all"):
        quality(args)
    if args.part in ("speed", "all"):
        speed(args)


if __name__ == "__main__":
    main()

"""Retrieval and answer quality on ../shared/eval. Prints the figures docs/benchmarks.md quotes.

    python bench/quality.py retrieval   # SciFact: BM25, dense, fused, fused+rerank (nDCG@10, Recall@10)
    python bench/quality.py recall      # SQuAD extract + CMRC dev: Recall@5 of the gold paragraph
    python bench/quality.py tokenizers  # CMRC: jieba words vs character bigrams for BM25
    python bench/quality.py answers     # end to end: accuracy, refusals, false refusals (needs the LLM)
    python bench/quality.py all

Indexes are built through the real ingest path into bench/out/ and reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EVAL, OUT, contains_answer, doc_ranking, jsonl, machine, ndcg_at, qrels, recall_at, write_corpus  # noqa: E402
from ragapp import RAG  # noqa: E402
from ragapp.config import Config  # noqa: E402
from ragapp.query.retrieve import hybrid_search  # noqa: E402
from ragapp.records import Query  # noqa: E402
from ragapp.text import detect_language  # noqa: E402


def build(name: str, rows: list[dict], exclude: set[str] = frozenset(), config: Config | None = None) -> RAG:
    """An index over a corpus, built once through `RAG.ingest` (printing ingest figures the first time)."""
    folder = write_corpus(rows, OUT / "corpora" / name, exclude)
    rag = RAG(OUT / "indexes" / name, config or Config())
    if not (rag.path / "manifest.json").exists():
        t0 = time.perf_counter()
        report = rag.ingest([folder])
        secs = time.perf_counter() - t0
        st = report.stage_seconds
        print(f"[{name}] ingest: {len(report.added)} files, {report.chunks} chunks in {secs:.0f} s "
              f"({report.chunks / secs:.1f} chunks/s); stages s: " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()), flush=True)
    return rag


def add_embed_options(parser: argparse.ArgumentParser) -> None:
    """--dtype / --sentence-vectors: measure an embedder setting other than the default."""
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "int8"], default=None, help="embed.dtype to measure")
    parser.add_argument("--sentence-vectors", choices=["separate", "pooled"], default=None, help="embed.sentence_vectors")
    parser.add_argument("--query-runtime", choices=["auto", "numpy", "torch"], default=None,
                        help="embed.query_runtime (how questions are encoded; the index is the same)")


def embed_variant(args, **more: object) -> tuple[Config, str]:
    """The config with the asked embedder settings (and `more` overrides), and the suffix its indexes get."""
    embed = {f"embed__{k}": v for k, v in (("dtype", args.dtype), ("sentence_vectors", args.sentence_vectors)) if v}
    runtime = {"embed__query_runtime": args.query_runtime} if getattr(args, "query_runtime", None) else {}
    return Config.load(None, **embed, **runtime, **more), "".join(f"-{v}" for v in embed.values())


def rankings(rag: RAG, text: str, depth: int = 100) -> dict[str, list[str]]:
    """Document rankings by BM25 alone, dense alone, fused and fused+rerank for one query."""
    index = rag.index()
    vector = rag.embedder.embed_queries([text])[0]
    query = Query(text=text, language=detect_language(text), terms=tuple(rag.tokenizer()(text)), vector=vector)
    bm25 = [index.chunk(i).source for i, _ in index.bm25_top_n(query.terms, depth, text=text)]
    dense = [index.chunk(i).source for i, _ in index.dense_top_n(query.vector, depth)]
    fused_hits = hybrid_search(index, query, rag.config.retrieve, depth)
    reranked = rag.reranker().rerank(query, fused_hits, index)
    return {
        "bm25": doc_ranking(bm25),
        "dense": doc_ranking(dense),
        "fused": doc_ranking([h.chunk.source for h in fused_hits]),
        "fused+rerank": doc_ranking([h.chunk.source for h in reranked] + [h.chunk.source for h in fused_hits]),
    }


def retrieval(args) -> None:
    rows = jsonl(EVAL / "scifact" / "corpus.jsonl")
    queries = {r["_id"]: r["text"] for r in jsonl(EVAL / "scifact" / "queries.jsonl")}
    rel = qrels(EVAL / "scifact" / "qrels" / "test.tsv")
    config, suffix = embed_variant(args)
    rag = build("scifact" + suffix, rows, config=config)
    sums: dict[str, list[float]] = {}
    for qid, relevant in rel.items():
        for method, ranking in rankings(rag, queries[qid]).items():
            s = sums.setdefault(method, [0.0, 0.0])
            s[0] += ndcg_at(ranking, relevant, 10)
            s[1] += recall_at(ranking, relevant, 10)
    n = len(rel)
    print(f"\nSciFact test ({n} queries), {machine()}")
    print("| method | nDCG@10 | Recall@10 |\n|---|---|---|")
    for method, (nd, rc) in sums.items():
        print(f"| {method} | {nd / n:.3f} | {rc / n:.3f} |")


def _qa_sets():
    sq = EVAL / "squad2_extract"
    cm = EVAL / "cmrc2018_dev"
    return [
        ("squad2_extract", jsonl(sq / "corpus.jsonl"), set(json.loads((sq / "holdout.json").read_text())["heldout_paragraph_ids"]),
         jsonl(sq / "squad2_extract_qa_all.jsonl"), jsonl(sq / "squad2_extract_holdout_unanswerable.jsonl")),
        ("cmrc2018_dev", jsonl(cm / "corpus.jsonl"), set(json.loads((cm / "holdout.json").read_text())["heldout_paragraph_ids"]),
         jsonl(cm / "cmrc2018_dev_qa_all.jsonl"), jsonl(cm / "cmrc2018_dev_holdout_unanswerable.jsonl")),
    ]


def recall(args) -> None:
    print(f"\nRecall@5 of the gold paragraph, answerable questions, index without holdout paragraphs; {machine()}")
    print("| set | questions | BM25 | dense | fused | fused+rerank |\n|---|---|---|---|---|---|")
    for name, corpus, holdout, qa, _ in _qa_sets():
        config, suffix = embed_variant(args)
        rag = build(name + "-holdout" + suffix, corpus, holdout, config)
        asks = [r for r in qa if r["expect"] == "answer" and r["gold_pid"] not in holdout]
        hits = {m: 0 for m in ("bm25", "dense", "fused", "fused+rerank")}
        for r in asks:
            for m, ranking in rankings(rag, r["question"], 50).items():
                hits[m] += r["gold_pid"] in ranking[:5]
        print(f"| {name} | {len(asks)} | " + " | ".join(f"{hits[m] / len(asks):.3f}" for m in hits) + " |")


def tokenizers(args) -> None:
    from ragapp.index.bm25 import BM25Index
    from ragapp.terms import Tokenizer

    cm = EVAL / "cmrc2018_dev"
    corpus = jsonl(cm / "corpus.jsonl")
    qa = [r for r in jsonl(cm / "cmrc2018_dev_qa_all.jsonl") if r["expect"] == "answer"]
    ids = [r["_id"] for r in corpus]
    print("\nBM25 Chinese tokenisation on cmrc2018_dev (whole paragraphs, all answerable questions)")
    print("| tokenizer | Recall@1 | Recall@5 | MRR@10 | index s |\n|---|---|---|---|---|")
    for kind in ("jieba", "bigram"):
        tok = Tokenizer(kind)
        t0 = time.perf_counter()
        bm25 = BM25Index.build([tok(r["title"] + "\n" + r["text"]) for r in corpus])
        secs = time.perf_counter() - t0
        r1 = r5 = mrr = 0.0
        for r in qa:
            top = [ids[i] for i, _ in bm25.top_n(tok(r["question"]), 10)]
            r1 += r["gold_pid"] in top[:1]
            r5 += r["gold_pid"] in top[:5]
            mrr += 1 / (top.index(r["gold_pid"]) + 1) if r["gold_pid"] in top else 0
        n = len(qa)
        print(f"| {kind} | {r1 / n:.3f} | {r5 / n:.3f} | {mrr / n:.3f} | {secs:.1f} |")


def answer_sets(rng: random.Random, n: int, qa: list[dict], holdout: set[str], unanswerable: list[dict]) -> dict[str, list[dict]]:
    """The end-to-end questions of one set, by kind: answerable, holdout-unanswerable (and squad-impossible)."""
    answerable = [r for r in qa if r["expect"] == "answer" and r["gold_pid"] not in holdout]
    sets = {"answerable": rng.sample(answerable, min(n, len(answerable))),
            "holdout-unanswerable": rng.sample(unanswerable, min(n, len(unanswerable)))}
    impossible = [r for r in qa if r.get("squad_impossible")]
    if impossible:
        sets["squad-impossible"] = rng.sample(impossible, min(n, len(impossible)))
    return sets


def answers(args) -> None:
    rng = random.Random(args.seed)
    print(f"\nEnd to end, {args.n} answerable + {args.n} unanswerable per language (seed {args.seed}); {machine()}")
    rows = []
    prompt = {k: v for k, v in (("max_context_tokens", args.prompt_tokens), ("max_chunks", args.prompt_chunks)) if v}
    if args.keep_weak:
        prompt["drop_below_threshold"] = False
    if prompt:
        print(f"prompt settings: {prompt}")
    for name, corpus, holdout, qa, unanswerable in _qa_sets():
        config, suffix = embed_variant(args, **{f"prompt__{k}": v for k, v in prompt.items()})
        rag = build(name + "-holdout" + suffix, corpus, holdout, config)
        sets = answer_sets(rng, args.n, qa, holdout, unanswerable)
        for kind, items in sets.items():
            if args.only and name not in args.only and f"{name}:{kind}" not in args.only:
                continue
            correct = refused = 0
            latencies = []
            for r in items:
                a = rag.ask(r["question"])
                latencies.append(a.timings_ms.get("total_ms", 0))
                refused += not a.answered
                correct += a.answered and contains_answer(a.text, r["answers"])
                if args.verbose:
                    print(f"  {kind} {'R' if not a.answered else ('OK' if contains_answer(a.text, r['answers']) else 'XX')} "
                          f"{r['question'][:60]} -> {a.text[:80]!r} gold={(r['answers'] or ['-'])[0][:30]!r} {a.reason}", flush=True)
            n = len(items)
            rows.append((name, kind, n, correct / n, refused / n, sorted(latencies)[n // 2] / 1000))
            print(f"[{name}] {kind}: n={n} accuracy={correct / n:.3f} refused={refused / n:.3f}", flush=True)
    print(f"chat model: {rag.model_label}")
    print("| set | questions | n | answer accuracy | refusal rate | median s |\n|---|---|---|---|---|---|")
    for name, kind, n, acc, ref, med in rows:
        print(f"| {name} | {kind} | {n} | {acc:.3f} | {ref:.3f} | {med:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["retrieval", "recall", "tokenizers", "answers", "all"])
    parser.add_argument("--n", type=int, default=100, help="questions per set for `answers`")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--prompt-tokens", type=int, default=None, help="for `answers`: prompt.max_context_tokens")
    parser.add_argument("--prompt-chunks", type=int, default=None, help="for `answers`: prompt.max_chunks")
    parser.add_argument("--keep-weak", action="store_true",
                        help="for `answers`: keep passages scoring below the refusal threshold in the prompt")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--only", type=lambda v: set(v.split(",")), default=None,
                        help="for `answers`: sets or set:kind to run, e.g. cmrc2018_dev,squad2_extract:squad-impossible")
    add_embed_options(parser)
    args = parser.parse_args()
    from ragapp.runtime import keep_freed_memory

    keep_freed_memory()  # as the CLI does before an ingest
    parts = ["tokenizers", "recall", "retrieval", "answers"] if args.part == "all" else [args.part]
    for part in parts:
        globals()[part](args)


if __name__ == "__main__":
    main()

"""`ragapp ingest` as a user runs it: a new process per run, the whole process timed, this tree beside an
earlier commit in the same run. Prints the figures docs/benchmarks.md ("Ingest on the AMD machine") quotes.

    python bench/ingest_speed.py [--docs 1000] [--before REF] [--runs 2]   # whole process, stages, peak memory
    python bench/ingest_speed.py --folder DIR [--before REF]                # the same for any folder (e.g. PDFs)
    python bench/ingest_speed.py floor [--docs 1000]                        # tokens, and the int8 products alone

Runs alternate between the trees (this, before, this, before, ...) so a slower minute of the host falls on
both. `floor` counts the tokens both embedding passes read (chunks, and each distinct sentence on its own)
and times torch's int8 product at the model's shapes on 2 threads: the time the products alone take at
that rate, which no change outside them can go below.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import EVAL, OUT, jsonl, machine, run_cli, worktree, write_corpus  # noqa: E402


def _corpus(docs: int) -> Path:
    return write_corpus(jsonl(EVAL / "scifact" / "corpus.jsonl")[:docs], OUT / "corpora" / f"scifact-{docs}")


def whole(args) -> None:
    folder = Path(args.folder).resolve() if args.folder else _corpus(args.docs)
    what = f"the {sum(1 for p in folder.iterdir() if p.is_file())} files of {folder.name}" if args.folder else \
        f"{args.docs} SciFact abstracts"
    trees = {"this tree": ROOT, **({f"before ({args.before})": worktree(args.before)} if args.before else {})}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_"))}
    results: dict[str, list[tuple[float, float, dict]]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, code in trees.items():
            index = Path(tempfile.mkdtemp(prefix="ragapp-ingest-"))
            try:
                seconds, peak, out = run_cli(code, ["ingest", str(folder), "--index", str(index / "i"), "--json"], env)
            finally:
                shutil.rmtree(index, ignore_errors=True)
            results[name].append((seconds, peak, json.loads(out)))
            print(f"  {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    report = next(iter(results.values()))[0][2]
    print(f"\n`ragapp ingest` of {what} ({report['chunks']} chunks), new process each, "
          f"{args.runs} runs alternating; {machine()}")
    stages = list(report["stage_seconds"])
    print("| code | whole process s (median; runs) | " + " | ".join(f"{s} s" for s in stages) + " | chunks/s overall | peak MB |")
    print("|---|---|" + "---|" * len(stages) + "---|---|")
    for name, runs in results.items():
        secs = [r[0] for r in runs]
        med = statistics.median(secs)
        cells = [f"{statistics.median(r[2]['stage_seconds'][s] for r in runs):.1f}" for s in stages]
        print(f"| {name} | **{med:.1f}** ({', '.join(f'{s:.1f}' for s in secs)}) | " + " | ".join(cells) +
              f" | {report['chunks'] / med:.1f} | {max(r[1] for r in runs):.0f} |")


def floor(args) -> None:
    import torch

    from ragapp.config import Config
    from ragapp.embed import SentenceTransformerEmbedder
    from ragapp.records import Page
    from ragapp.split import split_page

    config = Config()
    embedder = SentenceTransformerEmbedder(config.embed, config.cache_dir)
    chunks = []
    for path in sorted(_corpus(args.docs).glob("*.txt")):
        page = Page(text=path.read_text(encoding="utf-8"), source=path.name, page=None)
        chunks += split_page(page, config.split.chunk_size, config.split.chunk_overlap, embedder.count_tokens)
    encoder = embedder._passage_encoder()
    assert encoder is not None, "the default embedder should encode passages packed"
    prefix = embedder.spec.passage_prefix
    sentences = list(dict.fromkeys(c.text[a:b] for c in chunks for a, b in c.sentences))
    tokens = {name: sum(map(len, encoder.token_ids([prefix + t for t in texts])))
              for name, texts in (("chunks", [c.text for c in chunks]), ("sentences", sentences))}
    torch.set_num_threads(2)
    rate = _int8_rate(torch)
    per_token = 2 * sum(k * n for k, n in ((384, 1152), (384, 384), (384, 1536), (1536, 384))) * 12  # e5-small
    print(f"\nThe products alone, {args.docs} SciFact abstracts; {machine()}")
    print(f"int8 products at the model's shapes, 2 threads: {rate:.0f} GOP/s; {per_token / 1e6:.1f} MOP per token")
    print("| pass | texts | tokens | products alone s |\n|---|---|---|---|")
    for name, count in tokens.items():
        n = len(chunks) if name == "chunks" else len(sentences)
        print(f"| {name} | {n:,} | {count:,} | {count * per_token / rate / 1e9:.1f} |")
    total = sum(tokens.values())
    print(f"| both | | {total:,} | **{total * per_token / rate / 1e9:.1f}** |")


def _int8_rate(torch) -> float:
    """GOP/s of `torch._int_mm` over one layer's four products at 2,048 rows (the packed batch)."""
    shapes = [(384, 1152), (384, 384), (384, 1536), (1536, 384)]
    pairs = [(torch.randint(-127, 127, (2048, k), dtype=torch.int8), torch.randint(-127, 127, (k, n), dtype=torch.int8))
             for k, n in shapes]
    ops = sum(2 * 2048 * k * n for k, n in shapes)
    for a, b in pairs:
        torch._int_mm(a, b)
    best = float("inf")
    for _ in range(20):
        t = time.perf_counter()
        for a, b in pairs:
            torch._int_mm(a, b)
        best = min(best, time.perf_counter() - t)
    return ops / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", default="whole", choices=["whole", "floor"])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--folder", help="ingest this folder instead of SciFact abstracts")
    parser.add_argument("--before", help="also run the code of this git commit, alternating")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    {"whole": whole, "floor": floor}[args.part](args)


if __name__ == "__main__":
    main()

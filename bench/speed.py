"""Speed and memory on this machine. Prints the figures docs/benchmarks.md quotes.

    python bench/speed.py            # all parts
    python bench/speed.py bm25       # BM25 at 100k chunks: vectorised vs rank-bm25
    python bench/speed.py ingest     # ingest chunks/s by stage on SciFact documents, embedder settings side by side
    python bench/speed.py split      # the split stage alone on 20 MB of text: token counting before and after
    python bench/speed.py search     # RAG.search latency p50/p95 on the SciFact index (no LLM)
    python bench/speed.py threads    # a query's encode on 1 vs 2 threads, idle and beside busy processes
    python bench/speed.py encode     # the embedder in float32 and int8: texts/s, query encode, cosine to float32
    python bench/speed.py ask        # RAG.ask latency with the default LLM on the bundled samples
    python bench/speed.py formats    # ingest speed per format (the same SciFact abstracts as docx, pptx, xlsx, ...)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EVAL, OUT, ROOT, jsonl, machine, peak_rss_mb, search_latencies, write_corpus  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bm25(args) -> None:
    from rank_bm25 import BM25Okapi

    from ragapp.index.bm25 import BM25Index

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


# Embedder settings side by side: ragapp's first default (bfloat16, sentences in a second pass) and each
# change on its own, then both.
_INGEST_VARIANTS = [("bfloat16", "separate"), ("float32", "separate"), ("int8", "separate"),
                    ("float32", "pooled"), ("int8", "pooled")]


def _ingest_once(folder: Path, dtype: str, sentences: str):
    from dataclasses import replace

    from ragapp import RAG
    from ragapp.config import Config

    config = Config()
    config = config.with_(embed=replace(config.embed, dtype=dtype, sentence_vectors=sentences))
    tmp = Path(tempfile.mkdtemp(prefix="ragapp-speed-"))
    try:
        t0 = time.perf_counter()
        report = RAG(tmp / "index", config).ingest([folder])
        return report, time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ingest(args) -> None:
    rows = jsonl(EVAL / "scifact" / "corpus.jsonl")[: args.docs]
    folder = write_corpus(rows, OUT / "corpora" / f"scifact-{args.docs}")
    results = [(dtype, sents, *_ingest_once(folder, dtype, sents)) for dtype, sents in _INGEST_VARIANTS]
    stages = list(results[0][2].stage_seconds)
    print(f"\nIngest {len(results[0][2].added)} SciFact documents → {results[0][2].chunks} chunks, each embedder "
          f"setting in turn (chunks/s; overall includes model load); {machine()}")
    print("| embed.dtype | sentence_vectors | overall | " + " | ".join(stages) + " |")
    print("|---|---|---|" + "---|" * len(stages))
    for dtype, sents, report, total in results:
        cells = [f"{report.chunks / report.stage_seconds[s]:.1f}" if report.stage_seconds[s] else "-" for s in stages]
        print(f"| {dtype} | {sents} | {report.chunks / total:.1f} ({total:.0f} s) | " + " | ".join(cells) + " |")
    print(f"peak memory: {peak_rss_mb():.0f} MB")


def split(args) -> None:
    """The split stage alone on large text: the tokenizer call before issue 15, the Rust batch call,
    and the batch call behind the count cache; distinct SciFact text and one repeated paragraph."""
    from ragapp.config import Config
    from ragapp.embed import SentenceTransformerEmbedder
    from ragapp.records import Page
    from ragapp.split import split_page

    config = Config()
    embedder = SentenceTransformerEmbedder(config.embed, config.cache_dir)
    embedder.count_tokens(["warm"])
    tok = embedder._tokenizer

    def before(texts):
        return [len(x) for x in tok(list(texts), add_special_tokens=False, truncation=False)["input_ids"]]

    rows = jsonl(EVAL / "scifact" / "corpus.jsonl")
    distinct = "\n\n".join(r["title"] + ". " + r["text"] for r in rows)[: args.split_mb << 20]
    repeated = ("\n\n".join(r["title"] + ". " + r["text"] for r in rows[:3]) + "\n\n") * ((args.split_mb << 20) // 4000)
    print(f"\nSplit stage alone, {args.split_mb} MB of text as one page, chunk_size {config.split.chunk_size}; {machine()}")
    print("| text | tokenizer call (before) s | Rust batch call s | batch call + count cache s | chunks |\n|---|---|---|---|---|")
    for name, text in (("distinct SciFact abstracts", distinct), ("three abstracts repeated", repeated)):
        page = Page(text=text, source="big.txt", page=None)
        cells = []
        for count in (before, embedder._count, embedder.count_tokens):
            embedder._counted = {}
            t0 = time.perf_counter()
            chunks = split_page(page, config.split.chunk_size, config.split.chunk_overlap, count)
            cells.append(time.perf_counter() - t0)
        print(f"| {name} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {len(chunks):,} |", flush=True)


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
    times, stages = search_latencies(rag, queries)
    print(f"\nRAG.search on the SciFact index ({len(rag.index()):,} chunks), {len(queries)} queries, 1 thread; {machine()}")
    print(f"index schema {rag.manifest().schema_version} opened in {opened:.2f} s (checksums, FAISS, BM25)")
    print(f"p50 {_pct(times, 50):.1f} ms, p95 {_pct(times, 95):.1f} ms; median by stage: "
          + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in stages.items()))
    print(f"peak memory: {peak_rss_mb():.0f} MB")


def encode(args) -> None:
    """float32 and int8 side by side on the same SciFact texts: chunks and their distinct sentences at the
    ingest threads, single queries at 1 thread, and how far int8's vectors are from float32's."""
    from dataclasses import replace

    from ragapp import RAG
    from ragapp.embed import SentenceTransformerEmbedder

    rag = RAG(OUT / "indexes" / "scifact")
    chunks, sentences = [], []
    for row, chunk, _ in rag.index().rows():
        if row >= 300:
            break
        chunks.append(chunk.text)
        sentences += [chunk.text[a:b] for a, b in chunk.sentences]
    sentences = list(dict.fromkeys(sentences))
    queries = [r["text"] for r in jsonl(EVAL / "scifact" / "queries.jsonl")][:200]
    threads = rag.config.ingest_threads
    print(f"\nEmbedder arithmetic, {len(chunks)} SciFact chunks and their {len(sentences):,} sentences at {threads} "
          f"threads, {len(queries)} queries one at a time at 1 thread; {machine()}")
    print("| embed.dtype | chunks/s | sentences/s | query p50 / p95 ms | lowest cosine to float32: chunks / sentences / queries |")
    print("|---|---|---|---|---|")
    reference: list[np.ndarray] = []
    for dtype in ("float32", "int8"):
        embedder = SentenceTransformerEmbedder(replace(rag.config.embed, dtype=dtype), rag.config.cache_dir, threads=1)
        prefix = embedder.spec.passage_prefix
        embedder._encode(chunks[:16], prefix, threads)  # warm
        rates, vectors = [], []
        for texts in (chunks, sentences):
            t = time.perf_counter()
            vectors.append(embedder._encode(texts, prefix, threads))
            rates.append(len(texts) / (time.perf_counter() - t))
        ms, asked = [], []
        for q in queries:
            t = time.perf_counter()
            asked.append(embedder.embed_queries([q]))
            ms.append((time.perf_counter() - t) * 1000)
        vectors.append(np.concatenate(asked))
        reference = reference or vectors
        cosines = " / ".join(f"{float((a * b).sum(axis=1).min()):.4f}" for a, b in zip(vectors, reference))
        print(f"| {dtype} | {rates[0]:.1f} | {rates[1]:.1f} | {_pct(ms, 50):.1f} / {_pct(ms, 95):.1f} | {cosines} |", flush=True)
    _products(threads)


def _products(threads: int) -> None:
    """The matrix products alone at e5-small's shapes (4,096 token rows): float32 against torch._int_mm."""
    import torch

    torch.set_num_threads(threads)
    print(f"\nMatrix products at the model's shapes, 4,096 rows, {threads} threads (GFLOP/s float32 | GOP/s int8)")
    for k, n in ((384, 1152), (384, 1536), (1536, 384)):
        a, w = torch.randn(4096, k), torch.randn(k, n)
        qa, qw = torch.randint(-127, 128, (4096, k), dtype=torch.int8), torch.randint(-127, 128, (k, n), dtype=torch.int8)
        rates = []
        for product in (lambda: a @ w, lambda: torch._int_mm(qa, qw)):
            product()
            t = time.perf_counter()
            for _ in range(20):
                product()
            rates.append(2 * 4096 * k * n * 20 / (time.perf_counter() - t) / 1e9)
        print(f"{k} -> {n}: {rates[0]:.0f} | {rates[1]:.0f}")


def _busy() -> subprocess.Popen:
    """A process keeping one vCPU busy (single-threaded matrix products), as another job would."""
    one = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return subprocess.Popen([sys.executable, "-c", "import numpy as np\nx = np.random.rand(2000, 2000)\nwhile True: x @ x"],
                            env={**os.environ, **one})


def threads(args) -> None:
    """Why queries keep 1 thread: 2 are faster on an idle machine and far slower beside other work."""
    from ragapp import RAG

    embedder = RAG(OUT / "indexes" / "scifact").embedder
    queries = [r["text"] for r in jsonl(EVAL / "scifact" / "queries.jsonl")][:100]

    def timed(n: int) -> str:
        embedder._threads = n
        for q in queries[:3]:
            embedder.embed_queries([q])
        ms = []
        for q in queries:
            t = time.perf_counter()
            embedder.embed_queries([q])
            ms.append((time.perf_counter() - t) * 1000)
        return f"{_pct(ms, 50):.1f} / {_pct(ms, 95):.1f}"

    print(f"\nQuery encode p50 / p95 ms, {len(queries)} SciFact queries; {machine()}")
    print("| other processes busy | 1 thread | 2 threads |\n|---|---|---|")
    others = []
    try:
        for busy in range(3):
            if busy:
                others.append(_busy())
                time.sleep(2)
            print(f"| {busy} | {timed(1)} | {timed(2)} |", flush=True)
    finally:
        for other in others:
            other.kill()


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


def _format_folders(rows: list[dict], root: Path) -> dict[str, Path]:
    """The same abstracts written in every format, five per file (one per page, slide, chapter or row)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import csv
    import zipfile
    from email.message import EmailMessage

    from docx import Document
    from helpers.pdfwriter import write_pdf
    from openpyxl import Workbook
    from pptx import Presentation

    groups = [rows[i : i + 5] for i in range(0, len(rows), 5)]
    folders = {f: root / f for f in ("pdf", "docx", "pptx", "xlsx", "csv", "epub", "eml")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for n, group in enumerate(groups):
        texts = [f"{r['title']}. {r['text']}" for r in group]
        latin = [t.encode("latin-1", "replace").decode("latin-1") for t in texts]  # the test PDF writer's fonts
        write_pdf(folders["pdf"] / f"{n}.pdf", [[t[i : i + 90] for i in range(0, len(t), 90)] for t in latin])
        doc = Document()
        for t in texts:
            doc.add_paragraph(t)
        doc.save(folders["docx"] / f"{n}.docx")
        deck = Presentation()
        for r in group:
            slide = deck.slides.add_slide(deck.slide_layouts[1])
            slide.shapes.title.text, slide.placeholders[1].text = r["title"], r["text"]
        deck.save(folders["pptx"] / f"{n}.pptx")
        book = Workbook()
        book.active.append(["title", "abstract"])
        for r in group:
            book.active.append([r["title"], r["text"]])
        book.save(folders["xlsx"] / f"{n}.xlsx")
        with open(folders["csv"] / f"{n}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([["title", "abstract"]] + [[r["title"], r["text"]] for r in group])
        with zipfile.ZipFile(folders["epub"] / f"{n}.epub", "w") as z:
            z.writestr("META-INF/container.xml", '<container><rootfiles><rootfile full-path="c.opf"/></rootfiles></container>')
            z.writestr("c.opf", "<package><manifest>" + "".join(f'<item id="i{k}" href="{k}.xhtml"/>' for k in range(len(texts)))
                       + "</manifest><spine>" + "".join(f'<itemref idref="i{k}"/>' for k in range(len(texts))) + "</spine></package>")
            for k, t in enumerate(texts):
                z.writestr(f"{k}.xhtml", f"<html><body><p>{t}</p></body></html>")
        msg = EmailMessage()
        msg["Subject"], msg["From"] = group[0]["title"][:60], "lab@example.com"
        msg.set_content("\n\n".join(texts))
        (folders["eml"] / f"{n}.eml").write_bytes(bytes(msg))
    return folders


def formats(args) -> None:
    """Ingest speed per format: the parse stage is the format's own cost, the rest is split + embed."""
    from ragapp import RAG

    rows = jsonl(EVAL / "scifact" / "corpus.jsonl")[: args.format_docs]
    tmp = Path(tempfile.mkdtemp(prefix="ragapp-formats-"))
    try:
        folders = _format_folders(rows, tmp / "docs")
        rag_embedder = None
        print(f"\nIngest per format: {len(rows)} SciFact abstracts, 5 per file; {machine()}")
        print("| format | files | pages | chunks | parse s | total s | files/s | pages/s (parse only) |\n|---|---|---|---|---|---|---|---|")
        for name, folder in folders.items():
            rag = RAG(tmp / f"index-{name}", embedder=rag_embedder)
            rag_embedder = rag.embedder  # loaded once, shared by every format's ingest
            t0 = time.perf_counter()
            report = rag.ingest([folder])
            total = time.perf_counter() - t0
            pages = len({(c.source, c.page) for _, c, _ in rag.index().rows()})
            parse = report.stage_seconds.get("parse", 0.0)
            print(f"| {name} | {len(report.added)} | {pages} | {report.chunks} | {parse:.1f} | {total:.1f} | "
                  f"{len(report.added) / total:.2f} | {pages / parse if parse else float('inf'):.1f} |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", default="all", choices=["bm25", "ingest", "split", "search", "threads", "encode", "ask", "formats", "all"])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--split-mb", type=int, default=20, help="MB of text in the split part")
    parser.add_argument("--format-docs", type=int, default=50, help="abstracts per format in the formats part")
    args = parser.parse_args()
    for part in (["bm25", "ingest", "split", "search", "threads", "encode", "ask", "formats"] if args.part == "all" else [args.part]):
        globals()[part](args)


if __name__ == "__main__":
    main()

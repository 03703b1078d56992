"""An index of a million chunks: how it is made, how fast it opens and answers, and dense search
exact vs PQ codes re-scored, BM25 numpy vs compiled. Prints the figures docs/benchmarks.md quotes.

    python bench/scale.py build --chunks 1000000   # once: writes bench/out/indexes/synthetic-1000000
    python bench/scale.py open                     # open time and resident memory, in a fresh process
    python bench/scale.py search                   # RAG.search p50/p95 (query encode included), BM25 alone
    python bench/scale.py recall                   # PQ + re-score vs exact: recall on real SciFact vectors and on this index

How the synthetic index is made: its text and vectors are real material recombined. Every sentence
of the SciFact index (bench/out/indexes/scifact, built by bench/quality.py retrieval) keeps its own
stored sentence vector; a synthetic chunk is 3-5 sentences drawn at random, its vector the normalised
sum of theirs, its BM25 terms those of its sentences. So BM25 sees a real vocabulary with real
frequencies, and dense search sees vectors with real structure (random vectors are a useless recall
test for ANN indexes), at any size. The chunks go through ragapp's own GenerationWriter and commit,
so the files, the IVF and the manifest are exactly what an ingest writes.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EVAL, OUT, jsonl, machine, search_latencies  # noqa: E402

SOURCE = OUT / "indexes" / "scifact"
SOURCES_PER_FILE = 100  # synthetic chunks per synthetic file in the manifest


def _path(chunks: int) -> Path:
    return OUT / "indexes" / f"synthetic-{chunks}"


def _sentences(tokenizer) -> tuple[list[str], np.ndarray, list[list[str]]]:
    """Every distinct sentence of the SciFact index, its stored vector and its BM25 terms."""
    from ragapp.index.reader import LocalReader

    index = LocalReader.open(SOURCE)
    texts, rows = {}, []
    for row, chunk, _ in index.rows():
        vectors = index.chunk_sentence_vectors(row)
        for (a, b), v in zip(chunk.sentences, vectors):
            text = chunk.text[a:b]
            if text not in texts:
                texts[text] = len(texts)
                rows.append(v)
    sentences = list(texts)
    return sentences, np.asarray(rows, dtype=np.float32), tokenizer.batch(sentences)


def build(args) -> None:
    from ragapp import RAG
    from ragapp.index.manifest import FileRecord, Manifest, text_hash
    from ragapp.index.writer import GenerationWriter
    from ragapp.records import Chunk

    path = _path(args.chunks)
    if (path / "manifest.json").exists():
        print(f"{path} exists")
        return
    rag = RAG(path)
    sentences, vectors, terms = _sentences(rag.tokenizer())
    rng = np.random.default_rng(7)
    settings = rag.settings()
    t0 = time.perf_counter()
    with GenerationWriter(path, vectors.shape[1], settings["bm25"]) as writer:
        for i in range(args.chunks):
            picks = rng.integers(0, len(sentences), rng.integers(3, 6))
            text, spans = "", []
            for p in picks:
                a = len(text) + (1 if text else 0)
                text = (text + " " if text else "") + sentences[p]
                spans.append((a, len(text)))
            vector = vectors[picks].sum(axis=0)
            source = f"synthetic/{i // SOURCES_PER_FILE:06d}.txt"
            chunk = Chunk(id=f"{source}#{i % SOURCES_PER_FILE}", text=text, source=source, page=1, start=0,
                          end=len(text), sentences=tuple(spans))
            writer.add(chunk, text_hash(text), [t for p in picks for t in terms[p]], vector / np.linalg.norm(vector),
                       vectors[picks])
            if i % 100_000 == 0:
                print(f"  {i:,} chunks, {time.perf_counter() - t0:.0f} s", flush=True)
        files = {f"synthetic/{f:06d}.txt": FileRecord("0" * 64, 0, SOURCES_PER_FILE, time.time())
                 for f in range(args.chunks // SOURCES_PER_FILE)}
        t1 = time.perf_counter()
        manifest = writer.commit(Manifest(**settings, files=files))
    print(f"built {args.chunks:,} chunks from {len(sentences):,} real SciFact sentences in {time.perf_counter() - t0:.0f} s "
          f"(commit incl. BM25 weights and dense index {manifest.dense}: {time.perf_counter() - t1:.0f} s); "
          f"{sum(f.stat().st_size for f in (path / manifest.directory).iterdir()) / 1e9:.2f} GB on disk")


def _rss_mb(field: str = "VmRSS:") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return 0.0


def _open_child(path: str) -> None:
    import faiss  # noqa: F401  (libraries a process has loaded anyway, outside the figure)

    import ragapp.index.reader as reader

    before = _rss_mb()
    t0 = time.perf_counter()
    index = reader.LocalReader.open(path)
    secs = time.perf_counter() - t0
    print(f"{len(index):,} chunks: opened in {secs:.2f} s; resident {_rss_mb():.0f} MB "
          f"(+{_rss_mb() - before:.0f} MB for the index; process peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


def open_(args) -> None:
    path = _path(args.chunks)
    print(f"\nOpening {path.name}, three fresh processes one after the other (LocalReader.open with its checks; "
          f"the embedder is not loaded); {machine()}")
    for _ in range(3):
        subprocess.run([sys.executable, __file__, "_open", str(path)], check=True)


def search(args) -> None:
    from ragapp import RAG

    rag = RAG(_path(args.chunks))
    rag.embedder.warm_up()
    index = rag.index()
    queries = [r["text"] for r in jsonl(EVAL / "scifact" / "queries.jsonl")][:200]
    tok = rag.tokenizer()
    import faiss

    total, stages = search_latencies(rag, queries)
    bm25, bm25_numpy, dense, exact = [], [], [], []
    for q in queries:
        terms = tok(q)
        t = time.perf_counter()
        index.bm25_top_n(terms, 100)
        bm25.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        _numpy_top(index.bm25.scores(terms), 100)  # what ragapp did before the compiled kernel
        bm25_numpy.append((time.perf_counter() - t) * 1000)
        vec = rag.embedder.embed_queries([q])[0]
        t = time.perf_counter()
        index.dense_top_n(vec, 100)
        dense.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        faiss.knn(vec[None], index.dense.vectors, 100, metric=faiss.METRIC_INNER_PRODUCT)
        exact.append((time.perf_counter() - t) * 1000)
    pct = lambda v: f"p50 {np.percentile(v, 50):.1f} ms, p95 {np.percentile(v, 95):.1f} ms"  # noqa: E731
    print(f"\nRAG.search on {len(index):,} chunks ({index.manifest.dense or 'exact'}), {len(queries)} SciFact queries, "
          f"1 thread; {machine()}")
    print(f"search {pct(total)} (query encode, BM25 + dense, fusion, rerank); "
          + ", ".join(f"{k} {np.median(v):.1f}" for k, v in stages.items()))
    print(f"BM25 top-100 alone: compiled kernel {pct(bm25)}; numpy bincount + argpartition {pct(bm25_numpy)}")
    print(f"dense top-100 alone: {pct(dense)}; exact over the memory map {pct(exact)}")
    print(f"resident {_rss_mb():.0f} MB with the embedder loaded, {_rss_mb('RssAnon:'):.0f} MB of it the process's own "
          "(the rest is index file pages, which the kernel can drop)")


def _numpy_top(scores: np.ndarray, n: int) -> np.ndarray:
    positive = np.flatnonzero(scores > 0)
    if positive.size > n:
        positive = positive[np.argpartition(-scores[positive], n - 1)[:n]]
    return positive[np.argsort(-scores[positive], kind="stable")]


def _recall(base: np.ndarray, queries: np.ndarray, label: str, folder: Path) -> None:
    """Recall@10 and @50 of ragapp's PQ search against exact search, for several re-score depths."""
    import faiss

    from ragapp.index import dense

    exact = faiss.knn(queries, base, 50, metric=faiss.METRIC_INNER_PRODUCT)[1]
    spool = dense.dense_spool(folder, base.shape[1])
    for a in range(0, len(base), 1 << 16):
        spool.append(base[a : a + (1 << 16)])
    spool.finish()
    t = time.perf_counter()
    shape = {"type": "pq", "m": base.shape[1] // 2, "nbits": dense.PQ_BITS}
    dense.write_pq(folder, base.shape[1], len(base), shape)
    built = time.perf_counter() - t
    vectors = dense.DenseVectors(folder, base.shape[1], len(base), shape)
    cells = []
    for per, floor in ((1, 0), (10, 0), (dense.PQ_RESCORE, dense.PQ_RESCORE_MIN), (80, 0)):
        dense.PQ_RESCORE, dense.PQ_RESCORE_MIN, keep = per, floor, (dense.PQ_RESCORE, dense.PQ_RESCORE_MIN)
        times, found = [], []
        for q in queries:
            t = time.perf_counter()
            found.append([r for r, _ in vectors.top_n(q, 50)])
            times.append((time.perf_counter() - t) * 1000)
        dense.PQ_RESCORE, dense.PQ_RESCORE_MIN = keep
        r10 = np.mean([len(set(f[:10]) & set(e[:10])) / 10 for f, e in zip(found, exact)])
        r50 = np.mean([len(set(f) & set(e)) / 50 for f, e in zip(found, exact)])
        cells.append(f"{r10:.3f} / {r50:.3f} ({np.median(times):.1f} ms)")
    print(f"| {label} | {len(base):,} | {built:.0f} s | " + " | ".join(cells) + " |")
    for name in (dense.FILE, *dense.PQ_FILES):
        (folder / name).unlink()


def recall(args) -> None:
    import tempfile

    import faiss

    from ragapp import RAG
    from ragapp.index import dense
    from ragapp.index.reader import LocalReader

    faiss.omp_set_num_threads(1)
    rag = RAG(SOURCE)
    queries = rag.embedder.embed_queries([r["text"] for r in jsonl(EVAL / "scifact" / "queries.jsonl")][:300])
    source = LocalReader.open(SOURCE)
    real = np.concatenate([np.asarray(source.dense.vectors), np.asarray(source.sentence_vectors, dtype=np.float32)])
    print(f"\nPQ codes (4 bits, 2 dimensions a code) + exact re-score against exact search, top 50 of {len(queries)} "
          f"SciFact queries; cells: recall@10 / recall@50 (median ms a query, 1 thread) by candidates re-scored; {machine()}")
    print(f"| vectors | N | codes built in | 1 per result | 10 per result | {dense.PQ_RESCORE} per result, at least "
          f"{dense.PQ_RESCORE_MIN} (default) | 80 per result |\n|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        _recall(np.ascontiguousarray(real), queries, "real: SciFact chunk and sentence vectors", Path(tmp))
        path = _path(args.chunks)
        if (path / "manifest.json").exists():
            big = LocalReader.open(path)
            _recall(np.ascontiguousarray(big.dense.vectors), queries, f"synthetic ({path.name})", Path(tmp))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_open":
        _open_child(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["build", "open", "search", "recall"])
    parser.add_argument("--chunks", type=int, default=1_000_000)
    args = parser.parse_args()
    {"build": build, "open": open_, "search": search, "recall": recall}[args.part](args)


if __name__ == "__main__":
    main()

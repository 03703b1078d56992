"""An index of a million chunks: how it is made, how fast it opens and answers, and dense search
exact vs IVF. Prints the figures the README quotes.

    python bench/scale.py build --chunks 1000000   # once: writes bench/out/indexes/synthetic-1000000
    python bench/scale.py open                     # open time and resident memory, in a fresh process
    python bench/scale.py search                   # RAG.search p50/p95 (query encode included), BM25 alone
    python bench/scale.py recall                   # IVF vs exact recall@10 on real SciFact vectors and on this index

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
    from ragapp.index.reader import Index

    index = Index.open(SOURCE)
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
    from ragapp.types import Chunk

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
          f"(commit incl. BM25 weights and IVF {manifest.dense}: {time.perf_counter() - t1:.0f} s); "
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
    index = reader.Index.open(path)
    secs = time.perf_counter() - t0
    print(f"{len(index):,} chunks: opened in {secs:.2f} s; resident {_rss_mb():.0f} MB "
          f"(+{_rss_mb() - before:.0f} MB for the index; process peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


def open_(args) -> None:
    path = _path(args.chunks)
    print(f"\nOpening {path.name}, three fresh processes one after the other (Index.open with its checks; the embedder is not loaded); {machine()}")
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
    bm25, dense, exact = [], [], []
    for q in queries:
        t = time.perf_counter()
        index.bm25_top_n(tok(q), 100)
        bm25.append((time.perf_counter() - t) * 1000)
        vec = rag.embedder.embed_queries([q])[0]
        t = time.perf_counter()
        index.dense_top_n(vec, 100)
        dense.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        faiss.knn(vec[None], index.dense.vectors, 100, metric=faiss.METRIC_INNER_PRODUCT)
        exact.append((time.perf_counter() - t) * 1000)
    pct = lambda v, q: float(np.percentile(v, q))  # noqa: E731
    print(f"\nRAG.search on {len(index):,} chunks ({index.manifest.dense or 'exact'}), {len(queries)} SciFact queries, "
          f"1 thread; {machine()}")
    print(f"search p50 {pct(total, 50):.1f} ms, p95 {pct(total, 95):.1f} ms (query encode, BM25 + dense, fusion, rerank); "
          + ", ".join(f"{k} {np.median(v):.1f}" for k, v in stages.items()))
    print(f"BM25 top-100 alone p50 {pct(bm25, 50):.1f} ms, p95 {pct(bm25, 95):.1f} ms; dense top-100 alone p50 "
          f"{pct(dense, 50):.1f} ms, p95 {pct(dense, 95):.1f} ms (exact over the memory map: p50 {pct(exact, 50):.1f} ms, "
          f"p95 {pct(exact, 95):.1f} ms); resident {_rss_mb():.0f} MB with the embedder loaded, {_rss_mb('RssAnon:'):.0f} MB "
          "of it the process's own (the rest is index file pages, which the kernel can drop)")


def _recall(base: np.ndarray, queries: np.ndarray, shares: list[float], label: str) -> None:
    import faiss

    exact = faiss.knn(queries, base, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]
    nlist = int(4 * np.sqrt(len(base)))
    kmeans = faiss.Kmeans(base.shape[1], nlist, niter=10, seed=0, spherical=True, max_points_per_centroid=40)
    sample = np.random.default_rng(0).choice(len(base), min(len(base), 40 * nlist), replace=False)
    kmeans.train(np.ascontiguousarray(base[np.sort(sample)]))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(base.shape[1]), base.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.quantizer.add(kmeans.centroids)
    index.is_trained = True
    index.add(base)
    print(f"| {label} | {len(base):,} | {nlist} | " + " | ".join(_recall_cell(index, queries, exact, s) for s in shares) + " |")


def _recall_cell(index, queries: np.ndarray, exact: np.ndarray, share: float) -> str:
    index.nprobe = max(1, int(round(index.nlist * share)))
    t = time.perf_counter()
    found = np.stack([index.search(q[None], 10)[1][0] for q in queries])
    ms = (time.perf_counter() - t) * 1000 / len(queries)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
    return f"{recall:.3f} ({ms:.1f} ms)"


def recall(args) -> None:
    import faiss

    from ragapp import RAG
    from ragapp.index.reader import Index

    faiss.omp_set_num_threads(1)
    rag = RAG(SOURCE)
    queries = rag.embedder.embed_queries([r["text"] for r in jsonl(EVAL / "scifact" / "queries.jsonl")][:300])
    source = Index.open(SOURCE)
    real = np.concatenate([np.asarray(source.dense.vectors), np.asarray(source.sentence_vectors, dtype=np.float32)])
    shares = [0.02, 0.1, 0.2, 0.3]
    print(f"\nIVF recall@10 against exact search (inner product), {len(queries)} SciFact queries, nlist = 4·sqrt(N); "
          f"cells: recall (ms a query, 1 thread); {machine()}")
    print("| vectors | N | nlist | " + " | ".join(f"nprobe {s:.1%} of lists" for s in shares) + " |")
    print("|---|---|---|" + "---|" * len(shares))
    _recall(np.ascontiguousarray(real), queries, shares, "real: SciFact chunk and sentence vectors")
    path = _path(args.chunks)
    if (path / "manifest.json").exists():
        big = Index.open(path)
        _recall(np.ascontiguousarray(big.dense.vectors), queries, shares, f"synthetic ({path.name})")


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

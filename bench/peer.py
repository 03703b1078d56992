"""ragapp beside the hybrid retriever most users would build instead, in one run on the first 1,000 SciFact
abstracts and on the full corpus: ingest seconds, query p50/p95 and nDCG@10 of each. Prints the tables
docs/benchmarks.md quotes.

    pip install langchain-community langchain-classic langchain-text-splitters   # the peer, not a ragapp dependency
    python bench/peer.py [--docs 1000,all]

The peer is the retriever Langchain-Chatchat builds: LangChain's RecursiveCharacterTextSplitter
(Chatchat's defaults, 750 characters with 150 overlap), a FAISS vector store over the same
multilingual-e5-small (float32, the same "passage: "/"query: " prefixes, run through
sentence-transformers as ragapp runs it), BM25Retriever on rank-bm25, fused by EnsembleRetriever
(weights 0.5/0.5, its weighted reciprocal rank fusion). ragapp is its default ingest and `search`
(BM25 + dense, fusion, the sentence reranker) into a fresh index. Both use 2 threads to ingest
and 1 to answer, one after the other on the same machine. `--ragapp-index PATH --ragapp-ingest-seconds S`
queries an index the default ingest already built from the corpus (bench/quality.py retrieval) instead.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EVAL, OUT, doc_ranking, jsonl, machine, ndcg_at, qrels, write_corpus  # noqa: E402

DEPTH = 20  # chunks each peer retriever returns before fusion


def _score(rank, queries: dict[str, str], rel: dict[str, dict[str, int]]) -> tuple[float, list[float]]:
    """Mean nDCG@10 and per-query milliseconds of `rank(text) -> document ids`."""
    rank(next(iter(queries.values())))  # warm
    ndcg, times = [], []
    for qid, relevant in rel.items():
        t = time.perf_counter()
        ranking = rank(queries[qid])
        times.append((time.perf_counter() - t) * 1000)
        ndcg.append(ndcg_at(ranking, relevant, 10))
    return float(np.mean(ndcg)), times


def _ragapp(folder: Path, queries, rel, built: Path | None = None, built_seconds: float = 0.0):
    """ragapp's ingest into a fresh index, then its queries; or, given `built`, the queries against an
    index already built from the same corpus by the default ingest (its ingest seconds passed in)."""
    from ragapp import RAG

    tmp = Path(tempfile.mkdtemp(prefix="ragapp-peer-"))
    try:
        rag = RAG(built or tmp / "index")
        t0 = time.perf_counter()
        chunks = len(rag.index()) if built else rag.ingest([folder]).chunks
        secs = built_seconds if built else time.perf_counter() - t0
        rank = lambda q: doc_ranking([h.chunk.source for h in rag.search(q, 20)])  # noqa: E731
        return ("ragapp", chunks, secs, *_score(rank, queries, rel))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _e5():
    """LangChain Embeddings over the same e5 folder ragapp uses, float32, with e5's prefixes (the base
    class is imported only when the peer runs)."""
    from langchain_core.embeddings import Embeddings

    class E5(Embeddings):
        def __init__(self) -> None:
            import torch
            from sentence_transformers import SentenceTransformer

            from ragapp.config import Config
            from ragapp.embed import SentenceTransformerEmbedder

            spec = SentenceTransformerEmbedder(Config().embed, Config().cache_dir).spec
            self.model = SentenceTransformer(spec.path, device="cpu", local_files_only=True)
            self.prefixes = spec.query_prefix, spec.passage_prefix
            self.torch = torch

        def _encode(self, texts: list[str], threads: int) -> list[list[float]]:
            self.torch.set_num_threads(threads)
            return self.model.encode(texts, batch_size=16, normalize_embeddings=True, show_progress_bar=False).tolist()

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return self._encode([self.prefixes[1] + t for t in texts], 2)

        def embed_query(self, text: str) -> list[float]:
            return self._encode([self.prefixes[0] + text], 1)[0]

    return E5()


def _peer(rows: list[dict], queries, rel):
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    t0 = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=750, chunk_overlap=150)
    docs = splitter.split_documents([Document(page_content=r["title"] + "\n\n" + r["text"], metadata={"id": r["_id"]})
                                     for r in rows])
    store = FAISS.from_documents(docs, _e5())
    bm25 = BM25Retriever.from_documents(docs, k=DEPTH)
    secs = time.perf_counter() - t0
    ensemble = EnsembleRetriever(retrievers=[bm25, store.as_retriever(search_kwargs={"k": DEPTH})], weights=[0.5, 0.5])
    rank = lambda q: list(dict.fromkeys(d.metadata["id"] for d in ensemble.invoke(q)))  # noqa: E731
    return ("Chatchat-style LangChain hybrid", len(docs), secs, *_score(rank, queries, rel))


def main() -> None:
    import argparse

    import faiss

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ragapp-index", type=Path, help="query this full-SciFact index instead of ingesting again")
    parser.add_argument("--ragapp-ingest-seconds", type=float, default=0.0, help="how long that index took to build")
    parser.add_argument("--docs", default="1000,all", help="corpus sizes, each the first N abstracts or all")
    args = parser.parse_args()

    from ragapp.runtime import keep_freed_memory

    keep_freed_memory()  # as ragapp's entry points do; the peer runs in the same process and gains as much
    faiss.omp_set_num_threads(1)
    every = jsonl(EVAL / "scifact" / "corpus.jsonl")
    queries = {r["_id"]: r["text"] for r in jsonl(EVAL / "scifact" / "queries.jsonl")}
    all_rel = qrels(EVAL / "scifact" / "qrels" / "test.tsv")
    for size in args.docs.split(","):
        rows = every if size == "all" else every[: int(size)]
        ids = {r["_id"] for r in rows}
        rel = {q: r for q, r in all_rel.items() if ids & set(r)}  # the test queries with a relevant document here
        folder = write_corpus(rows, OUT / "corpora" / ("scifact" if size == "all" else f"scifact-{size}"))
        built = args.ragapp_index if size == "all" else None
        results = [_ragapp(folder, queries, rel, built, args.ragapp_ingest_seconds)]
        print("ragapp:", results[0][:4], flush=True)
        results.append(_peer(rows, queries, rel))
        _table(f"SciFact, {len(rows):,} documents, {len(rel)} test queries with a relevant one among them", results)


def _table(title: str, results: list) -> None:
    print(f"\n{title}, one run; {machine()}")
    print("| retriever | chunks | ingest s | query p50 ms | query p95 ms | nDCG@10 |\n|---|---|---|---|---|---|")
    for name, chunks, secs, ndcg, times in results:
        print(f"| {name} | {chunks:,} | {secs:.0f} | {np.percentile(times, 50):.1f} | {np.percentile(times, 95):.1f} | {ndcg:.3f} |")
    (_, _, s0, n0, t0), (_, _, s1, n1, t1) = results
    print(f"ragapp vs the peer: ingest {s1 / s0:.2f}x faster, query p50 {np.percentile(t1, 50) / np.percentile(t0, 50):.2f}x "
          f"faster, nDCG@10 {n0 - n1:+.3f}", flush=True)


if __name__ == "__main__":
    main()

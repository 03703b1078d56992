"""Could ingest embed less? Two measurements on the SciFact index (issue 15), printed side by side:

    python bench/derived.py        # needs bench/out/indexes/scifact (bench/quality.py retrieval) and ../shared/eval

1. Tokens a second through the embedder for chunks and for their sentences (300 chunks, ingest
   threads): if both run at the same rate, the model is at the CPU's limit and only fewer tokens or
   cheaper arithmetic make ingest faster.
2. Chunk vectors made from the stored sentence vectors (their mean, weighted by length or not) instead
   of a pass of their own, which would halve the embedding: dense nDCG@10 on the 300 test queries
   against the stored chunk vectors.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EVAL, OUT, doc_ranking, jsonl, machine, ndcg_at, qrels  # noqa: E402

SOURCE = OUT / "indexes" / "scifact"


def _throughput(rag, index) -> None:
    chunks, sentences = [], []
    for row, chunk, _ in index.rows():
        if row >= 300:
            break
        chunks.append(chunk.text)
        sentences += [chunk.text[a:b] for a, b in chunk.sentences]
    sentences = list(dict.fromkeys(sentences))
    embedder = rag.embedder
    embedder.warm_up()
    prefix = embedder.spec.passage_prefix
    for name, texts in (("chunks", chunks), ("sentences", sentences)):
        tokens = embedder._model.tokenizer([prefix + t for t in texts], truncation=True, max_length=512)["input_ids"]
        t = time.perf_counter()
        embedder._encode(texts, prefix, rag.config.ingest_threads)
        secs = time.perf_counter() - t
        print(f"| {name} | {len(texts):,} | {sum(map(len, tokens)):,} | {secs:.1f} | {sum(map(len, tokens)) / secs:,.0f} |")


def _derived(rag, index) -> None:
    stored = np.asarray(index.dense.vectors, dtype=np.float32)
    weighted, plain, sources = np.zeros_like(stored), np.zeros_like(stored), []
    for row, chunk, _ in index.rows():
        vectors = np.asarray(index.chunk_sentence_vectors(row), dtype=np.float32)
        lengths = np.array([b - a for a, b in chunk.sentences], dtype=np.float32)
        for out, v in ((weighted, (vectors * lengths[:, None]).sum(0)), (plain, vectors.sum(0))):
            out[row] = v / np.linalg.norm(v)
        sources.append(chunk.source)
    queries = {r["_id"]: r["text"] for r in jsonl(EVAL / "scifact" / "queries.jsonl")}
    relevant = qrels(EVAL / "scifact" / "qrels" / "test.tsv")
    ids = list(relevant)
    asked = rag.embedder.embed_queries([queries[q] for q in ids])
    for name, matrix in (("stored chunk vectors (a pass of their own)", stored),
                         ("mean of the chunk's sentence vectors, weighted by length", weighted),
                         ("mean of the chunk's sentence vectors", plain)):
        scores = asked @ matrix.T
        total = sum(ndcg_at(doc_ranking([sources[j] for j in np.argsort(-scores[i])[:100]]), relevant[q], 10)
                    for i, q in enumerate(ids))
        print(f"| {name} | {total / len(ids):.3f} |")


def main() -> None:
    from ragapp import RAG
    from ragapp.index.reader import LocalReader

    rag, index = RAG(SOURCE), LocalReader.open(SOURCE)
    print(f"\nEmbedding throughput, {rag.config.ingest_threads} threads; {machine()}")
    print("| texts | n | tokens | s | tokens/s |\n|---|---|---|---|---|")
    _throughput(rag, index)
    print(f"\nSciFact dense nDCG@10 ({len(index):,} chunks, exact search)\n| chunk vectors | nDCG@10 |\n|---|---|")
    _derived(rag, index)


if __name__ == "__main__":
    main()

"""Retrieve stage: exact fusion orders for RRF and weighted fusion, on a real (tiny) FAISS + BM25 index."""

from __future__ import annotations

import numpy as np
import pytest

from ragapp.config import RetrieveConfig
from ragapp.index import GenerationWriter, LocalReader, Manifest, text_hash
from ragapp.query.retrieve import hybrid_search, reciprocal_rank_fusion, weighted_fusion
from ragapp.records import Query
from ragapp.split import split_text

pytestmark = pytest.mark.unit

BM25 = {"k1": 0.9, "b": 0.4, "epsilon": 0.25}
# (text, dense vector): rows 0-3. Dense likes row 2 then 0; BM25 ("otter") likes rows 0, 1, 3.
ROWS = [("otter otter river", [0.8, 0.6, 0, 0]), ("otter stone", [0, 0, 1, 0]), ("heron wing", [1, 0, 0, 0]),
        ("otter heron", [0, 0, 0, 1])]


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory) -> LocalReader:
    path = tmp_path_factory.mktemp("tiny-index")
    with GenerationWriter(path, 4, BM25) as writer:
        for i, (text, vector) in enumerate(ROWS):
            (chunk,) = split_text(text, f"doc{i}.txt")
            writer.add(chunk, text_hash(text), text.split(), np.array(vector, dtype=np.float32),
                       np.array([vector], dtype=np.float16))
        writer.commit(Manifest(embedding={"model": "hand-made", "dimension": 4}, split={}, bm25=BM25))
    return LocalReader.open(path)


def test_rrf_adds_weight_over_k_plus_rank():
    fused = reciprocal_rank_fusion([[7, 3], [3, 9]], k=60, weights=[1.0, 0.5])
    assert fused == pytest.approx({7: 1 / 61, 3: 1 / 62 + 0.5 / 61, 9: 0.5 / 62})


def test_weighted_fusion_min_max_normalises_each_list():
    fused = weighted_fusion([[(1, 10.0), (2, 5.0), (3, 0.0)], [(3, 0.9), (1, 0.5)]], [0.5, 0.5])
    assert fused == pytest.approx({1: 0.5, 2: 0.25, 3: 0.5})


def _query(terms, vector):
    return Query(text=" ".join(terms), language="en", terms=tuple(terms), vector=np.array(vector, dtype=np.float32))


def test_hybrid_search_orders_rrf(tiny_index):
    hits = hybrid_search(tiny_index, _query(["otter"], [1, 0, 0, 0]), RetrieveConfig(fusion="rrf", rrf_k=60))
    # BM25 ranks 0, 1, 3 (row 0 says "otter" twice); dense ranks 2 (1.0), 0 (0.8), 1, 3 (0.0 both).
    # RRF: row 0 1/61+1/62 > row 1 1/62+1/63 > row 3 1/63+1/64 > row 2 1/61 alone.
    assert [h.row for h in hits] == [0, 1, 3, 2]
    assert (hits[0].bm25_rank, hits[0].dense_rank) == (1, 2) and hits[3].bm25_rank is None


def test_hybrid_search_orders_weighted(tiny_index):
    config = RetrieveConfig(fusion="weighted", bm25_weight=0.7, dense_weight=0.3)
    hits = hybrid_search(tiny_index, _query(["otter"], [1, 0, 0, 0]), config)
    # Normalised BM25 1, 0, 0 for rows 0, 1, 3; normalised dense 1 for row 2, 0.8 for row 0.
    assert [h.row for h in hits] == [0, 2, 1, 3]
    assert hits[0].fused_score == pytest.approx(0.7 * 1.0 + 0.3 * 0.8)


def test_a_limit_keeps_the_first_hits_and_reads_no_other_record(tiny_index, monkeypatch):
    config = RetrieveConfig(fusion="rrf", rrf_k=60)
    query = _query(["otter"], [1, 0, 0, 0])
    every = hybrid_search(tiny_index, query, config)
    read = []
    original = LocalReader.chunk
    monkeypatch.setattr(LocalReader, "chunk", lambda self, row: read.append(row) or original(self, row))
    first = hybrid_search(tiny_index, query, config, limit=2)
    assert [h.row for h in first] == [h.row for h in every[:2]] == [0, 1]
    assert sorted(read) == [0, 1]  # rows 3 and 2 were never parsed

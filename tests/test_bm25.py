import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from ragapp.index.bm25 import FILES, BM25Index, BM25Writer
from ragapp.terms import Tokenizer

pytestmark = pytest.mark.unit

DOCS = [
    "The Normans were descended from Norse raiders and pirates.",
    "Normandy is a region in France named after the Normans.",
    "长城是中国古代的军事防御工程，全长两万多千米。",
    "茶的故乡是中国，西湖龙井属于绿茶。",
    "Computational complexity theory classifies problems by difficulty.",
    "The Rhine flows from the Swiss Alps to the North Sea.",
    "Rollo agreed to swear fealty to King Charles III of West Francia.",
]


@pytest.mark.parametrize("chinese", ["bigram", "jieba"])
def test_scores_equal_rank_bm25(chinese):
    tok = Tokenizer(chinese)
    corpus = [tok(d) for d in DOCS]
    ref = BM25Okapi(corpus, k1=0.9, b=0.4, epsilon=0.25)
    ours = BM25Index.build(corpus, k1=0.9, b=0.4, epsilon=0.25)
    for q in ["Normans in France", "长城有多长", "中国的茶", "the the Normans Normans", "unknown words only"]:
        np.testing.assert_allclose(ours.scores(tok(q)), ref.get_scores(tok(q)), rtol=1e-9, atol=1e-12)


def test_top_n_order_and_positive_only():
    tok = Tokenizer()
    ours = BM25Index.build([tok(d) for d in DOCS])
    top = ours.top_n(tok("Normans Normandy France"), 5)
    assert [i for i, _ in top][:2] == [1, 0]
    assert all(s > 0 for _, s in top) and len(top) == 2  # only documents 0 and 1 hold a query term


def _write(folder, docs, tok, drop_last=False):
    writer = BM25Writer(folder, None, 0.9, 0.4, 0.25)
    for i, d in enumerate(docs):
        mark = writer.rows
        writer.add(*writer.term_row(tok(d)))
        if drop_last and i == len(docs) - 1:
            writer.rollback(mark)
    return writer.finish()


def test_written_weights_load_and_score_like_rank_bm25(tmp_path):
    """The one writer saves counts and weights; loading reads the weights (no recomputation) and the
    scores equal rank-bm25's. A rolled-back row and its terms are gone from both."""
    tok = Tokenizer()
    names = _write(tmp_path, DOCS + ["Zanzibar zebras zigzag."], tok, drop_last=True)
    assert sorted(names) == sorted(FILES) and all((tmp_path / n).exists() for n in FILES)
    back = BM25Index.load(tmp_path, 0.9, 0.4, 0.25)
    assert isinstance(back._counts, type(tmp_path)) and "zebra" not in back.vocab  # counts not read yet
    ref = BM25Okapi([tok(d) for d in DOCS], k1=0.9, b=0.4, epsilon=0.25)
    for q in ("Rhine Alps", "Normans Normans France", "长城"):
        np.testing.assert_allclose(back.scores(tok(q)), ref.get_scores(tok(q)), rtol=1e-9, atol=1e-12)
    legacy = BM25Index.load(tmp_path, 0.9, 0.4, 0.25, weights=False)  # indexes of schema 1-2
    np.testing.assert_array_equal(legacy.scores(tok("Rhine Alps")), back.scores(tok("Rhine Alps")))
    assert back.counts.shape == (len(DOCS), len(back.vocab))


def test_weights_that_disagree_with_the_vocabulary_are_refused(tmp_path):
    tok = Tokenizer()
    _write(tmp_path, DOCS, tok)
    np.save(tmp_path / "bm25_colptr.npy", np.array([0, 1], dtype=np.int64))
    with pytest.raises(ValueError, match="disagree"):
        BM25Index.load(tmp_path, 0.9, 0.4, 0.25)


def test_tokenizer_english_stems_and_chinese_bigrams():
    tok = Tokenizer("bigram", stem=True)
    assert tok("The runners were Running") == ["runner", "were", "run"]
    assert tok("长城很长") == ["长城", "城很", "很长"]
    assert tok("ＡＢＣ１２３") == ["abc123"]  # full-width folded


def test_top_n_is_the_best_of_every_score_with_ties_by_row():
    """The compiled top-n agrees with the full score vector: the same numbers, the `n` best, equal
    scores in row order (many documents here score alike), in one block of rows or in many."""
    from ragapp.index.bm25_topk import top_n_columns

    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(40)]
    docs = [list(rng.choice(words, size=rng.integers(1, 8))) for _ in range(3000)]
    index = BM25Index.build(docs)
    for _ in range(30):
        query = list(rng.choice(words, size=rng.integers(1, 5)))
        scores = index.scores(query)
        best = sorted(np.flatnonzero(scores > 0), key=lambda r: (-scores[r], r))[:37]
        top = index.top_n(query, 37)
        assert [r for r, _ in top] == best
        assert [s for _, s in top] == [scores[r] for r in best]  # the same sums, to the last bit
        cols = np.array([index.vocab[t] for t in dict.fromkeys(query)], dtype=np.int64)  # top_n's order
        mults = np.array([query.count(t) for t in dict.fromkeys(query)], dtype=np.float64)
        rows, sums, ok = top_n_columns(index._colptr, index._rows, index._weights, cols, mults, len(index), 37, 97)
        assert ok and sorted(zip(-sums, rows)) == [(-scores[r], r) for r in best]


def test_a_crafted_column_naming_a_row_outside_the_index_is_an_error(tmp_path):
    tok = Tokenizer()
    _write(tmp_path, DOCS, tok)
    rows = np.load(tmp_path / "bm25_rows.npy")
    rows[:] = 1 << 30
    np.save(tmp_path / "bm25_rows.npy", rows)
    with pytest.raises(ValueError, match="names a row outside the index"):
        BM25Index.load(tmp_path, 0.9, 0.4, 0.25).top_n(tok("Rhine Alps"), 5)
    # Rows inside the index but descending: summed right within a block of rows, refused across blocks.
    from ragapp.index.bm25_topk import top_n_columns

    index = BM25Index.build([tok(d) for d in DOCS])
    col = index.vocab["norman"]
    a, b = index._colptr[col], index._colptr[col + 1]
    assert b - a == 2
    index._rows[a:b] = index._rows[a:b][::-1].copy()
    cols, once = np.array([col], dtype=np.int64), np.ones(1)
    assert top_n_columns(index._colptr, index._rows, index._weights, cols, once, len(index), 5)[2]
    assert not top_n_columns(index._colptr, index._rows, index._weights, cols, once, len(index), 5, 1)[2]

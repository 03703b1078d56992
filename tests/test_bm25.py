import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from ragapp.bm25 import BM25Index
from ragapp.tokenize import Tokenizer

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


def test_save_load_and_subset(tmp_path):
    tok = Tokenizer()
    ours = BM25Index.build([tok(d) for d in DOCS])
    ours.save(tmp_path)
    back = BM25Index.load(tmp_path, 0.9, 0.4, 0.25)
    np.testing.assert_array_equal(back.scores(tok("Rhine Alps")), ours.scores(tok("Rhine Alps")))
    counts, vocab = ours.subset(np.array([0, 5]))
    sub = BM25Index(counts, vocab)
    ref = BM25Okapi([tok(DOCS[0]), tok(DOCS[5])], k1=0.9, b=0.4)
    np.testing.assert_allclose(sub.scores(tok("Rhine Normans")), ref.get_scores(tok("Rhine Normans")))
    assert "长城" not in vocab


def test_tokenizer_english_stems_and_chinese_bigrams():
    tok = Tokenizer("bigram", stem=True)
    assert tok("The runners were Running") == ["runner", "were", "run"]
    assert tok("长城很长") == ["长城", "城很", "很长"]
    assert tok("ＡＢＣ１２３") == ["abc123"]  # full-width folded

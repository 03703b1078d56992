import pytest

from ragapp.split import chunk_id, count_chars, split_text
from ragapp.text import detect_language, sentence_spans

pytestmark = pytest.mark.unit

EN = "The Normans came from Normandy. They were led by Rollo! Did they settle in Italy? Yes, in the south."
ZH = "长城是中国古代的军事防御工程。秦始皇统一中国后连接了长城！明长城东起虎山？西至嘉峪关；全长很长…最后一句。"


def test_sentences_chinese_and_english():
    assert [EN[a:b] for a, b in sentence_spans(EN)] == [
        "The Normans came from Normandy.", "They were led by Rollo!", "Did they settle in Italy?", "Yes, in the south."]
    assert [ZH[a:b] for a, b in sentence_spans(ZH)] == [
        "长城是中国古代的军事防御工程。", "秦始皇统一中国后连接了长城！", "明长城东起虎山？", "西至嘉峪关；", "全长很长…", "最后一句。"]


def test_abbreviation_and_decimal_do_not_end_sentences():
    text = "The value is 3.14 in e.g. most texts. Next one."
    assert [text[a:b] for a, b in sentence_spans(text)] == ["The value is 3.14 in e.g. most texts.", "Next one."]


def test_chunks_keep_sentences_whole_and_offsets_exact():
    text = (EN + "\n\n" + ZH + "\n\n") * 3
    chunks = split_text(text, "doc.txt", None, size=60, overlap=20, count_tokens=count_chars)
    ends = {b for a, b in sentence_spans(text)}
    starts = {a for a, b in sentence_spans(text)}
    assert len(chunks) > 3
    for c in chunks:
        assert text[c.start:c.end] == c.text
        assert c.start in starts and c.end in ends, c.text  # never cut inside a sentence
        assert len(c.text) <= 60 + len(c.sentences)  # units are counted without the gaps between them
        assert all(c.text[a:b] for a, b in c.sentences)


def test_overlap_repeats_trailing_sentences():
    text = " ".join(f"Sentence number {i} is here." for i in range(20))
    chunks = split_text(text, "d", size=100, overlap=30, count_tokens=count_chars)
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.start < prev.end  # the next chunk starts inside the previous one
        assert nxt.end > prev.end


def test_long_line_without_spaces_is_cut_hard():
    text = "字" * 5000
    chunks = split_text(text, "d", size=100, overlap=0, count_tokens=count_chars)
    assert "".join(c.text for c in chunks) == text
    assert max(len(c.text) for c in chunks) <= 100


def test_ids_are_stable_and_position_dependent():
    a = split_text(EN, "a.txt", count_tokens=count_chars)
    b = split_text(EN, "a.txt", count_tokens=count_chars)
    assert [c.id for c in a] == [c.id for c in b]
    assert chunk_id("a.txt", None, 0, "x") != chunk_id("b.txt", None, 0, "x")
    assert chunk_id("a.txt", 1, 0, "x") != chunk_id("a.txt", 2, 0, "x")


def test_detect_language():
    assert detect_language("长城有多长？") == "zh"
    assert detect_language("How long is the Great Wall?") == "en"
    assert detect_language("What does 长城 mean?") == "en"

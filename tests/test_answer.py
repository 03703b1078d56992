"""Answer stage: a model's refusal in its en/zh phrasings, the stream's hold-back, and which passages
reach the prompt."""

from __future__ import annotations

import pytest

from ragapp.query.refusal import HeldBack, fallback, is_refusal, prompt_passages
from ragapp.records import Chunk, Hit

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text", ["I cannot answer from the given information.", "The documents do not mention it.",
                                  "根据已知信息无法回答该问题。", "文中没有提到他的生日。", "  "])
def test_refusals_are_recognised(text):
    assert is_refusal(text)


@pytest.mark.parametrize("text", ["Johann Galle discovered Neptune in 1846.", "西湖龙井属于绿茶。"])
def test_answers_are_not_refusals(text):
    assert not is_refusal(text)


def test_fallback_is_exact_per_language():
    assert fallback("zh") == "根据已知信息无法回答该问题。" and fallback("fr") == "I cannot answer from the given information."


def test_stream_holds_back_a_refusal_and_passes_an_answer_on():
    held = HeldBack()
    shown = [held.feed(p) for p in ["The documents ", "do not ", "mention ", "who built it."]]
    assert shown == ["", "", "", ""] and is_refusal(held.text) and held.emitted == 0
    held = HeldBack()
    shown = [held.feed(p) for p in ["Johann ", "Galle discovered ", "Neptune in 1846."]]
    assert shown == ["", "Johann Galle discovered ", "Neptune in 1846."] and held.text == "Johann Galle discovered Neptune in 1846."


def _hit(row: int, score: float) -> Hit:
    return Hit(chunk=Chunk(f"c{row}", f"text {row}", "a.txt", None, 0, 6), score=score, row=row, rerank_score=score)


def test_passages_below_the_refusal_threshold_stay_out_of_the_prompt():
    hits = [_hit(0, 0.95), _hit(1, 0.70), _hit(2, 0.91)]
    assert [h.row for h in prompt_passages(hits, 0.9)] == [0, 2]
    assert [h.row for h in prompt_passages(hits[1:2], 0.9)] == [1]  # the best always goes in
    assert [h.row for h in prompt_passages(hits, None)] == [0, 1, 2]

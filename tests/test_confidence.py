"""The answer confidence: its signals, its fitted weights, and the gate that withholds an answer under
`[answer] min_confidence` (a scripted model with fixed token probabilities, on the real embedder and index)."""

import math
from dataclasses import replace

import pytest

from ragapp import RAG
from ragapp.generate import Generator
from ragapp.models import QWEN_NAME
from ragapp.query.confidence import FITTED, NO_TOKENS, Signals, number_share, refusal_start, weights_for
from ragapp.query.prompt import FALLBACK
from ragapp.query.review import verdicts

REPLY = "Mars takes 687 Earth days to orbit the Sun."


class Scripted(Generator):
    """Stands in for the packaged 0.5B (its name picks its fitted weights): one reply, fixed token log-probabilities."""

    name = QWEN_NAME

    def __init__(self, logprob: float, reply: str = REPLY) -> None:
        self.logprob, self.reply = logprob, reply

    def generate(self, messages):
        return self.reply

    def stream(self, messages):
        yield self.reply

    def stream_scored(self, messages, scores):
        scores.logprobs[:] = [self.logprob] * 12
        scores.first[:] = [("Mars", self.logprob), ("I", math.log(max(1e-9, 1 - math.exp(self.logprob))))]
        yield self.reply


@pytest.mark.unit
def test_the_signals_read_numbers_and_the_refusal_start():
    assert number_share("It took 687 days, not 700.", ["Mars takes 687 Earth days."]) == 0.5
    assert number_share("Jupiter.", ["anything"]) == 1.0
    assert refusal_start([("I", math.log(0.6)), (" cannot", math.log(0.1)), ("Mars", math.log(0.3))], FALLBACK["en"]) == \
        pytest.approx(0.6)
    assert refusal_start([("根据", math.log(0.8))], FALLBACK["zh"]) == pytest.approx(0.8)
    assert verdicts("1: yes\n2: no\n3: maybe", 3) == [True, False, None]


@pytest.mark.unit
def test_every_packaged_model_and_language_has_weights_and_probabilities_stay_in_0_1():
    for model in ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"):
        for lang in ("en", "zh"):
            with_tokens = weights_for(model, lang, True)
            assert with_tokens is not None and with_tokens.origin == f"fitted for {model}, {lang}"
            assert weights_for(model, lang, False).origin.endswith(NO_TOKENS)
    other = weights_for("my-own-model", "en", True)
    assert other is not None and other.origin == f"fitted on the packaged models, en, {NO_TOKENS}"
    extreme = Signals(best=50, margin=50, support=50, numbers=50, agreement=50, log_chars=50, refuse_first=50,
                      mean_logprob=50, min_logprob=50)
    for weights in (weights_for(QWEN_NAME, "en", True), other):
        assert 0.0 <= weights.probability(extreme) <= 1.0
        assert 0.0 <= weights.probability(replace(extreme, **{k: -50 for k in ("best", "margin", "support", "numbers")})) <= 1.0
    assert FITTED[QWEN_NAME]["en"]["tokens"]["mean_logprob"] > 0  # a surer model is more often right


@pytest.mark.integration
def test_the_gate_withholds_an_unsure_answer_and_keeps_its_draft(samples_index, config, embedder):
    question = "How long does Mars take to orbit the Sun?"
    strict = config.with_(answer=replace(config.answer, min_confidence=0.5))
    sure = RAG(samples_index, strict, embedder=embedder, generator=Scripted(-0.01)).ask(question)
    assert sure.answered and sure.text == REPLY and sure.confidence >= 0.5 and sure.draft == "" and sure.citations
    assert sure.signals["mean_logprob"] == pytest.approx(-0.01) and sure.signals["numbers"] == 1.0

    unsure = RAG(samples_index, strict, embedder=embedder, generator=Scripted(-4.0)).ask(question)
    assert not unsure.answered and unsure.text == FALLBACK["en"] and unsure.draft == REPLY and unsure.citations == []
    assert unsure.confidence < 0.5 < sure.confidence
    assert f"confidence {unsure.confidence:.2f} is below the threshold 0.50 ([answer] min_confidence" in unsure.reason
    assert f"fitted for {QWEN_NAME}, en" in unsure.reason

    stream = RAG(samples_index, strict, embedder=embedder, generator=Scripted(-4.0)).ask_stream(question)
    assert "".join(stream) == FALLBACK["en"]  # nothing of the withheld draft was streamed before the fallback

    open_gate = RAG(samples_index, config, embedder=embedder, generator=Scripted(-4.0)).ask(question)
    assert open_gate.answered and open_gate.confidence == pytest.approx(unsure.confidence)  # 0 withholds nothing


@pytest.mark.unit
def test_a_recalibration_is_fitted_only_on_enough_answers_and_read_only_for_its_model(tmp_path):
    from ragapp.query import recalibrate

    # The global confidence says 0.9 everywhere, but here only 40 % of those answers are right: it moves down.
    assert recalibrate.fit([0.9] * 19 + [0.2], [True] * 8 + [False] * 12) is not None
    assert recalibrate.fit([0.9] * 19, [True] * 8 + [False] * 11) is None  # under MIN_ANSWERS
    assert recalibrate.fit([0.9] * 30, [True] * 30) is None  # nothing wrong to learn from
    a, b = recalibrate.fit([0.9] * 30 + [0.3] * 30, [True] * 12 + [False] * 18 + [False] * 30)
    fitted = recalibrate.Recalibration(model=QWEN_NAME, a=a, b=b, answers=60, fitted_at=0.0)
    assert 0.3 < fitted.apply(0.9) < 0.6 and fitted.apply(0.3) < 0.15
    recalibrate.write(tmp_path, fitted)
    assert recalibrate.read(tmp_path, QWEN_NAME) == fitted
    assert recalibrate.read(tmp_path, "another-model") is None
    for text in ("not json", f'{{"model": "{QWEN_NAME}", "a": "x"}}',
                 f'{{"model": "{QWEN_NAME}", "a": NaN, "b": 0, "answers": 1, "fitted_at": 0}}', "x" * 70_000):
        recalibrate.path_of(tmp_path).write_text(text, encoding="utf-8")
        assert recalibrate.read(tmp_path, QWEN_NAME) is None

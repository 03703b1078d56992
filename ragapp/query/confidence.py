"""How likely an answer is right and supported: a small logistic model over signals ragapp already has
(the retrieval gate's score and margin, the model's own token probabilities, whether the answer's words
and numbers stand in the passages, and how close the answer is to the best sentence).

The weights are fitted per chat model and answer language by `python bench/confidence.py fit` on the
../shared/eval extracts, on questions the end-to-end evaluation does not use (docs/benchmarks.md,
"Answer confidence"). A model not fitted here gets the weights fitted on both packaged models without
token probabilities, as does a backend that cannot report them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ragapp.query.recalibrate import Recalibration
from ragapp.records import Hit
from ragapp.rerank import final_score

# The signals a fit may use, in this order; the last three need the model's token probabilities.
TEXT_SIGNALS = ("best", "margin", "support", "numbers", "agreement", "log_chars")
TOKEN_SIGNALS = ("refuse_first", "mean_logprob", "min_logprob")
ANY_MODEL = "*"
# A table answer is a checked query's result, not a model's prose: its confidence is the share of table
# questions the model's queries answered right (`python bench/tables.py`: the 1.5B 0.90 on 2026-12-07, the 0.5B
# 0.80 on 2026-12-02); a model not measured gets the lower figure.
TABLE_CONFIDENCE = {"qwen2.5-coder-1.5b-instruct": 0.90, "qwen2.5-coder-0.5b-instruct": 0.80}
NO_TOKENS = "no token probabilities"


@dataclass(frozen=True)
class Signals:
    """What one answer's confidence is computed from (None where the backend cannot say)."""

    best: float  # the best passage's final score (the refusal gate's)
    margin: float  # best minus the second best
    support: float  # share of the answer's information (its terms not in the question, by idf) in one prompt sentence
    numbers: float  # share of the answer's numbers that stand in the prompt passages (1 with none)
    agreement: float  # cosine of the answer to the closest sentence of the prompt passages
    log_chars: float  # log(1 + the answer's length in characters)
    refuse_first: float | None = None  # the model's probability of starting the refusal sentence
    mean_logprob: float | None = None  # mean log-probability of the answer's tokens
    min_logprob: float | None = None  # lowest log-probability among them

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready, rounded."""
        return {k: (round(v, 4) if v is not None else None) for k, v in asdict(self).items()}

    @property
    def has_tokens(self) -> bool:
        """True when the model's token probabilities are known."""
        return self.mean_logprob is not None


@dataclass(frozen=True)
class Weights:
    """A fitted logistic model: bias and one weight per signal it uses."""

    bias: float
    weights: Mapping[str, float]
    origin: str

    def probability(self, signals: Signals) -> float:
        """The estimated probability that the answer is right, in [0, 1]."""
        values = asdict(signals)
        z = self.bias + sum(w * float(values[name]) for name, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


# Fitted by `python bench/confidence.py run` then `fit` (docs/benchmarks.md, "Answer confidence", 2026-12-07,
# AMD EPYC): per chat model and language, with and without token probabilities; "*" on both packaged models.
FITTED: dict[str, dict[str, dict[str, dict[str, float]]]] = {
    "qwen2.5-coder-0.5b-instruct": {
        "en": {
            "tokens": {"bias": -12.9376, "best": 4.8288, "margin": 7.1136, "support": 1.1812, "numbers": 2.0991,
                           "agreement": 7.304, "log_chars": -0.3228, "refuse_first": -1.6378, "mean_logprob": 4.5968, "min_logprob": 0.1293},
            "no token probabilities": {"bias": -16.0038, "best": 5.3574, "margin": 6.6737, "support": 1.8532, "numbers": 2.8079,
                                           "agreement": 6.0314, "log_chars": 0.0145},
        },
        "zh": {
            "tokens": {"bias": -23.3849, "best": 20.8667, "margin": 1.6955, "support": -0.2993, "numbers": 3.1668,
                           "agreement": 3.0696, "log_chars": -0.5271, "refuse_first": 0.3136, "mean_logprob": 6.3349, "min_logprob": 0.5003},
            "no token probabilities": {"bias": -30.4552, "best": 25.0601, "margin": -3.613, "support": 0.4644, "numbers": 3.3767,
                                           "agreement": 3.9785, "log_chars": -0.4522},
        },
    },
    "qwen2.5-coder-1.5b-instruct": {
        "en": {
            "tokens": {"bias": -12.7611, "best": 10.1208, "margin": -2.1576, "support": 0.5772, "numbers": 3.2644,
                           "agreement": 3.0575, "log_chars": -0.6603, "refuse_first": -1.0875, "mean_logprob": 4.817, "min_logprob": -0.5261},
            "no token probabilities": {"bias": -16.044, "best": 11.2901, "margin": -1.2455, "support": 1.0343, "numbers": 3.3742,
                                           "agreement": 3.1223, "log_chars": -0.3868},
        },
        "zh": {
            "tokens": {"bias": -17.6814, "best": 17.3291, "margin": 11.5771, "support": -1.1696, "numbers": 6.7002,
                           "agreement": -2.9995, "log_chars": 0.021, "refuse_first": 1.5577, "mean_logprob": 8.0051, "min_logprob": 1.4825},
            "no token probabilities": {"bias": -24.9408, "best": 23.4071, "margin": 4.7661, "support": -0.0188, "numbers": 6.2503,
                                           "agreement": -4.0914, "log_chars": 0.0183},
        },
    },
    "*": {
        "en": {
            "no token probabilities": {"bias": -16.9225, "best": 9.3345, "margin": 2.2966, "support": 1.3935, "numbers": 4.1337,
                                           "agreement": 3.569, "log_chars": -0.2096},
        },
        "zh": {
            "no token probabilities": {"bias": -28.938, "best": 24.1587, "margin": 0.0398, "support": 0.2107, "numbers": 5.1349,
                                           "agreement": 1.3683, "log_chars": -0.3343},
        },
    },
}


def table_confidence(model: str) -> float:
    """The confidence of an answer from a query over a table, by the chat model that wrote the query."""
    return TABLE_CONFIDENCE.get(model, min(TABLE_CONFIDENCE.values()))


def weights_for(model: str, language: str, with_tokens: bool,
                fitted: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]] | None = None) -> Weights | None:
    """The weights for a chat model and language: the model's own, else those fitted without token
    probabilities on the packaged models; None when nothing is fitted."""
    table = FITTED if fitted is None else fitted
    variant = "tokens" if with_tokens else NO_TOKENS
    for key, origin in ((model, f"fitted for {model}"), (ANY_MODEL, "fitted on the packaged models")):
        found = table.get(key, {}).get(language, {}).get(variant if key == model else NO_TOKENS)
        if found:
            rest = {k: v for k, v in found.items() if k != "bias"}
            return Weights(found["bias"], rest, f"{origin}, {language}" + ("" if with_tokens and key == model else f", {NO_TOKENS}"))
    return None


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def number_share(answer: str, passages: Sequence[str]) -> float:
    """Share of the answer's numbers that stand in the passages (1.0 when it holds none)."""
    numbers = set(_NUMBER.findall(answer))
    if not numbers:
        return 1.0
    text = "\n".join(passages)
    return sum(n in text for n in numbers) / len(numbers)


def refusal_start(first: Sequence[tuple[str, float]], fallback: str) -> float:
    """The model's probability that its answer starts as the refusal sentence does, from its likeliest
    first tokens (text, log-probability)."""
    return min(1.0, sum(math.exp(lp) for text, lp in first if text.strip() and fallback.startswith(text.strip())))


def signals(answer: str, ranked: Sequence[Hit], passages: Sequence[Hit], support: float, agreement: float,
            logprobs: Sequence[float], first: Sequence[tuple[str, float]], fallback: str) -> Signals:
    """The signals of one answer: `ranked` is what the search found (best first), `passages` what the prompt showed."""
    scores = [final_score(h) for h in ranked[:2]]
    tokens: dict[str, float] = {}
    if logprobs:
        tokens = {"refuse_first": refusal_start(first, fallback), "mean_logprob": float(np.mean(logprobs)),
                  "min_logprob": float(np.min(logprobs))}
    return Signals(best=scores[0] if scores else 0.0, margin=scores[0] - scores[1] if len(scores) > 1 else 0.0,
                   support=support, numbers=number_share(answer, [h.chunk.text for h in passages]), agreement=agreement,
                   log_chars=math.log1p(len(answer)), **tokens)


def agreement(answer_vector: np.ndarray, hits: Sequence[Hit], sentence_vectors: Callable[[int], np.ndarray]) -> float:
    """Cosine of the answer's vector to the closest stored sentence of the passages."""
    best = -1.0
    q = answer_vector.astype(np.float32).ravel()
    for hit in hits:
        vectors = sentence_vectors(hit.row)
        if len(vectors):
            best = max(best, float(np.max(vectors.astype(np.float32) @ q)))
    return best if best > -1.0 else 0.0


def withheld(confidence: float, minimum: float, origin: str) -> str:
    """Why an answer the model wrote was not given: its confidence is under the threshold."""
    return (f"the answer's confidence {confidence:.2f} is below the threshold {minimum:.2f} ([answer] min_confidence; "
            f"confidence {origin}); the withheld draft is kept with the reply")


@dataclass(frozen=True)
class Assessed:
    """An answer's confidence, the signals behind it and where its weights came from."""

    confidence: float
    signals: Signals
    origin: str


def assess(answer: str, question: str, ranked: Sequence[Hit], passages: Sequence[Hit], *, model: str, language: str,
           logprobs: Sequence[float], first: Sequence[tuple[str, float]], fallback: str,
           support: Callable[[str, str, Sequence[Hit]], float], embed: Callable[[str], np.ndarray],
           sentence_vectors: Callable[[int], np.ndarray], recalibration: Recalibration | None = None) -> Assessed:
    """The confidence of one answer written from `passages` (what `ranked`, the search's hits, put in the prompt),
    recalibrated on the knowledge base's own questions where `ragapp eval --apply` did so."""
    found = signals(answer, ranked, passages, support(answer, question, passages),
                    agreement(embed(answer), passages, sentence_vectors), logprobs, first, fallback)
    weights = weights_for(model, language, found.has_tokens)
    if weights is None:
        return Assessed(1.0, found, "none: no confidence model is fitted")
    if recalibration is None:
        return Assessed(weights.probability(found), found, weights.origin)
    return Assessed(recalibration.apply(weights.probability(found)), found,
                    f"{weights.origin}, recalibrated on {recalibration.answers} answers here (ragapp eval --apply)")

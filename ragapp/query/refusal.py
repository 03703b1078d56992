"""The refusal decision, in one place: the threshold a question's best passage must clear before any
model is asked, which passages reach the prompt, and whether what a model said is a refusal (then the
answer is the exact fallback sentence, with the closest passages shown beside it by the faces).

The global thresholds are fitted per embedding model and question language by bench/calibrate.py on
../shared/eval (docs/benchmarks.md, "Refusal threshold calibration"); `ragapp eval --apply` fits one
on a knowledge base's own documents (ragapp.evaluate), which then takes their place for it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragapp.config import RerankConfig
from ragapp.query.prompt import FALLBACK
from ragapp.query.threshold import FittedThreshold, Threshold
from ragapp.records import Hit
from ragapp.rerank import Reranker, SentenceReranker, final_score

# The 5th percentile of answerable questions' best sentence-reranker score, on questions the
# end-to-end evaluation does not use, per embedding model and language.
CALIBRATED_MIN_SCORE: dict[str, dict[str, float]] = {
    "multilingual-e5-small": {"en": 0.884, "zh": 0.924},
}
# How many of the closest passages a refusal shows, so the user sees why.
CLOSEST_SHOWN = 3


def refusal_threshold(config: RerankConfig, reranker: Reranker, embedding_model: str, language: str,
                      fitted: FittedThreshold | None = None) -> Threshold:
    """The best rerank score below which a question is refused before any model call: the
    configured `min_score`, else the one `ragapp eval --apply` fitted on this knowledge base, else the
    calibrated one for the sentence reranker, else None (never)."""
    if config.min_score is not None:
        return Threshold(config.min_score, "set in the configuration (rerank.min_score)")
    if fitted is not None and language in fitted.values:
        return Threshold(fitted.values[language], fitted.origin(language))
    if isinstance(reranker, SentenceReranker) and language in CALIBRATED_MIN_SCORE.get(embedding_model, {}):
        return Threshold(CALIBRATED_MIN_SCORE[embedding_model][language],
                         "global, calibrated on SQuAD 2.0 / CMRC 2018 for this embedding model")
    return Threshold(None, "none: no threshold is known for this reranker and embedding model")


def refusal_before_model(hits: Sequence[Hit], threshold: float | None, origin: str = "") -> str:
    """Why a question is refused without asking the model ("" when it is not)."""
    if not hits:
        return "no matching passages"
    best = final_score(hits[0])
    if threshold is not None and best < threshold:
        return f"best passage scored {best:.3f}, below the threshold {threshold:.3f}" + (f" ({origin})" if origin else "")
    return ""


def refusal_by_model(hits: Sequence[Hit], threshold: float | None, origin: str) -> str:
    """Why a question the threshold let through was refused: the model found no answer (with the
    threshold in force and where it came from, as every refusal notice says)."""
    best = f"best passage scored {final_score(hits[0]):.3f}; " if hits else ""
    gate = f"threshold {threshold:.3f}, {origin}" if threshold is not None else "no threshold"
    return f"the model found no answer in the passages ({best}{gate})"


def prompt_passages(hits: Sequence[Hit], threshold: float | None) -> list[Hit]:
    """The best passage, then only those that also clear the refusal threshold."""
    if threshold is None:
        return list(hits)
    return list(hits[:1]) + [h for h in hits[1:] if final_score(h) >= threshold]


def closest_passages(hits: Sequence[Hit]) -> list[Hit]:
    """What a refusal shows of the passages that were found (best first)."""
    return list(hits[:CLOSEST_SHOWN])


_REFUSAL = re.compile(
    r"cannot answer|can ?not be answered|can't answer|unable to answer|not able to answer|"
    r"(does not|doesn't|do not|don't) (contain|mention|provide|include|say|specify|state)|"
    r"(is|are) not (mentioned|provided|specified|stated|given|included)|no information (about|on|regarding)|"
    r"not enough information|insufficient information|"
    r"无法回答|无法从|不能回答|没有提到|没有提及|未提及|未提到|没有相关|无相关|未提供|没有提供|无法确定|无法得知|不知道",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    """True when a model's answer says the documents do not hold the answer."""
    return not text.strip() or _REFUSAL.search(text) is not None


def fallback(language: str) -> str:
    """The exact refusal sentence for a language."""
    return FALLBACK.get(language, FALLBACK["en"])


# A refusal is recognised from its first words: text shorter than this is held back in a stream.
_HOLD_BACK_CHARS = 24


class HeldBack:
    """Model output passed on as it comes, except while it could still turn out to be a refusal:
    a stream never shows half a hallucinated sentence before the fallback replaces it."""

    def __init__(self, hold_all: bool = False) -> None:
        self.pieces: list[str] = []
        self.emitted = 0
        self.hold_all = hold_all  # nothing is shown before the whole answer is judged (the confidence gate)

    def feed(self, piece: str) -> str:
        """Add a piece of model output; returns what may be shown now ("" while held back)."""
        self.pieces.append(piece)
        text = "".join(self.pieces)
        if self.hold_all or len(text) < _HOLD_BACK_CHARS or is_refusal(text):
            return ""
        shown, self.emitted = text[self.emitted :], len(text)
        return shown

    @property
    def text(self) -> str:
        """Everything the model said, stripped."""
        return "".join(self.pieces).strip()

"""How an answer is scored against a gold one (SQuAD / CMRC style): normalised containment and token F1."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)
_TOKENS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+", re.UNICODE)


def normalise_answer(text: str) -> str:
    """Lower case, NFKC, no articles, punctuation or whitespace (SQuAD/CMRC style matching)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return _PUNCT.sub("", text)


def contains_answer(answer: str, golds: list[str]) -> bool:
    """True when a normalised gold answer occurs in the normalised answer."""
    a = normalise_answer(answer)
    return any(normalise_answer(g) and normalise_answer(g) in a for g in golds)


def answer_tokens(text: str) -> list[str]:
    """Words, and each Chinese character on its own (CMRC's F1 counts characters)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return [t for t in _TOKENS.findall(re.sub(r"\b(a|an|the)\b", " ", text))]


def token_f1(answer: str, golds: list[str]) -> float:
    """The best token F1 of `answer` against any gold answer (0 when there is none)."""
    predicted = Counter(answer_tokens(answer))
    best = 0.0
    for gold in golds:
        wanted = Counter(answer_tokens(gold))
        same = sum((predicted & wanted).values())
        if same:
            precision, recall = same / sum(predicted.values()), same / sum(wanted.values())
            best = max(best, 2 * precision * recall / (precision + recall))
    return best

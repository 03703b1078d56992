"""Conversation stage: turn a follow-up question into a standalone one before retrieval.

"and who succeeded him?" retrieves nothing useful alone. When a question leans on the previous
turn (a pronoun, a leading "and"/"what about", a Chinese 他/其/那…呢, or a few words with no name of their own),
the search runs on the previous standalone question combined with the new one, and the prompt
shows the model the previous exchange. A small local model rewriting the question would cost a
second generation per turn and often drops the entity; combining is cheap and keeps every word.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_EN_REFERRING = re.compile(
    r"\b(he|she|it|they|him|her|his|hers|its|their|theirs|them|this|that|these|those|there|then|former|latter|"
    r"the same|the other|else)\b", re.IGNORECASE)
_EN_LEADING = re.compile(r"^\s*(and|also|but|so|then|what about|how about|what else|why|how come)\b", re.IGNORECASE)
_ZH_REFERRING = re.compile(r"他|她|它|其|该|此|这|那|上述|前者|后者|后来|之后|以后|还有|呢[？?]?\s*$")
_WORD = re.compile(r"[A-Za-z0-9]+|[\u3400-\u9fff]")

# Keep the combined search text short enough that the new question still weighs in retrieval.
_MAX_CONTEXT_CHARS = 300


@dataclass(frozen=True)
class Turn:
    """One earlier exchange: the question as asked, the standalone question searched, and the answer."""

    question: str
    answer: str = ""
    standalone: str = ""


def is_follow_up(question: str) -> bool:
    """True when the question likely depends on the previous turn to be understood."""
    words = _WORD.findall(question)
    han = sum(1 for w in words if len(w) == 1 and "\u3400" <= w <= "\u9fff")
    if han > len(words) / 2:  # Chinese
        return bool(_ZH_REFERRING.search(question)) or han <= 5
    # A short question with no name or number of its own ("In which year?") needs the previous turn.
    named = any(w[0].isupper() or w[0].isdigit() for w in words[1:])
    return bool(_EN_LEADING.search(question) or _EN_REFERRING.search(question)) or (len(words) <= 4 and not named)


def standalone_question(question: str, history: Sequence[Turn]) -> str:
    """The text to search for: the question itself, or the previous standalone question plus this one."""
    if not history or not is_follow_up(question):
        return question.strip()
    previous = history[-1].standalone or history[-1].question
    return f"{previous.strip()[-_MAX_CONTEXT_CHARS:]} {question.strip()}"


def earlier_exchange(question: str, query: str, history: Sequence[Turn], is_refusal) -> tuple[str, str] | None:
    """The previous (question, answer) to show the model when `query` combined it with `question`
    (a refused answer shows as "-"), else None."""
    if query == question.strip() or not history:
        return None
    last = history[-1]
    return last.question, last.answer if last.answer and not is_refusal(last.answer) else "-"

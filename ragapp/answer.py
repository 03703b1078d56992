"""Answer assembly: recognise a model's refusal and pick the citations that support an answer."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from ragapp.prompt import FALLBACK
from ragapp.tokenize import Tokenizer
from ragapp.types import Citation, Hit

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


# A hit is cited when one of its sentences holds at least this share of the answer's information
# that the best sentence holds (design choice; tests/test_rag.py checks citations on the samples).
CITE_SHARE_OF_BEST = 0.5
# Longest quote kept on a Citation (the whole sentence stays in chunk_text[span]).
QUOTE_CHARS = 300


def cite(answer: str, question: str, hits: Sequence[Hit], tokenizer: Tokenizer, idf: Callable[[str], float],
         max_citations: int = 3) -> list[Citation]:
    """The hits whose sentences share the answer's information, best first, each with its quote.

    The answer's terms that are not already in the question carry the information; a hit is cited
    when one of its sentences holds at least half as much of it as the best sentence does. When
    nothing overlaps (an answer in other words), the top hit is cited with its supporting sentence.
    """
    question_terms = set(tokenizer(question))
    info = {t for t in tokenizer(answer) if t not in question_terms} or set(tokenizer(answer))
    total = sum(max(idf(t), 0.1) for t in info)
    scored: list[tuple[float, Hit, tuple[int, int] | None]] = []
    for hit in hits:
        best, best_span = 0.0, hit.support
        for a, b in hit.chunk.sentences or ((0, len(hit.chunk.text)),):
            terms = set(tokenizer(hit.chunk.text[a:b]))
            share = sum(max(idf(t), 0.1) for t in info if t in terms) / total if total else 0.0
            if share > best:
                best, best_span = share, (a, b)
        scored.append((best, hit, best_span))
    top = max((s for s, _, _ in scored), default=0.0)
    if top > 0:
        chosen = [x for x in sorted(scored, key=lambda x: -x[0]) if x[0] >= CITE_SHARE_OF_BEST * top][:max_citations]
    else:
        chosen = [(0.0, hits[0], hits[0].support)] if hits else []
    citations = [_citation(hit, span, share) for share, hit, span in chosen]
    # A passage found in several files (copies) is cited in each of them.
    citations += [_citation(replace(hit, chunk=copy), span, share) for share, hit, span in chosen for copy in hit.also]
    # Overlapping chunks can hold the same sentence: cite each place once.
    unique: dict[tuple, Citation] = {}
    for c in citations:
        unique.setdefault((c.source, c.page, c.start, c.end), c)
    return list(unique.values())


def _citation(hit: Hit, span: tuple[int, int] | None, share: float) -> Citation:
    a, b = span if span is not None else (0, min(len(hit.chunk.text), QUOTE_CHARS))
    quote = hit.chunk.text[a:b]
    score = hit.rerank_score if hit.rerank_score is not None else hit.score
    return Citation(source=hit.chunk.source, page=hit.chunk.page, start=hit.chunk.start + a, end=hit.chunk.start + b,
                    score=float(score), chunk_id=hit.chunk.id, quote=quote[:QUOTE_CHARS], chunk_text=hit.chunk.text, span=(a, b),
                    label=hit.chunk.label, ocr=hit.chunk.ocr)


# A refusal is recognised from its first words: text shorter than this is held back in a stream.
_HOLD_BACK_CHARS = 24


class HeldBack:
    """Model output passed on as it comes, except while it could still turn out to be a refusal:
    a stream never shows half a hallucinated sentence before the fallback replaces it."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.emitted = 0

    def feed(self, piece: str) -> str:
        """Add a piece of model output; returns what may be shown now ("" while held back)."""
        self.pieces.append(piece)
        text = "".join(self.pieces)
        if len(text) < _HOLD_BACK_CHARS or is_refusal(text):
            return ""
        shown, self.emitted = text[self.emitted :], len(text)
        return shown

    @property
    def text(self) -> str:
        """Everything the model said, stripped."""
        return "".join(self.pieces).strip()

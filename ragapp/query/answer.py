"""Answer assembly: the citations that support an answer (whether it is one: ragapp/query/refusal.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from ragapp.records import Citation, Hit
from ragapp.terms import Tokenizer

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
    scored = _shares(answer, question, hits, tokenizer, idf)
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


def support_share(answer: str, question: str, hits: Sequence[Hit], tokenizer: Tokenizer, idf: Callable[[str], float]) -> float:
    """The largest share of the answer's information (by idf) that one sentence of the hits holds."""
    return max((s for s, _, _ in _shares(answer, question, hits, tokenizer, idf)), default=0.0)


def _shares(answer: str, question: str, hits: Sequence[Hit], tokenizer: Tokenizer,
            idf: Callable[[str], float]) -> list[tuple[float, Hit, tuple[int, int] | None]]:
    """Per hit: the share of the answer's information its best sentence holds, and that sentence."""
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
    return scored


def _citation(hit: Hit, span: tuple[int, int] | None, share: float) -> Citation:
    a, b = span if span is not None else (0, min(len(hit.chunk.text), QUOTE_CHARS))
    quote = hit.chunk.text[a:b]
    score = hit.rerank_score if hit.rerank_score is not None else hit.score
    return Citation(source=hit.chunk.source, page=hit.chunk.page, start=hit.chunk.start + a, end=hit.chunk.start + b,
                    score=float(score), chunk_id=hit.chunk.id, quote=quote[:QUOTE_CHARS], chunk_text=hit.chunk.text, span=(a, b),
                    label=hit.chunk.label, ocr=hit.chunk.ocr)

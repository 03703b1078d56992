"""Running a test set through the real pipeline and scoring each reply: where the gold passage ranks,
the best rerank score (what the refusal threshold is compared with), and the answer the model gives
when the question clears the lower of the two thresholds compared (so both outcomes are known)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragapp.evaluate.scoring import contains_answer, normalise_answer, token_f1
from ragapp.evaluate.testset import TestItem
from ragapp.evaluate.write import doc_type
from ragapp.records import Answer, Citation, Hit
from ragapp.rerank import final_score

HIT_DEPTH = 5
# A later answer agrees with the answer a user marked good (or repeats one marked bad) at this token F1.
SAME_ANSWER_F1 = 0.5


@dataclass
class ItemResult:
    """What one question got."""

    item: TestItem
    best: float | None  # the best passage's final rerank score (None: no passage found)
    rank: int | None  # rank (1..HIT_DEPTH) of a passage holding the gold sentence; None: not in the top 5 or no gold
    answered: bool = False
    table: bool = False  # answered by a query over a table (the threshold is not asked)
    text: str = ""
    reason: str = ""
    f1: float = 0.0
    right: bool | None = None  # None: no gold answer to hold it to
    cited_right: bool | None = None
    search_ms: float = 0.0
    answer_ms: float = 0.0
    # What the chat model wrote (given or withheld): its confidence, and whether it was right (None: not known).
    confidence: float | None = None
    said_right: bool | None = None
    passages: list[dict[str, Any]] = field(default_factory=list)

    def refused_at(self, threshold: float | None) -> bool:
        """Whether ragapp refuses this question with `threshold` in force."""
        if self.table:
            return not self.answered
        below = threshold is not None and (self.best is None or self.best < threshold)
        return below or not self.answered

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form kept in a report."""
        return {"id": self.item.id, "question": self.item.question, "expect": self.item.expect, "language": self.item.language,
                "source": self.item.source, "page": self.item.page, "origin": self.item.origin, "gold": list(self.item.answers),
                "sentence": self.item.sentence, "best": self.best, "rank": self.rank, "answered": self.answered,
                "table": self.table, "answer": self.text, "reason": self.reason, "f1": round(self.f1, 3), "right": self.right,
                "cited_right": self.cited_right, "confidence": self.confidence, "said_right": self.said_right,
                "search_ms": round(self.search_ms, 1), "answer_ms": round(self.answer_ms, 1),
                "passages": self.passages}


def _holds_gold(hit: Hit, item: TestItem) -> bool:
    """The hit is the gold passage: in the item's document and page, holding its sentence (or, for an
    item that names no sentence, one of its answers)."""
    chunk = hit.chunk
    same_place = chunk.source == item.source and (item.page is None or chunk.page == item.page)
    if item.sentence:
        return same_place and normalise_answer(item.sentence) in normalise_answer(chunk.text)
    return same_place and contains_answer(chunk.text, list(item.answers))


def gold_rank(hits: Sequence[Hit], item: TestItem) -> int | None:
    """1-based rank of the first hit holding the gold sentence in its place, within HIT_DEPTH."""
    for n, hit in enumerate(hits[:HIT_DEPTH], start=1):
        if _holds_gold(hit, item):
            return n
    return None


def cited_right(citations: Sequence[Citation], item: TestItem) -> bool | None:
    """True when a citation's sentence is the gold one or holds a gold answer (None: nothing to check)."""
    if not item.sentence and not item.answers:
        return None
    gold = normalise_answer(item.sentence)
    for c in citations:
        quote = normalise_answer(c.quote)
        if quote and gold and (quote in gold or gold in quote):
            return True
        if contains_answer(c.quote, list(item.answers)):
            return True
    return False


def _judged(result: ItemResult, answer: Answer) -> None:
    item = result.item
    result.answered, result.text, result.reason = answer.answered, answer.text, answer.reason
    result.table = answer.table is not None
    if item.answers:
        result.f1 = token_f1(answer.text, list(item.answers)) if answer.answered else 0.0
        result.right = answer.answered and contains_answer(answer.text, list(item.answers))
    elif item.verdict in ("good", "bad") and item.reference:
        result.f1 = token_f1(answer.text, [item.reference]) if answer.answered else 0.0
        same = answer.answered and result.f1 >= SAME_ANSWER_F1
        result.right = same if item.verdict == "good" else (answer.answered and not same)
    if item.expect == "answer" and answer.answered:
        result.cited_right = cited_right(answer.citations, item)
    written = answer.text if answer.answered else answer.draft
    if written and answer.signals and answer.table is None and (item.expect == "refuse" or item.answers):
        result.confidence = answer.confidence
        result.said_right = item.expect == "answer" and contains_answer(written, list(item.answers))


def _passages(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    return [{"source": h.chunk.source, "place": h.chunk.place, "score": round(final_score(h), 4), "text": h.chunk.text[:600]}
            for h in hits[:3]]


def search_all(rag: Any, items: Sequence[TestItem], hidden: Collection[str],
               progress: Callable[[int], None] = lambda n: None) -> list[ItemResult]:
    """Each question searched as ragapp searches it (the written ones with `hidden` left out)."""
    results = []
    for n, item in enumerate(items, start=1):
        t0 = time.perf_counter()
        hits = rag.search(item.question, top_k=HIT_DEPTH, exclude=hidden if item.hidden_run else ())
        best = final_score(hits[0]) if hits else None
        results.append(ItemResult(item, best, gold_rank(hits, item), search_ms=(time.perf_counter() - t0) * 1000,
                                  passages=_passages(hits)))
        progress(n)
    return results


def answer_all(rag: Any, results: Sequence[ItemResult], hidden: Collection[str], lowest: float | None,
               progress: Callable[[int], None] = lambda n: None) -> None:
    """Each question answered with the lower threshold in force (what either threshold lets through is
    then known); a question below it is refused by both without a model call."""
    for n, result in enumerate(results, start=1):
        t0 = time.perf_counter()
        item = result.item
        answer = rag.ask(item.question, exclude=hidden if item.hidden_run else (), min_score=lowest)
        result.answer_ms = (time.perf_counter() - t0) * 1000
        _judged(result, answer)
        progress(n)


def _share(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 3) if flags else None


def figures(results: Sequence[ItemResult], thresholds: dict[str, float | None]) -> dict[str, Any]:
    """The report's figures for `results` with `thresholds` (per language) in force."""

    def refused(r: ItemResult) -> bool:
        return r.refused_at(thresholds.get(r.item.language))

    asked = [r for r in results if r.item.expect == "answer"]
    probes = [r for r in results if r.item.expect == "refuse"]
    golden = [r for r in asked if r.item.source and (r.item.sentence or r.item.answers)]
    judged = [r for r in asked if r.right is not None]
    answered = [r for r in asked if not refused(r)]
    cited = [r for r in answered if r.cited_right is not None]
    times = [r.search_ms + r.answer_ms for r in results]
    return {"answerable": len(asked), "probes": len(probes),
            "hit@1": _share([r.rank == 1 for r in golden]), "hit@5": _share([r.rank is not None for r in golden]),
            "accuracy": _share([bool(r.right) and not refused(r) for r in judged]),
            "token_f1": round(statistics.fmean(0.0 if refused(r) else r.f1 for r in judged), 3) if judged else None,
            "false_refusals": _share([refused(r) for r in asked]),
            "probe_refusals": _share([refused(r) for r in probes]),
            "citations_right": _share([bool(r.cited_right) for r in cited]),
            "median_ms": round(statistics.median(times), 1) if times else None}


def groups(results: Sequence[ItemResult]) -> dict[str, list[ItemResult]]:
    """The results as the report breaks them down: all, per language, per document type."""
    out: dict[str, list[ItemResult]] = {"all": list(results)}
    for r in results:
        out.setdefault(f"language {r.item.language}", []).append(r)
        if r.item.source:
            out.setdefault(f"type {doc_type(r.item.source)}", []).append(r)
    return out

"""Evaluate stage: how far to trust ragapp on a knowledge base's own documents. A test set written from
its documents (ragapp.evaluate.write) or read from a file (testset), run through the real pipeline
(measure), the refusal threshold fitted on it by the calibration's rule, and the report (report).

    report = evaluate(rag, 50)                      # write, run, fit, save the set and the report
    report = evaluate(rag, set_path="mine.jsonl")   # a saved or hand-written set again
    evaluate(rag, 50, apply=True)                   # the fitted threshold goes in force for this index
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ragapp.evaluate.measure import answer_all, figures, groups, search_all
from ragapp.evaluate.report import EvalReport, last_report, report_lines, save_report, seconds_per_question
from ragapp.evaluate.testset import TestItem, TestSet, add_feedback, read_set, set_path
from ragapp.evaluate.testset import set_path as _saved_set
from ragapp.evaluate.write import DROP_RULES, best_writer, drawn_chunks, two_lines, write_items
from ragapp.query import recalibrate
from ragapp.query.refusal import refusal_threshold
from ragapp.query.threshold import FittedThreshold, write_fitted

__all__ = ["DROP_RULES", "EvalReport", "TestItem", "TestSet", "add_feedback", "apply_fitted", "evaluate", "last_report",
           "read_set", "report_lines", "run_set", "save_report", "seconds_per_question", "set_path"]

# The calibration's rule (bench/calibrate.py): the threshold refuses this share of answerable questions.
MAX_FALSE_REFUSAL = 0.05
# Fewer answerable questions in a language than this and its 5th percentile is a guess: nothing is fitted.
MIN_FIT_QUESTIONS = 20
PROBE_SHARE = 0.25  # of the written questions, probes
HIDE_SHARE = 0.2  # of the documents, hidden from retrieval while the probes (and the written questions) are asked

Progress = Callable[[str, int, int], None]


def _write_set(rag: Any, questions: int, seed: int, progress: Progress) -> tuple[TestSet, dict[str, Any]]:
    """A new set: answerable questions from the visible documents, probes from the hidden ones."""
    rng = random.Random(seed)
    sources = sorted(d.source for d in rag.documents())
    if not sources:
        raise ValueError(f"the knowledge base at {rag.path} has no documents to write questions from")
    hidden = sorted(rng.sample(sources, max(1, round(HIDE_SHARE * len(sources))))) if len(sources) >= 3 else []
    probes = round(PROBE_SHARE * questions) if hidden else 0
    visible = [s for s in sources if s not in set(hidden)]
    dropped: dict[str, int] = {}
    writer = best_writer(rag.generator, rag.config)
    index, stream = rag.index(), writer.stream
    tries = [0]

    def counted(messages: list[dict[str, str]]) -> str:
        tries[0] += 1
        return two_lines(stream(messages))

    items = write_items(drawn_chunks(index, rng, visible), questions - probes, counted, "answer", rng, dropped,
                        lambda n: progress("writing questions", n, questions))
    items += write_items(drawn_chunks(index, rng, hidden), probes, counted, "refuse", rng, dropped,
                         lambda n: progress("writing questions", len(items) + n, questions))
    written = {"tries": tries[0], "kept": len(items), "dropped": dropped,
               "dropped_share": round(1 - len(items) / tries[0], 3) if tries[0] else None, "rules": DROP_RULES}
    return TestSet(items=items, hidden=tuple(hidden), writer=f"{writer.backend}: {writer.name}"), written


def fit_threshold(scores: list[float]) -> float:
    """The calibration's rule: the best score under which MAX_FALSE_REFUSAL of answerable questions fall."""
    return float(np.quantile(np.array(scores), MAX_FALSE_REFUSAL))


def _thresholds(rag: Any, results: list, languages: list[str]) -> tuple[dict[str, dict[str, Any]], str]:
    """Per language: the global threshold, the fitted one (or why none), the one in force."""
    out, small = {}, []
    for lang in languages:
        scores = [r.best for r in results if r.item.expect == "answer" and r.item.language == lang
                  and r.item.verdict != "bad" and r.best is not None]
        glob = refusal_threshold(rag.config.rerank, rag.reranker(), rag.embedder.name, lang).value
        fitted, note = None, ""
        if len(scores) >= MIN_FIT_QUESTIONS:
            fitted = round(fit_threshold(scores), 4)
        else:
            note = f"{len(scores)} answerable {lang} questions, {MIN_FIT_QUESTIONS} needed to fit a threshold: the global one stays"
            small.append(note)
        now = rag.threshold(lang)
        out[lang] = {"global": glob, "fitted": fitted, "in_force": now.value, "origin": now.origin, "note": note}
    return out, "; ".join(small) if all(t["fitted"] is None for t in out.values()) else ""


def apply_fitted(rag: Any, report: EvalReport) -> None:
    """Store the fitted thresholds in the index, saying so when one refuses fewer probes than the global."""
    values = {lang: t["fitted"] for lang, t in report.thresholds.items() if t["fitted"] is not None}
    if not values:
        report.warnings.append("nothing applied: no language had enough questions to fit a threshold")
        return
    for lang, t in report.thresholds.items():
        if lang in values and (t.get("probes_refused_fitted") or 0) < (t.get("probes_refused_global") or 0):
            report.warnings.append(f"{lang}: the fitted threshold refuses fewer probe questions than the global one "
                                   f"({t['probes_refused_fitted']:.3f} against {t['probes_refused_global']:.3f})")
    counts = {lang: {"answerable": sum(1 for r in report.results if r["language"] == lang and r["expect"] == "answer"),
                     "probe": sum(1 for r in report.results if r["language"] == lang and r["expect"] == "refuse")} for lang in values}
    write_fitted(rag.path, FittedThreshold(values=values, embedding_model=rag.embedder.name, reranker=rag.config.rerank.kind,
                                           fitted_at=report.created_at, questions=counts))
    report.applied = True
    for lang in values:
        now = rag.threshold(lang)
        report.thresholds[lang].update(in_force=now.value, origin=now.origin)


def recalibrate_confidence(rag: Any, report: EvalReport) -> None:
    """Refit the answer confidence on the answers the model wrote for this set (ragapp.query.recalibrate)."""
    pairs = [(r["confidence"], r["said_right"]) for r in report.results
             if r.get("confidence") is not None and r.get("said_right") is not None]
    found = recalibrate.fit([p for p, _ in pairs], [ok for _, ok in pairs])
    if found is None:
        report.recalibrated = {"note": f"{len(pairs)} answers written, {recalibrate.MIN_ANSWERS} with right and wrong ones "
                                       "needed to recalibrate the confidence: the global one stays"}
        return
    fitted = recalibrate.Recalibration(model=rag.generator.name, a=round(found[0], 4), b=round(found[1], 4), answers=len(pairs),
                                       fitted_at=report.created_at)
    recalibrate.write(rag.path, fitted)
    report.recalibrated = asdict(fitted)


def evaluate(rag: Any, questions: int = 50, *, set_path: str | Path | None = None, apply: bool = False, seed: int = 0,
             progress: Progress | None = None) -> EvalReport:
    """Write (or read) a test set, run it, fit the threshold, save the set and the report beside the index."""
    if set_path is None and not 4 <= questions <= 2000:
        raise ValueError(f"questions must be between 4 and 2000, not {questions}")
    tell = progress or (lambda stage, done, total: None)
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    written: dict[str, Any] = {}
    if set_path is not None:
        test_set, where = read_set(set_path), Path(set_path)
    else:
        test_set, written = _write_set(rag, questions, seed, tell)
        where = _saved_set(rag.path)
        if where.exists():  # the chat app's and the HTTP API's feedback, and a user's own questions, stay in the set
            test_set.items += [i for i in read_set(where).items if i.origin != "written"]
        test_set.save(where)
    stages["write"] = time.perf_counter() - t0
    report = run_set(rag, test_set, where, written, stages, tell)
    if set_path is None and not test_set.hidden:
        report.warnings.append("fewer than 3 documents: none was hidden, so no probe was written and refusing what the "
                               "knowledge base does not hold is not measured")
    if apply and report.too_small:
        report.warnings.append(f"nothing applied: {report.too_small}")
    elif apply:
        apply_fitted(rag, report)
    if apply:
        recalibrate_confidence(rag, report)
    save_report(rag.path, report)
    return report


def run_set(rag: Any, test_set: TestSet, where: Path, written: dict[str, Any], stages: dict[str, float],
            tell: Progress, more: dict[str, dict[str, float | None]] | None = None) -> EvalReport:
    """Search, fit and answer every question of `test_set`; the report (not saved). `more`: other
    operating points (name -> threshold per language) to give the figures at."""
    items, hidden = test_set.items, test_set.hidden
    t0 = time.perf_counter()
    results = search_all(rag, items, hidden, lambda n: tell("searching", n, len(items)))
    stages["search"] = time.perf_counter() - t0
    languages = sorted({i.language for i in items} & {"en", "zh"}) or ["en"]
    thresholds, too_small = _thresholds(rag, results, languages)
    lows = [v for t in thresholds.values() for v in (t["global"], t["fitted"], t["in_force"]) if v is not None]
    lows += [v for point in (more or {}).values() for v in point.values() if v is not None]
    t0 = time.perf_counter()
    answer_all(rag, results, hidden, min(lows) if lows else None, lambda n: tell("answering", n, len(items)))
    stages["answer"] = time.perf_counter() - t0
    points = {"global": {lang: t["global"] for lang, t in thresholds.items()},
              "fitted": {lang: t["fitted"] if t["fitted"] is not None else t["global"] for lang, t in thresholds.items()}}
    if any(t["in_force"] != t["global"] for t in thresholds.values()):  # an earlier fit, or the configuration's
        points["in force"] = {lang: t["in_force"] for lang, t in thresholds.items()}
    points.update(more or {})
    table = {group: {name: figures(rs, point) for name, point in points.items()} for group, rs in groups(results).items()}
    for lang, t in thresholds.items():
        for name in ("global", "fitted"):
            t[f"probes_refused_{name}"] = table.get(f"language {lang}", {}).get(name, {}).get("probe_refusals")
    before = last_report(rag.path)
    previous = None
    if before and {r.get("id") for r in before.get("results", [])} == {i.id for i in items}:
        previous = EvalReport(**before).in_force() if set(before) <= set(EvalReport.__dataclass_fields__) else None
    return EvalReport(index=str(rag.store.location), set_path=str(where), writer=test_set.writer, answerer=rag.model_label,
                      questions={"answerable": sum(i.expect == "answer" for i in items),
                                 "probes": sum(i.expect == "refuse" for i in items),
                                 "hidden_run": sum(i.hidden_run for i in items)},
                      written=written, hidden=list(hidden), thresholds=thresholds, figures=table,
                      results=[r.to_dict() for r in results], stage_seconds={k: round(v, 1) for k, v in stages.items()},
                      too_small=too_small, previous=previous)

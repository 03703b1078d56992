"""What `ragapp eval` reports, and the one owner of the reports kept in `<index>/eval/` (the last one is
what `--compare` and the HTTP API's GET read)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragapp.errors import write_failure
from ragapp.jsonfile import write_replacing
from ragapp.query.threshold import EVAL_FOLDER

REPORT_FILE = "report.json"
_MAX_REPORT_BYTES = 50_000_000
# The figures `--compare` puts side by side, in this order.
COMPARED = ("hit@1", "hit@5", "accuracy", "token_f1", "false_refusals", "probe_refusals", "citations_right", "median_ms")


@dataclass
class EvalReport:
    """A test run on one knowledge base: the set, the thresholds compared, the figures per group."""

    index: str
    set_path: str
    writer: str  # the chat model that wrote the questions ("" for a set read from a file)
    answerer: str
    questions: dict[str, int]  # answerable, probes, asked with documents hidden
    written: dict[str, Any]  # tries, kept, dropped per rule, dropped_share
    hidden: list[str]
    thresholds: dict[str, dict[str, Any]]  # language -> global, fitted, in_force, origin, note, probes_refused_*
    figures: dict[str, dict[str, dict[str, Any]]]  # group -> "global" / "fitted" -> figure -> value
    results: list[dict[str, Any]]
    stage_seconds: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    too_small: str = ""  # why no threshold could be fitted on this set ("" when one could)
    applied: bool = False
    # The confidence's recalibration on this set (model, a, b, answers), or why there is none.
    recalibrated: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    previous: dict[str, Any] | None = None  # the last report's "all" figures at the threshold then in force

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (`ragapp eval --json`, the HTTP API)."""
        return asdict(self)

    def failures(self) -> list[dict[str, Any]]:
        """Questions ragapp got wrong with the threshold in force: a false refusal, a probe answered,
        or an answer without the gold one."""
        def refused(r: dict) -> bool:
            t = self.thresholds.get(r["language"], {}).get("in_force")
            below = not r["table"] and t is not None and (r["best"] is None or r["best"] < t)
            return below or not r["answered"]

        return [r for r in self.results if (r["expect"] == "refuse") != refused(r) or
                (r["expect"] == "answer" and not refused(r) and r["right"] is False)]

    def in_force(self) -> dict[str, Any]:
        """The "all" figures at the thresholds in force after this run."""
        points = self.figures.get("all", {})
        return points.get("fitted" if self.applied else "in force", points.get("global", {}))


def report_path(folder: str | Path) -> Path:
    """Where an index folder keeps its last test report."""
    return Path(folder) / EVAL_FOLDER / REPORT_FILE


def save_report(folder: str | Path, report: EvalReport) -> None:
    """Keep `report` as the knowledge base's last one."""
    path = report_path(folder)
    try:
        write_replacing(path, json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8"))
    except OSError as exc:
        raise write_failure("the test report", path.parent, exc, "the previous report") from exc


def last_report(folder: str | Path) -> dict[str, Any] | None:
    """The last report kept for the index in `folder` (None: none, or not one ragapp wrote)."""
    path = report_path(folder)
    try:
        if path.stat().st_size > _MAX_REPORT_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("figures"), dict) else None


def _fmt(value: Any) -> str:
    return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def report_lines(report: EvalReport) -> list[str]:
    """The report as a person reads it in a terminal."""
    q, w = report.questions, report.written
    lines = [f"test set: {report.set_path} ({q['answerable']} answerable, {q['probes']} probe questions; "
             f"{len(report.hidden)} documents hidden for the probes)"]
    if report.writer:
        lines.append(f"written by {report.writer}: {w.get('kept', 0)} kept of {w.get('tries', 0)} written, "
                     f"{_fmt(w.get('dropped_share'))} dropped " + json.dumps(w.get("dropped", {}), ensure_ascii=False))
    lines.append(f"answered by {report.answerer}")
    lines.append("\nthreshold per language: global | fitted on this knowledge base (probes refused at each)")
    for lang, t in report.thresholds.items():
        lines.append(f"  {lang}: {_fmt(t['global'])} | {_fmt(t['fitted'])} ({_fmt(t.get('probes_refused_global'))} | "
                     f"{_fmt(t.get('probes_refused_fitted'))}){'  ' + t['note'] if t.get('note') else ''}")
        lines.append(f"      in force: {_fmt(t['in_force'])}, {t['origin']}")
    names = ("answerable", "probes") + COMPARED
    lines.append("\n| group | threshold | " + " | ".join(names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for group, points in report.figures.items():
        shown: list[dict] = []
        for point, values in points.items():
            if values in shown:  # a threshold that gives the same figures as one above (fitted = global)
                continue
            shown.append(values)
            lines.append(f"| {group} | {point} | " + " | ".join(_fmt(values.get(n)) for n in names) + " |")
    if report.previous:
        lines.append("\ncompared with the last run (all questions, threshold then in force -> now):")
        now = report.in_force()
        lines += [f"  {n}: {_fmt(report.previous.get(n))} -> {_fmt(now.get(n))}" for n in COMPARED]
    rec = report.recalibrated
    if rec:
        lines.append("\nanswer confidence: " + (f"recalibrated on {rec['answers']} answers the model wrote here "
                                                 f"(log-odds x {rec['a']:.2f} {rec['b']:+.2f})" if "a" in rec else rec.get("note", "")))
    lines.append("\nstages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report.stage_seconds.items()))
    if report.too_small:
        lines.append(f"\nThe set is too small: {report.too_small}")
    lines += [f"warning: {m}" for m in report.warnings]
    lines.append("applied: the fitted threshold is now in force" if report.applied else
                 "not applied (ragapp eval --apply stores the fitted threshold in the index)")
    return lines


# A first check's estimate, before this knowledge base has a report of its own: `ragapp eval --questions 50`
# took 4.8 s a question with the packaged model on a 2-vCPU AMD EPYC (docs/benchmarks.md, "ragapp eval").
FIRST_SECONDS_PER_QUESTION = 4.8


def seconds_per_question(report: dict[str, Any] | None) -> float:
    """What one question of a check cost in `report` (writing and answering it), or the first check's estimate."""
    if not report:
        return FIRST_SECONDS_PER_QUESTION
    asked = sum(v for k, v in report.get("questions", {}).items() if k in ("answerable", "probes"))
    spent = sum(report.get("stage_seconds", {}).values())
    return spent / asked if asked and spent > 0 else FIRST_SECONDS_PER_QUESTION

"""How far to trust a knowledge base, in the chat app: verdict buttons under every answer (each click
keeps a test case), and the "Check this knowledge base" page (ragapp eval with a progress bar, the
score distributions with both thresholds drawn, the failures with their passages, "apply")."""

from __future__ import annotations

import time

import altair as alt
import streamlit as st

from ragapp import RAG
from ragapp.evaluate import EvalReport, add_feedback, apply_fitted, last_report, save_report, seconds_per_question
from ragapp.records import Answer
from ui.markdown import plain_markdown
from ui.words import WORDS, t
from ui.work import active, jobs, mine, remember

# The buttons under a reply, by what the reply was: an answer, or a refusal (verdict → its label).
ON_ANSWER = {"good": "fb_right", "bad": "fb_wrong", "should_refuse": "fb_should_refuse"}
ON_REFUSAL = {"right_refusal": "fb_right_refusal", "should_answer": "fb_in_documents"}


def feedback_buttons(rag: RAG, question: str, answer: Answer, key: str) -> None:
    """Verdict buttons under a reply: under an answer "right" / "wrong" / "should have refused", under a
    refusal "right to refuse" / "it is in the documents"; a click keeps the question, the reply and the
    verdict in the knowledge base's test set (ragapp eval runs them with the rest)."""
    given = st.session_state.setdefault("verdicts", {})
    labels = ON_ANSWER if answer.answered else ON_REFUSAL
    if key in given:
        st.caption(t("fb_kept", verdict=t(labels.get(given[key], "fb_right"))))
        return
    for column, (verdict, label) in zip(st.columns([1, 1, 2] if answer.answered else [1, 2]), labels.items()):
        if column.button(t(label), key=f"verdict-{verdict}-{key}"):
            add_feedback(rag.path, question, answer.text, verdict, tuple(c.source for c in answer.citations))
            given[key] = verdict
            st.rerun()


def score_chart(report: EvalReport) -> alt.LayerChart:
    """Best passage scores of answerable and probe questions, with the global and fitted thresholds."""
    rows = [{"best score": r["best"], "question": "answerable" if r["expect"] == "answer" else "must be refused"}
            for r in report.results if r["best"] is not None]
    bars = alt.Chart(alt.Data(values=rows)).mark_bar(opacity=0.6).encode(
        x=alt.X("best score:Q", bin=alt.Bin(maxbins=30)), y=alt.Y("count():Q", stack=None), color="question:N")
    lines = [{"threshold": f"{name} ({lang})", "value": th[name]} for lang, th in report.thresholds.items()
             for name in ("global", "fitted") if th[name] is not None]
    rules = alt.Chart(alt.Data(values=lines)).mark_rule(strokeWidth=2, strokeDash=[4, 3]).encode(
        x="value:Q", color=alt.Color("threshold:N", scale=alt.Scale(scheme="dark2")))
    return alt.layer(bars, rules).resolve_scale(color="independent")


def _failures(report: EvalReport) -> None:
    failed = report.failures()
    st.subheader(t("check_wrong", n=len(failed), total=len(report.results)))
    for r in failed[:50]:
        what = t("wrong_answered") if r["expect"] == "refuse" else (
            t("wrong_refused") if not r["answered"] or r["answer"].startswith(("I cannot", "根据已知")) else t("wrong_answer"))
        with st.expander(f"{what}: {plain_markdown(r['question'])}"):
            if r["gold"]:
                st.caption(t("expected", answer=plain_markdown(r["gold"][0]), source=plain_markdown(r["source"])))
            st.markdown(f"**ragapp:** {plain_markdown(r['answer'])}")
            for p in r["passages"]:
                st.caption(f"{plain_markdown(p['place'] or p['source'])} · {p['score']:.3f}")
                st.text(p["text"][:400])


def figure_rows(report: EvalReport) -> list[dict]:
    """The figures in plain words, one row per group and threshold, a threshold left out where it gives the
    same figures as one already shown (a fitted threshold equal to the global one)."""
    rows = []
    for group, points in report.figures.items():
        shown: list[dict] = []
        for point, figures in points.items():
            if figures in shown:
                continue
            shown.append(figures)
            value = _point_value(report, point)
            label = t(f"threshold_{point}", value=value) if f"threshold_{point}" in WORDS else point
            rows.append({t("col_group"): group, t("col_threshold"): label,
                         **{t(f"fig_{k}") if f"fig_{k}" in WORDS else k: v for k, v in figures.items()}})
    return rows


def _point_value(report: EvalReport, point: str) -> str:
    key = "in_force" if point == "in force" else point
    values = sorted({str(th.get(key)) for th in report.thresholds.values() if th.get(key) is not None})
    return " / ".join(values) or "-"


def show_report(rag: RAG, report: EvalReport) -> None:
    """The report: thresholds, figures, the plot, the failures, the apply button."""
    writer = t("check_written_by", writer=plain_markdown(report.writer)) if report.writer else ""
    st.caption(t("check_counts", answerable=report.questions["answerable"], probes=report.questions["probes"], writer=writer))
    if report.too_small:
        st.warning(t("check_too_small", why=plain_markdown(report.too_small)))
    st.dataframe(figure_rows(report), hide_index=True)
    st.altair_chart(score_chart(report), width="stretch")
    for lang, th in report.thresholds.items():
        fitted = t("check_fitted", value=th["fitted"]) if th["fitted"] is not None else t("check_not_fitted")
        st.caption(t("check_in_force", which=lang, value=th["in_force"], origin=plain_markdown(th["origin"]), fitted=fitted))
    fitted_any = any(th["fitted"] is not None for th in report.thresholds.values())
    if fitted_any and not report.applied and st.button(t("check_apply"), key="eval_apply", type="primary"):
        apply_fitted(rag, report)
        save_report(rag.path, report)
        st.rerun()
    for message in report.warnings:
        st.warning(plain_markdown(message))
    _failures(report)


def _duration(seconds: float) -> str:
    return t("minutes", n=max(1, round(seconds / 60))) if seconds >= 90 else t("seconds", n=max(1, round(seconds)))


def check_page(rag: RAG) -> None:
    """Run the knowledge base's self-test as a job (an estimate first, then progress with the time left;
    a rerun of the page never stops it), or show the last one."""
    st.title(t("check_title"))
    st.caption(t("check_about"))
    found = last_report(rag.path)
    running = active(rag.path, "eval")
    if running is None:
        questions = st.number_input(t("check_questions"), 4, 500, 20, key="eval_questions")
        each = seconds_per_question(found)
        st.caption(t("check_estimate", minutes=_duration(each * questions * 1.25), seconds=each,
                     measured=t("check_measured") if found else ""))
        if st.button(t("check_run"), key="eval_run"):
            remember(rag.path, jobs().submit(str(rag.path), lambda progress: rag.evaluate(
                int(questions), progress=lambda stage, done, total: progress(stage, "", done, total)), kind="eval"))
            st.rerun()
    check_status(rag)
    if found is None:
        st.info(t("check_never"))
        return
    show_report(rag, EvalReport(**found))


def check_status(rag: RAG) -> None:
    """Why this session's last check failed, if it did; while a check runs, its progress."""
    ended = [j for j in mine(rag.path, "eval") if j.status not in ("queued", "running")]
    if ended and ended[-1].status == "failed":
        st.error(plain_markdown(t("check_failed", error=ended[-1].error)))
    if active(rag.path, "eval") is not None:
        check_progress(rag)


@st.fragment(run_every="1s")
def check_progress(rag: RAG) -> None:
    """The running check's progress and time left, redrawn every second; when it ends, the page again."""
    running = active(rag.path, "eval")
    if running is None:
        st.rerun(scope="app")
        return
    started = st.session_state.setdefault("eval_started", {}).setdefault(running.id, time.monotonic())
    if running.status == "queued" or not running.total:
        st.progress(0.0, text=t("check_starting"))
    else:
        spent = time.monotonic() - started
        left = spent / max(running.done, 1) * (running.total - running.done)
        st.progress(min(1.0, running.done / running.total),
                    text=t("check_running", stage=running.stage, done=running.done, total=running.total, left=_duration(left)))
    if st.button(t("check_cancel"), key="eval_cancel"):
        jobs().cancel(running.id)

"""How far to trust a knowledge base, in the chat app: verdict buttons under every answer (each click
keeps a test case), and the "Check this knowledge base" page (ragapp eval with a progress bar, the
score distributions with both thresholds drawn, the failures with their passages, "apply")."""

from __future__ import annotations

import altair as alt
import streamlit as st

from ragapp import RAG
from ragapp.evaluate import EvalReport, add_feedback, apply_fitted, last_report, save_report
from ragapp.records import Answer
from ui.markdown import plain_markdown

VERDICTS = {"good": "👍", "bad": "👎", "should_refuse": "Should have refused"}


def feedback_buttons(rag: RAG, question: str, answer: Answer, key: str) -> None:
    """👍 / 👎 / "should have refused" under an answer; a click keeps the question, the answer and the
    verdict in the knowledge base's test set (ragapp eval runs them with the rest)."""
    given = st.session_state.setdefault("verdicts", {})
    if key in given:
        st.caption(f"Kept as a test case ({VERDICTS[given[key]]}).")
        return
    for column, (verdict, label) in zip(st.columns([1, 1, 4]), VERDICTS.items()):
        if column.button(label, key=f"verdict-{verdict}-{key}"):
            add_feedback(rag.path, question, answer.text, verdict, tuple(c.source for c in answer.citations))
            given[key] = verdict
            st.rerun()


def score_chart(report: EvalReport) -> alt.LayerChart:
    """Best passage scores of answerable and probe questions, with the global and fitted thresholds."""
    rows = [{"best score": r["best"], "question": "answerable" if r["expect"] == "answer" else "must be refused"}
            for r in report.results if r["best"] is not None]
    bars = alt.Chart(alt.Data(values=rows)).mark_bar(opacity=0.6).encode(
        x=alt.X("best score:Q", bin=alt.Bin(maxbins=30)), y=alt.Y("count():Q", stack=None), color="question:N")
    lines = [{"threshold": f"{name} ({lang})", "value": t[name]} for lang, t in report.thresholds.items()
             for name in ("global", "fitted") if t[name] is not None]
    rules = alt.Chart(alt.Data(values=lines)).mark_rule(strokeWidth=2, strokeDash=[4, 3]).encode(
        x="value:Q", color=alt.Color("threshold:N", scale=alt.Scale(scheme="dark2")))
    return alt.layer(bars, rules).resolve_scale(color="independent")


def _failures(report: EvalReport) -> None:
    failed = report.failures()
    st.subheader(f"What went wrong ({len(failed)} of {len(report.results)})")
    for r in failed[:50]:
        what = "answered, should have refused" if r["expect"] == "refuse" else (
            "refused" if not r["answered"] or r["answer"].startswith(("I cannot", "根据已知")) else "wrong answer")
        with st.expander(f"{what}: {plain_markdown(r['question'])}"):
            if r["gold"]:
                st.caption(f"Expected: {plain_markdown(r['gold'][0])} — from {plain_markdown(r['source'])}")
            st.markdown(f"**ragapp:** {plain_markdown(r['answer'])}")
            for p in r["passages"]:
                st.caption(f"{plain_markdown(p['place'] or p['source'])} · score {p['score']:.3f}")
                st.text(p["text"][:400])


def show_report(rag: RAG, report: EvalReport) -> None:
    """The report: thresholds, figures, the plot, the failures, the apply button."""
    st.caption(f"{report.questions['answerable']} answerable and {report.questions['probes']} probe questions"
               + (f", written by {plain_markdown(report.writer)}" if report.writer else ""))
    if report.too_small:
        st.warning(f"The set is too small to fit a threshold: {plain_markdown(report.too_small)}")
    st.dataframe([{"group": g, "threshold": p, **f} for g, points in report.figures.items() for p, f in points.items()],
                 hide_index=True)
    st.altair_chart(score_chart(report), width="stretch")
    for lang, t in report.thresholds.items():
        st.caption(f"{lang}: in force {t['in_force']} ({plain_markdown(t['origin'])}); fitted {t['fitted']}")
    fitted = any(t["fitted"] is not None for t in report.thresholds.values())
    if fitted and not report.applied and st.button("Apply this threshold", key="eval_apply", type="primary"):
        apply_fitted(rag, report)
        save_report(rag.path, report)
        st.rerun()
    for message in report.warnings:
        st.warning(plain_markdown(message))
    _failures(report)


def check_page(rag: RAG) -> None:
    """Run the knowledge base's self-test, or show the last one."""
    st.title("Check this knowledge base")
    st.caption("ragapp writes questions from your documents (a fifth of the documents hidden: their questions must be "
               "refused), answers them, and fits the refusal threshold to this knowledge base. A chat model on a "
               "server writes better questions than the packaged one.")
    questions = st.number_input("Questions to write", 4, 500, 50, key="eval_questions")
    if st.button("Run the check", key="eval_run"):
        bar = st.progress(0.0, text="Starting…")

        def progress(stage: str, done: int, total: int) -> None:
            bar.progress(min(done / max(total, 1), 1.0), text=f"{stage}: {done} of {total}")

        rag.evaluate(int(questions), progress=progress)
        bar.empty()
    found = last_report(rag.path)
    if found is None:
        st.info("This knowledge base has not been checked yet.")
        return
    show_report(rag, EvalReport(**found))

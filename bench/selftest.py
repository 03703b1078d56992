"""How far `ragapp eval`'s own test can be trusted, what its fitted threshold changes, and what it costs.

    python bench/selftest.py validity [--questions 200] [--real 150]   # SQuAD 2.0 / CMRC 2018 extracts
    python bench/selftest.py effect [--questions 50] [--docs 400]       # SciFact claims; the shared PDFs (hand-checked sets)
    python bench/selftest.py cost [--questions 50] [--docs 400]         # ragapp eval on a SciFact index of ~1,000 chunks

validity: on each extract's index (without the official holdout paragraphs), `ragapp eval` writes its
set (a fifth of the documents hidden, their questions probes) and runs it; the extract's real questions
are then run on the same index with the same documents hidden: answerable = questions whose paragraph
is visible, probes = questions whose paragraph is hidden and the official holdout-unanswerable ones.
Printed side by side: hit@5, false refusals and probe refusals at the global threshold and at each set's
fitted one, and the thresholds each set fits.

effect: the threshold fitted by `ragapp eval` on a knowledge base against the global one, measured with
questions that are not the writer's: SciFact's real claims (answerable: every relevant abstract indexed;
probes: the claims whose abstracts `ragapp eval` hid), and sets of questions about the shared PDFs
checked by hand (bench/selftest_sets/pdfs-en.jsonl: written by `ragapp eval`, kept only after reading
each against its page, answers corrected, plus 7 written by hand; pdfs-zh.jsonl, the Chinese PDFs:
written by hand; sources by file name, probes about the document each set hides). Needs ../shared/eval
beside the clone (or RAGAPP_EVAL).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EVAL, OUT, jsonl, machine, qrels, write_corpus  # noqa: E402
from bench.quality import _qa_sets, build  # noqa: E402
from ragapp import RAG  # noqa: E402
from ragapp.config import Config  # noqa: E402
from ragapp.evaluate import EvalReport, TestItem, TestSet, evaluate, last_report, read_set  # noqa: E402
from ragapp.evaluate import run_set as run_items  # noqa: E402

SETS = Path(__file__).resolve().parent / "selftest_sets"


EVAL_FIT = "fitted by ragapp eval"


def _row(name: str, report, point: str, values: dict[str, float | None] | None = None) -> str:
    f = report.figures["all"][point]
    values = values or {lang: v[point] if v[point] is not None else v["global"] for lang, v in report.thresholds.items()}
    t = ", ".join(f"{lang} {v:.3f}" for lang, v in values.items() if v is not None)
    return (f"| {name} | {point} ({t}) | {f['answerable']} / {f['probes']} | {f['hit@5']} | {f['false_refusals']} | "
            f"{f['probe_refusals']} | {f['accuracy']} |")


def real_set(rag: RAG, qa: list[dict], unanswerable: list[dict], hidden: tuple[str, ...], n: int, seed: int) -> TestSet:
    """The extract's own questions on the same index, with the synthetic run's documents hidden."""
    files = {Path(s).stem: s for s in rag.index().manifest.files}
    gone = {Path(s).stem for s in hidden}
    rng = random.Random(seed)
    visible = [r for r in qa if r["expect"] == "answer" and r["gold_pid"] in files and r["gold_pid"] not in gone]
    hid = [r for r in qa if r["expect"] == "answer" and r["gold_pid"] in gone]
    items = [TestItem(question=r["question"], answers=tuple(r["answers"]), source=files[r["gold_pid"]], origin="written")
             for r in rng.sample(visible, min(n, len(visible)))]
    items += [TestItem(question=r["question"], expect="refuse", origin="written")
              for r in rng.sample(hid, min(n // 3, len(hid))) + rng.sample(unanswerable, min(n // 3, len(unanswerable)))]
    return TestSet(items=items, hidden=hidden, writer="")


def validity(args) -> None:
    print(f"\nValidity: ragapp eval's written set against the extract's real questions, same index, same hidden "
          f"documents; {machine()}")
    print("| set | questions | threshold | answerable / probes | hit@5 | false refusals | probe refusals | accuracy |\n"
          "|---|---|---|---|---|---|---|---|")
    for name, corpus, holdout, qa, unanswerable in _qa_sets():
        if args.only and name not in args.only:
            continue
        rag = build(name + "-holdout", corpus, holdout)
        t0 = time.perf_counter()
        written = evaluate(rag, args.questions, seed=args.seed)
        secs = time.perf_counter() - t0
        real = run_items(rag, real_set(rag, qa, unanswerable, tuple(written.hidden), args.real, args.seed),
                         rag.path / "eval" / "real.jsonl", {}, {}, lambda *a: None, eval_fit(written))
        for point in ("global", "fitted"):
            print(_row(f"{name} | written by ragapp eval", written, point))
        for point in ("global", "fitted", EVAL_FIT):
            print(_row(f"{name} | real ({'their own fit' if point == 'fitted' else point})", real, point,
                       eval_fit(written)[EVAL_FIT] if point == EVAL_FIT else None))
        print(f"[{name}] written set: {written.written.get('kept')} kept of {written.written.get('tries')} "
              f"(dropped {written.written.get('dropped')}); {secs:.0f} s", flush=True)


def scifact_rag(docs: int) -> tuple[RAG, dict[str, dict[str, int]], list[dict]]:
    """An index of `docs` SciFact abstracts: every one a test claim cites, then the corpus in order."""
    corpus = jsonl(EVAL / "scifact" / "corpus.jsonl")
    judged = qrels(EVAL / "scifact" / "qrels" / "test.tsv")
    cited = {d for rel in judged.values() for d in rel}
    rows = [r for r in corpus if r["_id"] in cited]
    rows += [r for r in corpus if r["_id"] not in cited][: max(0, docs - len(rows))]
    folder = write_corpus(rows, OUT / "corpora" / f"scifact-claims-{docs}")
    rag = RAG(OUT / "indexes" / f"scifact-claims-{docs}", Config())
    if not (rag.path / "manifest.json").exists():
        rag.ingest([folder])
    queries = {q["_id"]: q for q in jsonl(EVAL / "scifact" / "queries.jsonl")}
    return rag, judged, [queries[q] for q in judged if q in queries]


def scifact_claims(rag: RAG, judged, claims, hidden: tuple[str, ...], n: int = 150, seed: int = 0) -> TestSet:
    """SciFact's claims as questions: answerable when none of their abstracts is hidden (`n` of them, drawn),
    probes when all are."""
    files = {Path(s).stem: s for s in rag.index().manifest.files}
    gone = {Path(s).stem for s in hidden}
    items = []
    for claim in claims:
        docs = set(judged[claim["_id"]])
        if not docs <= set(files):
            continue
        if docs & gone == docs:
            items.append(TestItem(question=claim["text"], expect="refuse", origin="written"))
        elif not docs & gone:
            items.append(TestItem(question=claim["text"], origin="written", source=files[sorted(docs)[0]]))
    asked = [i for i in items if i.expect == "answer"]
    asked = random.Random(seed).sample(asked, min(n, len(asked)))
    return TestSet(items=asked + [i for i in items if i.expect == "refuse"], hidden=hidden)


def pdf_rag(stem: str) -> RAG:
    """An index of the shared PDFs of one language (stem "pdfs-en" or "pdfs-zh"), built once."""
    folder = OUT / "corpora" / f"selftest-{stem}"
    if not folder.exists():
        folder.mkdir(parents=True)
        for pdf in sorted((EVAL / "pdfs").glob(f"{stem.split('-')[1]}_*.pdf")):
            shutil.copy(pdf, folder / pdf.name)
    rag = RAG(OUT / "indexes" / f"selftest-{stem}", Config())
    if not (rag.path / "manifest.json").exists():
        rag.ingest([folder])
    return rag


def hand_checked(rag: RAG, path: Path) -> TestSet:
    """A hand-checked set (sources by file name) with its sources as this index names them."""
    found = read_set(path)
    files = {Path(s).name: s for s in rag.index().manifest.files}
    items = [replace(i, source=files[i.source]) if i.source else i for i in found.items]
    return TestSet(items=items, hidden=tuple(files[h] for h in found.hidden), writer=found.writer)


def effect(args) -> None:
    print(f"\nEffect: global threshold against the one ragapp eval fits on the knowledge base (its own set, seed "
          f"{args.seed}), measured with real or hand-checked questions; {machine()}")
    print("| knowledge base | threshold | answerable / probes | hit@5 | false refusals | probe refusals | "
          "accuracy |\n|---|---|---|---|---|---|---|")
    if not args.pdfs_only:
        scifact_effect(args)
    for path in sorted(SETS.glob("*.jsonl")):
        if args.only and path.stem not in args.only:
            continue
        kb = pdf_rag(path.stem)
        fitted = evaluate(kb, args.questions, seed=args.seed)
        real = run_items(kb, hand_checked(kb, path), path, {}, {}, lambda *a: None, eval_fit(fitted))
        _effect_rows(f"shared PDFs {path.stem}: hand-checked questions", fitted, real)


def scifact_effect(args) -> None:
    rag, judged, claims = scifact_rag(args.docs)
    t0 = time.perf_counter()
    kept = last_report(rag.path) if args.reuse else None
    fitted = EvalReport(**kept) if kept else evaluate(rag, args.questions, seed=args.seed)
    how = "reused from its last run" if kept else f"took {time.perf_counter() - t0:.0f} s in this process"
    print(f"(SciFact: ragapp eval on {rag.info().chunks} chunks {how}; stages s {fitted.stage_seconds}; written "
          f"{fitted.written.get('tries')}, kept {fitted.written.get('kept')}, fitted {eval_fit(fitted)[EVAL_FIT]})", flush=True)
    real = run_items(rag, scifact_claims(rag, judged, claims, tuple(fitted.hidden), args.real, args.seed), rag.path / "eval" / "claims.jsonl",
                     {}, {}, lambda *a: None, eval_fit(fitted))
    _effect_rows(f"SciFact, {args.docs} abstracts: real claims", fitted, real)


def eval_fit(report) -> dict[str, dict[str, float | None]]:
    """The operating point `ragapp eval` fitted (the global threshold where it fitted none)."""
    return {EVAL_FIT: {lang: t["fitted"] if t["fitted"] is not None else t["global"] for lang, t in report.thresholds.items()}}


def _effect_rows(name: str, fitted, real) -> None:
    """`real` figures at the global threshold and at the one `fitted`'s run fitted."""
    for point in ("global", EVAL_FIT):
        print(_row(name, real, point, eval_fit(fitted)[EVAL_FIT] if point == EVAL_FIT else None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["validity", "effect", "cost"])
    parser.add_argument("--questions", type=int, default=None, help="questions ragapp eval writes (validity 200, else 50)")
    parser.add_argument("--real", type=int, default=150, help="real answerable questions per set (validity, SciFact claims)")
    parser.add_argument("--docs", type=int, default=400, help="SciFact abstracts in the index (effect, cost)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="validity, effect: only these sets (cmrc2018_dev, pdfs-zh, ...)")
    parser.add_argument("--pdfs-only", action="store_true", help="effect: only the shared PDFs' hand-checked sets")
    parser.add_argument("--reuse", action="store_true", help="effect: SciFact's threshold from the last ragapp eval on its index")
    args = parser.parse_args()
    args.questions = args.questions or (200 if args.what == "validity" else 50)
    if not (EVAL / "squad2_extract").exists():
        raise SystemExit(f"this benchmark needs the evaluation sets under {EVAL} (../shared/eval beside the clone, or RAGAPP_EVAL)")
    {"validity": validity, "effect": effect, "cost": cost}[args.what](args)


def cost(args) -> None:
    """`ragapp eval` as a user runs it: a new process, models loaded by it, the whole time counted."""
    rag, _, _ = scifact_rag(args.docs)
    chunks = rag.info().chunks
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "from ragapp.cli import main; main()", "eval", "--index", str(rag.path), "--questions",
                           str(args.questions), "--seed", str(args.seed), "--json"], capture_output=True, text=True, check=True)
    secs = time.perf_counter() - t0
    report = json.loads(done.stdout)
    print(f"\nCost: `ragapp eval --questions {args.questions}` on {chunks} chunks ({args.docs} SciFact abstracts), "
          f"{report['answerer']}; {machine()}")
    print(f"| total s | write s | search s | answer s | written / kept | answerable / probes |\n|---|---|---|---|---|---|\n"
          f"| **{secs:.0f}** | {report['stage_seconds']['write']} | {report['stage_seconds']['search']} | "
          f"{report['stage_seconds']['answer']} | {report['written']['tries']} / {report['written']['kept']} | "
          f"{report['questions']['answerable']} / {report['questions']['probes']} |")


if __name__ == "__main__":
    main()

"""Answer confidence on ../shared/eval: record every answer's signals with each packaged chat model, fit the
logistic weights per model and language on questions the end-to-end evaluation does not use, and print the
answers table with and without the confidence gate on the evaluation's own questions.

    python bench/confidence.py run [--fit-n 120]     # ask; the models take turns question by question
    python bench/confidence.py fit [--max-false 0.10] # weights (paste into ragapp/query/confidence.py), AUCs, table

`run` appends to bench/out/confidence/answers.jsonl and skips what is already there, so it can be resumed.
The evaluation questions are those of `bench/quality.py answers` (same seed and count); the fit questions are
drawn from the rest. A question the retrieval gate refuses never reaches the model and has no confidence.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.calibrate import auc, fit_logistic  # noqa: E402
from bench.common import OUT, contains_answer, machine  # noqa: E402
from bench.quality import _qa_sets, answer_sets, build  # noqa: E402
from ragapp import RAG  # noqa: E402
from ragapp.config import Config  # noqa: E402
from ragapp.query.confidence import ANY_MODEL, NO_TOKENS, TEXT_SIGNALS, TOKEN_SIGNALS, Signals, Weights  # noqa: E402

MODELS = ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
RECORDS = OUT / "confidence" / "answers.jsonl"


def questions(n_eval: int, n_fit: int, seed: int) -> list[tuple[str, str, dict, list[dict], set[str]]]:
    """(set, kind, row, corpus, holdout) for the evaluation's questions (split "eval") and the fit's ("fit")."""
    rng, fit_rng = random.Random(seed), random.Random(seed + 1)
    out = []
    for name, corpus, holdout, qa, unanswerable in _qa_sets():
        chosen = answer_sets(rng, n_eval, qa, holdout, unanswerable)
        used = {r["id"] for rows in chosen.values() for r in rows}
        rest = {"answerable": [r for r in qa if r["expect"] == "answer" and r["gold_pid"] not in holdout],
                "squad-impossible": [r for r in qa if r.get("squad_impossible")],
                "holdout-unanswerable": unanswerable}
        for kind, rows in chosen.items():
            out += [(name, kind, dict(r, split="eval"), corpus, holdout) for r in rows]
        for kind, rows in rest.items():
            left = [r for r in rows if r["id"] not in used]
            out += [(name, kind, dict(r, split="fit"), corpus, holdout) for r in fit_rng.sample(left, min(n_fit, len(left)))]
    return out


def run(args) -> None:
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["model"], r["id"]) for r in map(json.loads, RECORDS.read_text().splitlines())} if RECORDS.exists() else set()
    rags: dict[tuple[str, str], RAG] = {}
    items = questions(args.n, args.fit_n, args.seed)
    print(f"{len(items)} questions x {len(MODELS)} models; {machine()}", flush=True)
    with RECORDS.open("a", encoding="utf-8") as out:
        for i, (name, kind, r, corpus, holdout) in enumerate(items):
            order = MODELS if i % 2 == 0 else MODELS[::-1]  # turns, so drift of the machine hits both alike
            for model in order:
                if (model, r["id"]) in done:
                    continue
                key = (name, model)
                if key not in rags:
                    rags[key] = build(name + "-holdout", corpus, holdout, Config.load(None, generate__model=model))
                a = rags[key].ask(r["question"])
                stage = "answer" if a.answered else ("model" if a.model else "gate")
                out.write(json.dumps({"model": model, "id": r["id"], "set": name, "kind": kind, "split": r["split"],
                                      "lang": a.language, "stage": stage, "right": bool(a.answered and contains_answer(a.text, r["answers"])),
                                      "answerable": r["expect"] == "answer", "confidence": a.confidence, "signals": a.signals,
                                      "ms": a.timings_ms.get("total_ms", 0), "text": a.text[:200]}, ensure_ascii=False) + "\n")
                out.flush()
            if i % 50 == 0:
                print(f"{i}/{len(items)} {time.strftime('%H:%M:%S')}", flush=True)


def matrix(rows: list[dict], names: tuple[str, ...]) -> np.ndarray:
    return np.array([[r["signals"][n] for n in names] for r in rows], dtype=float)


def fit_weights(rows: list[dict], names: tuple[str, ...]) -> dict[str, float]:
    """Logistic weights on the signals `names` (standardised for the fit, returned on the raw scale)."""
    x, y = matrix(rows, names), np.array([r["right"] for r in rows], dtype=float)
    mean, std = x.mean(0), x.std(0) + 1e-9
    w = fit_logistic((x - mean) / std, y, l2=1.0)
    raw = w[1:] / std
    return {"bias": float(w[0] - raw @ mean), **{n: float(v) for n, v in zip(names, raw, strict=True)}}


def fit(args) -> None:
    rows = [json.loads(line) for line in RECORDS.read_text().splitlines()]
    fitted: dict = {}
    print(f"\nAnswer confidence: logistic weights per chat model and language, fitted on the fit split "
          f"({sum(r['split'] == 'fit' for r in rows)} fit questions asked of the models); {machine()}")
    print("| model | language | answers fitted | right among them | AUC right-vs-wrong, fit split | AUC, evaluation split | "
          "AUC without token probabilities, evaluation split |\n|---|---|---|---|---|---|---|")
    for model in MODELS:
        for lang in ("en", "zh"):
            mine = [r for r in rows if r["model"] == model and r["lang"] == lang and r["stage"] == "answer"]
            train, test = [r for r in mine if r["split"] == "fit"], [r for r in mine if r["split"] == "eval"]
            full, text = fit_weights(train, TEXT_SIGNALS + TOKEN_SIGNALS), fit_weights(train, TEXT_SIGNALS)
            fitted.setdefault(model, {})[lang] = {"tokens": full, NO_TOKENS: text}
            print(f"| {model} | {lang} | {len(train)} | {np.mean([r['right'] for r in train]):.2f} | {_auc(train, full):.3f} | "
                  f"{_auc(test, full):.3f} | {_auc(test, text):.3f} |")
    for lang in ("en", "zh"):
        both = [r for r in rows if r["lang"] == lang and r["stage"] == "answer" and r["split"] == "fit"]
        fitted.setdefault(ANY_MODEL, {})[lang] = {NO_TOKENS: fit_weights(both, TEXT_SIGNALS)}
    print("\nFITTED = " + json.dumps(_rounded(fitted), indent=4))
    curve(rows, fitted)
    table(rows, fitted, args.max_false)


def curve(rows: list[dict], fitted: dict) -> None:
    """Coverage against accuracy as min_confidence rises, per model and set, on the evaluation questions."""
    print("\nThe gate's trade-off on the evaluation questions: min_confidence -> false refusals / unanswerable refused / "
          "right among the answerable questions answered")
    points = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    print("| model | set | " + " | ".join(f"{m:.1f}" for m in points) + " |\n|---|---|" + "---|" * len(points))
    for model in MODELS:
        for name in ("squad2_extract", "cmrc2018_dev"):
            mine = [r for r in rows if r["model"] == model and r["set"] == name and r["split"] == "eval"]
            cells = []
            for m in points:
                got = [gated(r, fitted, m) for r in mine]
                ans, neg = [r for r in got if r["answerable"]], [r for r in got if not r["answerable"]]
                said = [r for r in ans if r["stage"] == "answer"]
                cells.append(f"{np.mean([r['stage'] != 'answer' for r in ans]):.2f} / {np.mean([r['stage'] != 'answer' for r in neg]):.2f}"
                             f" / {np.mean([r['right'] for r in said]) if said else float('nan'):.2f}")
            print(f"| {model} | {name} | " + " | ".join(cells) + " |")


def _auc(rows: list[dict], weights: dict[str, float]) -> float:
    p = np.array([_probability(r, weights) for r in rows])
    right = np.array([r["right"] for r in rows], dtype=bool)
    return auc(p[right], p[~right]) if right.any() and (~right).any() else float("nan")


def _probability(r: dict, weights: dict[str, float]) -> float:
    rest = {k: v for k, v in weights.items() if k != "bias"}
    return Weights(weights["bias"], rest, "").probability(Signals(**r["signals"]))


def _rounded(table: dict) -> dict:
    return {k: _rounded(v) if isinstance(v, dict) else round(v, 4) for k, v in table.items()}


def gated(r: dict, fitted: dict, minimum: float) -> dict:
    """The record as the gate at `minimum` would have answered it."""
    if r["stage"] != "answer" or minimum <= 0:
        return r
    p = _probability(r, fitted[r["model"]][r["lang"]]["tokens"])
    return r if p >= minimum else dict(r, stage="withheld", right=False)


def threshold(rows: list[dict], fitted: dict, max_false: float) -> float:
    """The highest min_confidence whose false refusals on the fit split's answerable questions stay within `max_false`."""
    answerable = [r for r in rows if r["split"] == "fit" and r["answerable"]]
    best = 0.0
    for minimum in np.arange(0.05, 0.95, 0.01):
        refused = np.mean([gated(r, fitted, minimum)["stage"] != "answer" for r in answerable])
        if refused <= max_false:
            best = float(minimum)
    return round(best, 2)


def table(rows: list[dict], fitted: dict, max_false: float) -> None:
    evaluation = [r for r in rows if r["split"] == "eval"]
    print(f"\nEnd to end on the evaluation questions of `bench/quality.py answers` (100 per kind and set; 49 SQuAD holdout), "
          f"the gate's min_confidence chosen per model on the fit split at <= {max_false:.2f} false refusals in all")
    print("| model | gate | set | right (answerable) | false refusals | holdout refused | SQuAD-impossible refused | "
          "right among answered answerable | ask p50 s | ask p95 s |\n|---|---|---|---|---|---|---|---|---|---|")
    for model in MODELS:
        minimum = threshold([r for r in rows if r["model"] == model], fitted, max_false)
        for gate in sorted({0.0, minimum}):
            for name in ("squad2_extract", "cmrc2018_dev"):
                got = [gated(r, fitted, gate) for r in evaluation if r["model"] == model and r["set"] == name]
                ans = [r for r in got if r["answerable"]]
                refused = {k: _share([r["stage"] != "answer" for r in got if r["kind"] == k])
                           for k in ("holdout-unanswerable", "squad-impossible")}
                answered = [r for r in ans if r["stage"] == "answer"]
                ms = sorted(r["ms"] for r in got if r["stage"] != "gate") or [0]
                print(f"| {model} | {'min_confidence ' + str(gate) if gate else 'off'} | {name} | "
                      f"{np.mean([r['right'] for r in ans]):.2f} | {np.mean([r['stage'] != 'answer' for r in ans]):.2f} | "
                      f"{refused['holdout-unanswerable']} | {refused['squad-impossible']} | {_share([r['right'] for r in answered])} | "
                      f"{ms[len(ms) // 2] / 1000:.1f} | {ms[int(len(ms) * 0.95)] / 1000:.1f} |")
        print(f"| {model} | chosen min_confidence: {minimum} |")


def _share(flags: list[bool]) -> str:
    return f"{np.mean(flags):.2f}" if flags else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["run", "fit"])
    parser.add_argument("--n", type=int, default=100, help="evaluation questions per kind and set (as bench/quality.py answers)")
    parser.add_argument("--fit-n", type=int, default=120, help="fit questions per kind and set")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--max-false", type=float, default=0.10, help="false refusals allowed in all (gate, model, confidence)")
    args = parser.parse_args()
    from ragapp.runtime import keep_freed_memory

    keep_freed_memory()
    globals()[args.part](args)


if __name__ == "__main__":
    main()

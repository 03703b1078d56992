"""Fit the refusal threshold on ../shared/eval: the best rerank score of answerable questions vs. questions
whose paragraphs were held out of the index. Uses only questions that bench/quality.py `answers` does not
sample for its evaluation (same seed), so the reported end-to-end figures are not fitted to.

    python bench/calibrate.py [--max-false-refusal 0.05]

Prints, per language, the score distribution and the threshold: the highest value that refuses at most
`--max-false-refusal` of the answerable calibration questions (the model itself refuses some more).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quality import _qa_sets, build  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-false-refusal", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=13, help="seed of the evaluation sample to leave out")
    parser.add_argument("--n", type=int, default=100, help="size of the evaluation sample to leave out")
    parser.add_argument("--per-set", type=int, default=400, help="calibration questions per kind and set")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for name, corpus, holdout, qa, unanswerable in _qa_sets():
        rag = build(name + "-holdout", corpus, holdout)
        answerable = [r for r in qa if r["expect"] == "answer" and r["gold_pid"] not in holdout]
        held = {r["id"] for r in rng.sample(answerable, min(args.n, len(answerable)))}
        held |= {r["id"] for r in rng.sample(unanswerable, min(args.n, len(unanswerable)))}
        impossible = [r for r in qa if r.get("squad_impossible")]
        if impossible:  # the same draws as `answers`, so those questions are left out here too
            held |= {r["id"] for r in rng.sample(impossible, min(args.n, len(impossible)))}
        pick = random.Random(args.seed + 1)
        cal_pos = [r for r in answerable if r["id"] not in held]
        # SQuAD's 49 holdout questions all go to the evaluation; its "impossible" questions (on-topic,
        # written to look answerable) stand in as English negatives.
        cal_neg = [r for r in unanswerable + impossible if r["id"] not in held]
        cal_pos = pick.sample(cal_pos, min(args.per_set, len(cal_pos)))
        cal_neg = pick.sample(cal_neg, min(args.per_set, len(cal_neg)))
        pos = np.array([rag.search(r["question"], top_k=1)[0].rerank_score for r in cal_pos])
        neg = np.array([rag.search(r["question"], top_k=1)[0].rerank_score for r in cal_neg])
        t = float(np.quantile(pos, args.max_false_refusal))
        print(f"[{name}] answerable n={len(pos)} median {np.median(pos):.3f} p5 {np.quantile(pos, 0.05):.3f}; "
              f"unanswerable n={len(neg)} median {np.median(neg):.3f} p95 {np.quantile(neg, 0.95):.3f}")
        print(f"[{name}] threshold {t:.3f}: false refusals {np.mean(pos < t):.3f}, refusals of unanswerable {np.mean(neg < t):.3f}")
        for q in (0.02, 0.1, 0.2):
            tq = float(np.quantile(pos, q))
            print(f"    at {tq:.3f} (answerable q{q}): refuses unanswerable {np.mean(neg < tq):.3f}")


if __name__ == "__main__":
    main()

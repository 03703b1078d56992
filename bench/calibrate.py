"""Fit the refusal threshold on ../shared/eval: answerable questions vs. questions whose paragraph is missing
from the index. Never uses a question that bench/quality.py `answers` samples for its evaluation.

    python bench/calibrate.py [--max-false-refusal 0.05]

Data it needs (not in this repository, for licence reasons): the evaluation sets of ../shared/eval
beside the clone, or wherever RAGAPP_EVAL points: squad2_extract/ and cmrc2018_dev/, each with
corpus.jsonl, holdout.json, *_qa_all.jsonl and *_holdout_unanswerable.jsonl. It says so and stops
when they are missing. Its calibration indexes are built through the real ingest into bench/out/.

Per set, a calibration index leaves out the official holdout paragraphs and, in addition, a random fifth
of the rest (seed 99): the answerable questions about those extra paragraphs become in-distribution
negatives (SQuAD's 49 official holdout questions all go to the evaluation, so English needs them).
The shipped refusal rule is a threshold on the best rerank score of the candidates: the value that
refuses `--max-false-refusal` of the answerable calibration questions. Also tried here, as a candidate
replacement: a logistic regression on `best` and `peak` (best minus the mean of the next four; an
answer-bearing passage often stands out from its neighbours), its bias moved to the same false-refusal
rate. Prints 5-fold cross-validated figures for both, the thresholds for ragapp/query/refusal.py, and how well
each other signal separates the classes (ROC AUC): dense cosine, query-term coverage of the passage and
of its best sentence, the top-1/top-2 margin, and with `--llm N` (slow: one LLM pass per question) the
chat model's log-probability of the refusal sentence after the grounded prompt, on N + N questions.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EVAL  # noqa: E402
from bench.quality import _qa_sets, add_embed_options, build, embed_variant  # noqa: E402
from ragapp import RAG  # noqa: E402
from ragapp.query.prompt import FALLBACK, build_prompt  # noqa: E402
from ragapp.rerank import query_coverage  # noqa: E402
from ragapp.text import detect_language  # noqa: E402


def gate_features(rerank_scores: list[float]) -> list[float]:
    """[best, peak] of one question's reranked candidates, in rerank order: `best` is the first one's
    score, as ragapp compares it with the threshold."""
    top = [rerank_scores[0]] + sorted(rerank_scores[1:], reverse=True)[:4]
    return [top[0], top[0] - float(np.mean(top[1:]))]


def signals(rag: RAG, question: str) -> dict[str, float]:
    """Candidate refusal signals for one question, from its reranked candidates."""
    hits = rag.search(question, top_k=rag.config.rerank.candidates)
    index, tokenize = rag.index(), rag.tokenizer()
    terms = tokenize(question)
    best, peak = gate_features([h.rerank_score for h in hits])
    return {"best": best, "peak": peak, "dense cosine": hits[0].dense_score or 0.0,
            "coverage of passage": query_coverage(terms, set(tokenize(hits[0].chunk.text)), index.term_idf),
            "coverage of best sentence": query_coverage(terms, set(tokenize(hits[0].support_text)), index.term_idf),
            "margin top-1 vs top-2": hits[0].rerank_score - hits[1].rerank_score}


def refusal_logprob(rag: RAG, question: str) -> float:
    """Mean log-probability the chat model gives the refusal sentence right after the grounded prompt."""
    import torch

    lang = detect_language(question)
    pc = rag.config.prompt
    prompt = build_prompt(question, rag.search(question, top_k=pc.max_chunks), lang, pc.max_context_tokens, pc.max_chunks,
                          rag.embedder.count_tokens)
    gen = rag.generator
    gen.warm_up()
    prefix = gen._inputs(prompt.messages)["input_ids"]
    refusal = gen._tokenizer(FALLBACK[lang], return_tensors="pt", add_special_tokens=False)["input_ids"]
    ids = torch.cat([prefix, refusal], dim=1)
    with torch.inference_mode():
        logits = gen._model(input_ids=ids).logits[0, prefix.shape[1] - 1 : -1].float()
    return float(torch.log_softmax(logits, -1).gather(1, refusal[0][:, None]).mean())


def question_pmi(rag: RAG, question: str, passages: int = 3) -> float:
    """How much likelier the chat model finds the question after reading a retrieved passage than after
    reading nothing (gain in mean per-token log-probability; best of the top `passages`). A question
    written about a passage reuses its details, so the passage it was written from should raise it
    most (the idea of UPR, Sachan et al. 2022, as a refusal signal)."""
    import torch

    gen = rag.generator
    gen.warm_up()
    en = detect_language(question) == "en"
    q = gen._tokenizer(question, return_tensors="pt", add_special_tokens=False)["input_ids"]

    def loglik(context: str) -> float:
        prefix = gen._tokenizer(context + ("Question: " if en else "问题："), return_tensors="pt",
                                add_special_tokens=False)["input_ids"]
        ids = torch.cat([prefix, q], dim=1)
        with torch.inference_mode():
            logits = gen._model(input_ids=ids).logits[0, prefix.shape[1] - 1 : -1].float()
        return float(torch.log_softmax(logits, -1).gather(1, q[0][:, None]).mean())

    hits = rag.search(question, top_k=passages)
    return max(loglik(("Passage: " if en else "段落：") + h.chunk.text + "\n") for h in hits) - loglik("")


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that an answerable question scores above an unanswerable one."""
    return float(np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :]))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 50) -> np.ndarray:
    """Weights (bias first) of an L2-regularised logistic regression, by Newton's method."""
    a = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(a.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(a @ w)))
        grad = a.T @ (p - y) + l2 * np.r_[0, w[1:]]
        hess = (a * (p * (1 - p))[:, None]).T @ a + l2 * np.diag(np.r_[0, np.ones(len(w) - 1)])
        w -= np.linalg.solve(hess, grad)
    return w


def operating_point(w: np.ndarray, pos: np.ndarray, max_false_refusal: float) -> np.ndarray:
    """The same weights with the bias moved so that `max_false_refusal` of `pos` score below 0."""
    z = pos @ w[1:] + w[0]
    return np.r_[w[0] - float(np.quantile(z, max_false_refusal)), w[1:]]


def cross_validate(x: np.ndarray, y: np.ndarray, max_false_refusal: float, folds: int = 5) -> tuple[float, float]:
    """(false refusals, negatives refused) of the gate on held-out folds."""
    order = np.random.default_rng(0).permutation(len(y))
    refused = np.zeros(len(y), bool)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        w = operating_point(fit_logistic(x[train], y[train]), x[train][y[train] == 1], max_false_refusal)
        refused[test] = x[test] @ w[1:] + w[0] < 0
    return float(refused[y == 1].mean()), float(refused[y == 0].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-false-refusal", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=13, help="seed of the evaluation sample to leave out")
    parser.add_argument("--n", type=int, default=100, help="size of the evaluation sample to leave out")
    parser.add_argument("--per-set", type=int, default=300, help="calibration questions per kind and set")
    parser.add_argument("--llm", type=int, default=0, metavar="N", help="also measure the LLM's refusal log-probability on N + N questions")
    add_embed_options(parser)
    needed = [EVAL / s / f for s in ("squad2_extract", "cmrc2018_dev") for f in ("corpus.jsonl", "holdout.json")]
    if not all(p.exists() for p in needed):
        raise SystemExit(f"calibration needs the evaluation sets under {EVAL} (../shared/eval beside the clone, or set "
                         f"RAGAPP_EVAL); missing: {', '.join(str(p) for p in needed if not p.exists())}")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print("| set | calibration questions (answerable / negative) | best-score threshold: false refusals / negatives refused | "
          "logistic on best + peak: false refusals / negatives refused |\n|---|---|---|---|")
    constants, separation = [], {}
    for name, corpus, holdout, qa, unanswerable in _qa_sets():
        answerable = [r for r in qa if r["expect"] == "answer" and r["gold_pid"] not in holdout]
        held = {r["id"] for r in rng.sample(answerable, min(args.n, len(answerable)))}
        held |= {r["id"] for r in rng.sample(unanswerable, min(args.n, len(unanswerable)))}
        impossible = [r for r in qa if r.get("squad_impossible")]
        if impossible:  # the same draws as `answers`, so the random state stays in step with it
            rng.sample(impossible, min(args.n, len(impossible)))
        pick = random.Random(99)
        rest = sorted({r["_id"] for r in corpus} - holdout)
        extra = set(pick.sample(rest, len(rest) // 5))
        config, suffix = embed_variant(args)
        rag = build(name + "-calibration" + suffix, corpus, holdout | extra, config)
        pos = [r for r in answerable if r["id"] not in held and r["gold_pid"] not in extra]
        neg = [r for r in answerable if r["id"] not in held and r["gold_pid"] in extra]
        neg += [r for r in unanswerable if r["id"] not in held]
        pos = pick.sample(pos, min(args.per_set, len(pos)))
        neg = pick.sample(neg, min(args.per_set, len(neg)))
        rows = [signals(rag, r["question"]) for r in pos + neg]
        x = np.array([[row["best"], row["peak"]] for row in rows])
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        for key in rows[0]:
            v = np.array([row[key] for row in rows])
            separation.setdefault(key, {})[name] = auc(v[y == 1], v[y == 0])
        if args.llm:
            few = pos[: args.llm] + neg[: args.llm]
            v = np.array([-refusal_logprob(rag, r["question"]) for r in few])
            separation.setdefault(f"LLM refusal log-probability ({args.llm} + {args.llm})", {})[name] = auc(v[: args.llm], v[args.llm :])
            v = np.array([question_pmi(rag, r["question"]) for r in few])
            separation.setdefault(f"LLM question likelihood gain from the passage ({args.llm} + {args.llm})", {})[name] = \
                auc(v[: args.llm], v[args.llm :])
            both = np.c_[x[: args.llm].tolist() + x[len(pos) : len(pos) + args.llm].tolist(), v]
            print(f"  {name}: best+peak+question gain, cross-validated at {args.max_false_refusal:.0%} false refusals: "
                  "false refusals {:.3f} / negatives refused {:.3f}".format(
                      *cross_validate(both, np.r_[np.ones(args.llm), np.zeros(args.llm)], args.max_false_refusal)))
        gate_fr, gate_neg = cross_validate(x, y, args.max_false_refusal)
        best_fr, best_neg = cross_validate(x[:, :1], y, args.max_false_refusal)
        print(f"| {name} | {len(pos)} / {len(neg)} | {best_fr:.3f} / {best_neg:.3f} | {gate_fr:.3f} / {gate_neg:.3f} |")
        threshold = float(np.quantile(x[y == 1, 0], args.max_false_refusal))
        constants.append(f'"{"zh" if name.startswith("cmrc") else "en"}": {threshold:.3f}')
    print("\nthresholds on all calibration questions (CALIBRATED_MIN_SCORE): " + ", ".join(constants))
    names = list(next(iter(separation.values())))
    print("\n| signal (ROC AUC, answerable vs. unanswerable) | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for key, values in separation.items():
        print(f"| {key} | " + " | ".join(f"{values.get(n, float('nan')):.3f}" for n in names) + " |")


if __name__ == "__main__":
    main()

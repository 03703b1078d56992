"""Generation speed per packaged chat model and runtime, on real RAG prompts (the prompts `RAG.ask` builds for
SQuAD and CMRC questions over their bench/out indexes). Prints prefill and decode tokens/s, the model's time
per answer (p50/p95) and whether each runtime's answers are the compiled llama-cpp-python's, word for word.

    python bench/generation.py [--questions 16] [--threads 2]

Runtimes, taking turns question by question: llama-cpp-python (compiled here; ragapp's default in-process
runtime), xllamacpp (prebuilt wheel, llama.cpp's server in-process) when it is installed, and xllamacpp with
prompt-lookup decoding (llama.cpp's n-gram speculative decoding: draft tokens copied from the prompt, checked
in one batch). llama-cpp-python's own prompt lookup (LlamaPromptLookupDecoding) stops with a ValueError in
0.3.36 ("could not broadcast input array", its scores buffer), so it is not among them. Greedy throughout.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine  # noqa: E402
from bench.quality import _qa_sets, build  # noqa: E402
from ragapp.config import Config  # noqa: E402
from ragapp.models import gguf_file  # noqa: E402
from ragapp.query.prompt import build_prompt  # noqa: E402

MODELS = ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")


def prompts(n: int) -> list[list[dict[str, str]]]:
    """The messages RAG.ask would send for n answerable questions, half SQuAD, half CMRC."""
    out = []
    config = Config()
    for name, corpus, holdout, qa, _ in _qa_sets():
        rag = build(name + "-holdout", corpus, holdout, config)
        rows = random.Random(5).sample([r for r in qa if r["expect"] == "answer" and r["gold_pid"] not in holdout], n // 2)
        for r in rows:
            hits = rag.search(r["question"], top_k=config.prompt.max_chunks)
            lang = "zh" if name.startswith("cmrc") else "en"
            out.append(build_prompt(r["question"], hits, lang, config.prompt.max_context_tokens, config.prompt.max_chunks,
                                    rag.embedder.count_tokens).messages)
    return out


class LlamaCppPython:
    """llama-cpp-python's Llama, timed by llama.cpp's own counters (prompt eval and eval)."""

    def __init__(self, gguf: Path, threads: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(gguf), n_ctx=4096, n_threads=threads, n_threads_batch=threads, seed=0, verbose=False)

    def __call__(self, messages: list[dict[str, str]]) -> tuple[str, int, float, int, float]:
        import llama_cpp

        self.llm.reset()  # every runtime prefills the whole prompt: compared alike
        ctx = self.llm._ctx.ctx
        llama_cpp.llama_perf_context_reset(ctx)
        reply = self.llm.create_chat_completion(messages=messages, max_tokens=128, temperature=0.0, top_k=1)
        perf = llama_cpp.llama_perf_context(ctx)
        usage = reply["usage"]
        return (reply["choices"][0]["message"]["content"], usage["prompt_tokens"], perf.t_p_eval_ms, usage["completion_tokens"],
                perf.t_eval_ms)


class XLlamaCpp:
    """xllamacpp's in-process llama.cpp server, timed by the `timings` of its reply."""

    def __init__(self, gguf: Path, threads: int, lookup: bool = False) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        if lookup:
            speculative = params.speculative
            speculative.types = [xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE]
            params.speculative = speculative
        params.model.path = str(gguf)
        params.n_ctx = 4096
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.cache_prompt = False  # every runtime prefills the whole prompt
        params.verbosity = -1
        self.server = xllamacpp.Server(params)

    def __call__(self, messages: list[dict[str, str]]) -> tuple[str, int, float, int, float]:
        reply = self.server.handle_chat_completions({"messages": messages, "max_tokens": 128, "temperature": 0,
                                                     "top_k": 1, "cache_prompt": False})
        t = reply["timings"]
        return (reply["choices"][0]["message"]["content"], t["prompt_n"], t["prompt_ms"], t["predicted_n"], t["predicted_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    messages = prompts(args.questions)
    cache = Config().cache_dir
    print(f"\nGeneration per model and runtime, {len(messages)} RAG prompts (greedy, whole prompt prefilled each time), "
          f"{args.threads} threads; {machine()}")
    print("| model | runtime | prompt tokens (median) | prefill tok/s | decode tok/s | model s per answer p50 | p95 | "
          "answers as llama-cpp-python's |\n|---|---|---|---|---|---|---|---|")
    for model in MODELS:
        gguf = gguf_file(model, cache)
        runtimes = {"llama-cpp-python": LlamaCppPython(gguf, args.threads)}
        if importlib.util.find_spec("xllamacpp") is not None:
            runtimes["xllamacpp (prebuilt)"] = XLlamaCpp(gguf, args.threads)
            runtimes["xllamacpp + prompt lookup"] = XLlamaCpp(gguf, args.threads, lookup=True)
        runs: dict[str, list] = {k: [] for k in runtimes}
        for m in [messages[0], *messages]:  # the first once unmeasured: warm-up
            for label, run in runtimes.items():
                t0 = time.perf_counter()
                text, n_p, t_p, n_e, t_e = run(m)
                runs[label].append((text.strip(), n_p, t_p, n_e, t_e, time.perf_counter() - t0))
        base = [r[0] for r in runs["llama-cpp-python"][1:]]
        for label, rows in runs.items():
            rows = rows[1:]
            walls = sorted(r[5] for r in rows)
            same = sum(a == b for a, b in zip((r[0] for r in rows), base, strict=True))
            prefill = f"{sum(r[1] for r in rows) / sum(r[2] for r in rows) * 1000:.0f}"
            decode = f"{sum(r[3] for r in rows) / max(1e-9, sum(r[4] for r in rows)) * 1000:.1f}"
            print(f"| {model} | {label} | {statistics.median(r[1] for r in rows):.0f} | {prefill} | {decode} | "
                  f"{statistics.median(walls):.2f} | {walls[int(len(walls) * 0.95)]:.2f} | {same}/{len(rows)} |", flush=True)
        del runtimes


if __name__ == "__main__":
    main()

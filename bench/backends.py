"""The same GGUF (Qwen2.5-Coder-0.5B-Instruct Q4_K_M) answering the same sample questions on every
chat backend, side by side in one run: transformers (bf16, de-quantised once), llama.cpp in-process,
and llama.cpp's OpenAI-compatible server over HTTP.

    python bench/backends.py               # all three, then llama.cpp without KV-prefix reuse
    python bench/backends.py --only llama-cpp

Each backend runs in its own process so peak memory is its own (for the server: the server's peak
plus the client's). Token counts use the model's own tokenizer for every backend. Prints the table
docs/benchmarks.md quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench.common import ROOT, machine, peak_rss_mb  # noqa: E402

QUESTIONS = ["How long does Mars take to orbit the Sun?", "Which planet is the hottest?", "Who discovered Neptune?",
             "长城的总长度是多少？", "西湖龙井属于哪一类茶？", "What does the enzyme RuBisCO do?"]
KINDS = ("transformers", "transformers-1-thread", "llama-cpp", "llama-cpp-1-thread", "llama-cpp-no-prefix-cache", "server")


def _server(gguf: Path, threads: int) -> tuple[subprocess.Popen, str]:
    from helpers.net import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "4096", "--n_threads", str(threads),
                             "--n_threads_batch", str(threads)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import urllib.request

    for _ in range(240):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
            return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("llama.cpp server did not start")


def _peak_of(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one(kind: str, index: str) -> dict:
    """Ask every question on one backend; figures as a dict."""
    from ragapp import RAG
    from ragapp.config import Config
    from ragapp.models import QWEN_NAME, qwen_gguf, resolve_generator

    threads = 1 if kind.endswith("-1-thread") else None
    config = Config.load(None, generate__backend="transformers", generate__threads=threads)
    server = None
    if kind == "server":
        server, url = _server(qwen_gguf(config.cache_dir), config.generate.threads)
        config = Config.load(None, generate__backend="openai", generate__base_url=url, generate__model="qwen")
    elif kind.startswith("llama-cpp"):
        config = Config.load(None, generate__backend="llama-cpp", generate__threads=threads)
    rag = RAG(index, config)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_generator(QWEN_NAME, config.cache_dir), local_files_only=True)
    t0 = time.perf_counter()
    rag.warm_up()
    load = time.perf_counter() - t0
    rows = []
    try:
        for q in QUESTIONS:
            if kind == "llama-cpp-no-prefix-cache":
                rag.generator._model.reset()  # forget the previous prompt's KV cache: the whole prompt is prefilled
            answer = rag.ask(q)
            t = answer.timings_ms
            prompt_tokens = _prompt_tokens(rag, tok, q)
            out_tokens = len(tok(answer.text, add_special_tokens=False)["input_ids"])
            gen_ms, first_ms = t.get("generate_ms", 0.0), t.get("model_first_token_ms", 0.0)
            rows.append({"q": q, "answer": answer.text, "total_ms": t["total_ms"], "first_ms": t.get("first_token_ms", t["total_ms"]),
                         "prefill_tps": prompt_tokens / max(first_ms, 1e-3) * 1000,
                         "decode_tps": max(out_tokens - 1, 0) / max(gen_ms - first_ms, 1e-3) * 1000,
                         "prompt_tokens": prompt_tokens, "out_tokens": out_tokens})
        peak = peak_rss_mb() + (_peak_of(server.pid) if server else 0.0)
    finally:
        if server:
            server.kill()
    return {"kind": kind, "load_s": load, "peak_mb": peak, "rows": rows}


def _prompt_tokens(rag, tok, question: str) -> int:
    from ragapp.query.prompt import build_prompt
    from ragapp.query.refusal import prompt_passages
    from ragapp.text import detect_language

    pc = rag.config.prompt
    hits = rag.search(question, top_k=max(rag.config.retrieve.top_k, pc.max_chunks))
    lang = detect_language(question)
    if pc.drop_below_threshold:
        hits = prompt_passages(hits, rag.min_score(lang))
    prompt = build_prompt(question, hits, lang, pc.max_context_tokens, pc.max_chunks,
                          rag.embedder.count_tokens, None, pc.window)
    text = tok.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
    return len(tok(text, add_special_tokens=False)["input_ids"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=KINDS, action="append")
    parser.add_argument("--one", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.index), ensure_ascii=False))
        return
    from ragapp import RAG

    work = Path(tempfile.mkdtemp(prefix="ragapp-backends-"))
    RAG(work / "index").ingest([ROOT / "data" / "samples"])
    results = []
    for kind in args.only or KINDS:
        out = subprocess.run([sys.executable, __file__, "--one", kind, "--index", str(work / "index")], capture_output=True,
                             text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if out.returncode != 0:
            print(f"{kind}: failed\n{out.stderr[-2000:]}")
            continue
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\nSame GGUF (Qwen2.5-Coder-0.5B-Instruct Q4_K_M), {len(QUESTIONS)} sample questions, 2 threads unless named; {machine()}")
    print("| backend | load s | ask p50 s | ask p95 s | first token p50 s | prefill tok/s | decode tok/s | prompt tokens | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        rows = r["rows"]
        def pct(key, q):
            return float(np.percentile([x[key] for x in rows], q)) / 1000
        def med(key):
            return statistics.median(x[key] for x in rows)
        print(f"| {r['kind']} | {r['load_s']:.1f} | {pct('total_ms', 50):.2f} | {pct('total_ms', 95):.2f} | "
              f"{pct('first_ms', 50):.2f} | {med('prefill_tps'):.0f} | {med('decode_tps'):.1f} | {med('prompt_tokens'):.0f} | "
              f"{r['peak_mb']:.0f} |")
    base = next((r for r in results if r["kind"] == "transformers"), None)
    for r in results:
        print(f"\n{r['kind']}:")
        for i, x in enumerate(r["rows"]):
            same = "" if base is None else (" (same as transformers)" if base["rows"][i]["answer"].strip() == x["answer"].strip() else "")
            print(f"  {x['total_ms'] / 1000:5.1f} s  {x['q']} → {x['answer'][:80]!r}{same}")


if __name__ == "__main__":
    main()

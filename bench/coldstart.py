"""A question from a cold shell, and the torch-free question encoder's vectors. Prints the figures
docs/benchmarks.md ("Cold start") quotes.

    python bench/coldstart.py cold [--before REF] [--runs 5]   # ragapp --help / search / ask, new processes
    python bench/coldstart.py serve [--before REF] [--runs 5]  # ragapp serve: its first answer from a cold start
    python bench/coldstart.py ui [--before REF] [--runs 3]     # the chat app: its first answer from a new process
    python bench/coldstart.py vectors                          # SciFact: cosines, nDCG@10 and search p50 per runtime

`cold` runs each command as a new process on the bundled samples (indexed first into bench/out), the
files in the page cache (one unmeasured run first), and reports the median wall time, the `ask --json`
stages and each process's peak resident memory. `--before REF` (repeatable) runs the same commands with the code
of a git commit (a worktree in bench/out) in the same run, side by side. `--drop-caches` also runs each
three times after dropping the page cache (needs root).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import EVAL, OUT, jsonl, machine, ndcg_at, qrels, run_cli, worktree  # noqa: E402

QUESTION = "How long does Mars take to orbit the Sun?"


def _trees(args) -> dict[str, Path]:
    """This tree, then each `--before` commit (a git worktree in bench/out), in the order given."""
    return {"this tree": ROOT, **{f"before ({ref})": worktree(ref) for ref in args.before}}


def _samples_index(code: Path, env: dict[str, str]) -> str:
    """The bundled samples indexed by a tree's own code (an older tree may not read a newer index)."""
    index = OUT / "roots" / ("this-tree" if code == ROOT else code.name) / "samples"  # a knowledge root of its own
    run_cli(code, ["ingest", str(ROOT / "data" / "samples"), "--index", str(index)], env)
    return str(index)


def _take_turns(variants: list, runs: int, env: dict[str, str]) -> dict[str, list]:
    """Each variant (label, code, argv, prepare) once unmeasured, then `runs` rounds in which every variant
    runs once: the machine's drift meets every variant alike."""
    results: dict[str, list] = {label: [] for label, _, _, _ in variants}
    for round_ in range(runs + 1):
        for label, code, argv, prepare in variants:
            if prepare:
                prepare()
            result = run_cli(code, argv, env)
            if round_:
                results[label].append(result)
    return results


def _forget_heads() -> None:
    """Delete the chat model's saved prompt heads (ragapp/generate/saved_head.py) from the model cache."""
    from ragapp.config import Config

    for head in (Path(Config().cache_dir) / "models").glob("llama-head-*.bin"):
        head.unlink()


def _drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def cold(args) -> None:
    env = dict(os.environ)
    trees = _trees(args)
    indexes = {label: _samples_index(code, env) for label, code in trees.items()}
    command_sets = {label: {"ragapp --help": ["--help"], "ragapp search": ["search", QUESTION, "--index", index],
                            "ragapp ask": ["ask", QUESTION, "--index", index, "--json"]} for label, index in indexes.items()}
    for model in args.model:  # this tree only: another packaged chat model answering
        command_sets["this tree"][f"ragapp ask --model {model}"] = ["ask", QUESTION, "--index", indexes["this tree"], "--json",
                                                                     "--model", model]
    print(f"\nCold commands, new process each, median of {args.runs} (files in the page cache; the variants take "
          f"turns run by run), {machine()}")
    print("| code | command | wall s (median) | min–max s | peak RSS MB |\n|---|---|---|---|---|")
    stages: dict[str, list[dict]] = {}
    for name in command_sets["this tree"]:
        variants = [(label, code, command_sets[label][name], None) for label, code in trees.items() if name in command_sets[label]]
        if name == "ragapp ask":
            variants.insert(1, ("this tree, no saved prompt head", ROOT, command_sets["this tree"][name], _forget_heads))
        runs = _take_turns(variants, args.runs, env)
        for label, _, _, _ in variants:
            walls = [r[0] for r in runs[label]]
            print(f"| {label} | `{name}` | {statistics.median(walls):.2f} | {min(walls):.2f}–{max(walls):.2f} | "
                  f"{max(r[1] for r in runs[label]):.0f} |")
            if name.startswith("ragapp ask"):
                key = label + ("" if name == "ragapp ask" else name.removeprefix("ragapp ask"))
                stages[key] = [{**json.loads(r[2])["timings_ms"], "wall_ms": r[0] * 1000} for r in runs[label]]
    _stage_table(stages)
    if args.drop_caches:
        _dropped(trees, command_sets, env)


def _dropped(trees: dict[str, Path], command_sets: dict[str, dict[str, list[str]]], env: dict[str, str], runs: int = 3) -> None:
    """Each command with the page cache dropped before every run (needs root), median of `runs`, taking turns."""
    print(f"\nPage cache dropped before each run, median of {runs}:")
    print("| code | command | wall s (median) | min–max s |\n|---|---|---|---|")
    for name in command_sets["this tree"]:
        walls: dict[str, list[float]] = {label: [] for label in trees if name in command_sets[label]}
        for _ in range(runs):
            for label, code in ((k, v) for k, v in trees.items() if k in walls):
                if not _drop_caches():
                    print("cannot drop the page cache here (needs root and a writable /proc/sys/vm)")
                    return
                walls[label].append(run_cli(code, command_sets[label][name], env)[0])
        for label, w in walls.items():
            print(f"| {label} | `{name}` | {statistics.median(w):.2f} | {min(w):.2f}–{max(w):.2f} |")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _chat(port: int, timeout_s: float = 300.0) -> tuple[float, str]:
    """Seconds until `ragapp serve` on `port` answers the question (waiting for it to listen), and the answer."""
    import urllib.error
    import urllib.request

    body = json.dumps({"model": "samples", "messages": [{"role": "user", "content": QUESTION}]}).encode()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body,
                                         {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:
                return time.perf_counter() - t0, json.load(reply)["choices"][0]["message"]["content"]
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    raise SystemExit(f"ragapp serve on port {port} did not answer in {timeout_s} s")


def serve(args) -> None:
    """`ragapp serve` started cold: seconds from the process start to its first answer, then two more;
    the trees take turns run by run."""
    env = dict(os.environ)
    trees = _trees(args)
    roots = {label: str(Path(_samples_index(code, env)).parent) for label, code in trees.items()}
    print(f"\n`ragapp serve` from its start to answers over HTTP, median of {args.runs} (the trees take turns), {machine()}")
    print("| code | first answer s (from process start) | second answer s | third answer s | answer |\n|---|---|---|---|---|")
    times: dict[str, list[tuple[float, float, float]]] = {label: [] for label in trees}
    texts: dict[str, str] = {}
    for _ in range(args.runs):
        for label, code in trees.items():
            first, second, third, texts[label] = _serve_once(code, roots[label], env)
            times[label].append((first, second, third))
    for label, runs in times.items():
        medians = " | ".join(f"{statistics.median(r[i] for r in runs):.2f}" for i in range(3))
        print(f"| {label} | {medians} | {texts[label].strip()[:60]} |")


def _serve_once(code: Path, root: str, env: dict[str, str]) -> tuple[float, float, float, str]:
    """One `ragapp serve` of `code` over `root`: seconds to its first answer from the start, the next two, the text."""
    port = _free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ragapp.cli", "serve", "--port", str(port), "--knowledge-root", root],
                            cwd=code, env={**env, "PYTHONPATH": str(code)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _, text = _chat(port)
        first = time.perf_counter() - t0
        return first, _chat(port)[0], _chat(port)[0], text  # a second question also opens the onnxruntime layers
    finally:
        proc.terminate()
        proc.wait(timeout=30)


_UI_SCRIPT = """
import sys, time
from streamlit.testing.v1 import AppTest
app = AppTest.from_file(sys.argv[1], default_timeout=600)
app.run()
app.chat_input[0].set_value(sys.argv[2]).run()
assert not app.exception and any("687" in m.value for m in app.markdown), [m.value for m in app.markdown]
"""


def ui(args) -> None:
    """The chat app (its script under Streamlit's AppTest) in a new process: from the start to the first
    answer on the page (start-up, the models' warm-up the page runs, the answer)."""
    env = dict(os.environ)
    trees = _trees(args)
    indexes = {label: _samples_index(code, env) for label, code in trees.items()}
    print(f"\nThe chat app's first answer from a new process, median of {args.runs} (the trees take turns), {machine()}")
    print("| code | first answer s (from process start) |\n|---|---|")
    walls: dict[str, list[float]] = {label: [] for label in trees}
    for _ in range(args.runs):
        for label, code in trees.items():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", _UI_SCRIPT, str(code / "ui" / "app.py"), QUESTION], cwd=code, check=True,
                           env={**env, "PYTHONPATH": str(code), "RAGAPP_INDEX": indexes[label]}, capture_output=True)
            walls[label].append(time.perf_counter() - t0)
    for label, w in walls.items():
        print(f"| {label} | {statistics.median(w):.2f} |")


def _stage_table(stages: dict[str, list[dict]]) -> None:
    """Where a cold ask's time goes: start-up (process start to the question), the rest of `total_ms`
    (opening the index, checking the models, building the prompt, citations), embedding the question,
    retrieval and rerank, the model (load overlapping the search, prefill to the first token), decoding."""
    print("\nA cold `ragapp ask`, median ms per stage (`--json` timings; start-up = wall − total):")
    print("| code | start-up | the rest (open index, models' checks, prompt, citations) | embed question | "
          "retrieve + rerank | load model + prefill | decode | wall |")
    print("|---|---|---|---|---|---|---|---|")
    for label, runs in stages.items():
        med = lambda key: statistics.median(r.get(key, 0.0) for r in runs)  # noqa: E731
        start = statistics.median(r["wall_ms"] - r["total_ms"] for r in runs)
        decode = statistics.median(r["generate_ms"] - r["model_first_token_ms"] for r in runs)
        other = statistics.median(r["total_ms"] - r["embed_ms"] - r["retrieve_ms"] - r["rerank_ms"] - r["generate_ms"]
                                  for r in runs)
        print(f"| {label} | {start:.0f} | {other:.0f} | {med('embed_ms'):.0f} | {med('retrieve_ms') + med('rerank_ms'):.0f} | "
              f"{med('model_first_token_ms'):.0f} | {decode:.0f} | {med('wall_ms'):.0f} |")


def vectors(args) -> None:
    """Every SciFact question through each runtime: cosines, and nDCG@10 on the SciFact index."""
    import numpy as np

    from bench.quality import build, rankings
    from ragapp.config import Config
    from ragapp.runtime import prepare_environment

    prepare_environment(Config().threads)  # as the CLI does: 1 thread for a question

    rows = jsonl(EVAL / "scifact" / "corpus.jsonl")
    queries = {r["_id"]: r["text"] for r in jsonl(EVAL / "scifact" / "queries.jsonl")}
    rel = qrels(EVAL / "scifact" / "qrels" / "test.tsv")
    texts = list(queries.values())
    rags = {rt: build("scifact", rows, config=Config.load(None, embed__query_runtime=rt)) for rt in ("auto", "numpy", "torch")}
    fp32 = build("scifact", rows, config=Config.load(None, embed__query_runtime="torch", embed__dtype="float32")).embedder
    ours = np.concatenate([rags["numpy"].embedder.embed_queries([t]) for t in texts])
    int8 = np.concatenate([rags["torch"].embedder.embed_queries([t]) for t in texts])
    int8_paired = np.concatenate([rags["torch"].embedder.embed_queries([t, texts[(i + 1) % len(texts)]])[:1]
                                  for i, t in enumerate(texts)])
    exact = np.concatenate([fp32.embed_queries([t]) for t in texts])
    print(f"\nQuestion vectors, all {len(texts)} SciFact queries, {machine()}")
    print("| compared | min cosine | 1st percentile | median | share ≥ 0.999 |\n|---|---|---|---|---|")
    auto = np.concatenate([rags["auto"].embedder.embed_queries([t]) for t in texts])  # onnxruntime from the 2nd
    for name, a, b in (("numpy (float32) vs torch float32", ours, exact),
                       ("auto (onnxruntime from a process's second question) vs torch float32", auto, exact),
                       ("numpy (float32) vs torch int8 (the default before)", ours, int8),
                       ("torch int8 alone vs torch int8 beside another question", int8, int8_paired),
                       ("torch float32 vs torch int8", exact, int8)):
        cos = (a * b).sum(axis=1)
        print(f"| {name} | {cos.min():.5f} | {np.percentile(cos, 1):.5f} | {np.median(cos):.6f} | {np.mean(cos >= 0.999):.1%} |")
    print(f"\nSciFact test ({len(rel)} queries), the index embedded in int8, {machine()}")
    print("| `query_runtime` | BM25 | dense | fused | fused+rerank | search p50 ms (warm) |\n|---|---|---|---|---|---|")
    times: dict[str, list[float]] = {runtime: [] for runtime in rags}
    for text in texts:  # the runtimes take turns question by question: the same machine conditions for each
        for runtime, rag in rags.items():
            t0 = time.perf_counter()
            rag.search(text)
            times[runtime].append((time.perf_counter() - t0) * 1000)
    for runtime, rag in rags.items():
        sums: dict[str, float] = {}
        for qid, relevant in rel.items():
            for method, ranking in rankings(rag, queries[qid]).items():
                sums[method] = sums.get(method, 0.0) + ndcg_at(ranking, relevant, 10)
        cells = " | ".join(f"{sums[m] / len(rel):.3f}" for m in ("bm25", "dense", "fused", "fused+rerank"))
        print(f"| {runtime} | {cells} | {statistics.median(times[runtime]):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["cold", "serve", "ui", "vectors"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", action="append", default=[], help="a git commit to run side by side (repeatable)")
    parser.add_argument("--model", action="append", default=[], help="`cold`: also ask with this chat model (repeatable)")
    parser.add_argument("--drop-caches", action="store_true", help="also three runs each with the page cache dropped")
    args = parser.parse_args()
    {"cold": cold, "serve": serve, "ui": ui, "vectors": vectors}[args.part](args)


if __name__ == "__main__":
    main()

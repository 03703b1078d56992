"""Several `ragapp ingest` processes writing one Milvus collection at once, run again and again: how
many runs end with exactly the files on disk, each once. Prints the figures docs/benchmarks.md
("Several writers on one Milvus collection") quotes.

    python bench/writers.py [--runs 50] [--four 10]

Each run is one pytest run of tests/test_milvus_writers.py's process tests (a fresh Milvus Lite server
on 127.0.0.1, fresh folders): `--runs` of the two processes sharing one folder, `--four` of four
processes with a folder each and one shared folder. A failing run's last lines are printed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402

TESTS = {"two processes, one folder": "test_two_ingest_processes_share_one_collection",
         "four processes, four folders + one shared": "test_four_ingest_processes_each_with_a_folder_and_one_shared"}


def run(test: str, runs: int) -> tuple[int, list[float]]:
    """Passing runs of one test, and each run's seconds."""
    passed, seconds = 0, []
    for n in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "integration or slow",
                               f"tests/test_milvus_writers.py::{test}"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
        seconds.append(time.perf_counter() - t0)
        if done.returncode == 0:
            passed += 1
        else:
            print(f"run {n + 1} of {test} failed:\n" + "\n".join(done.stdout.splitlines()[-15:]), flush=True)
    return passed, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--four", type=int, default=10)
    args = parser.parse_args()
    print(f"# {machine()}, {time.strftime('%Y-%m-%d')}")
    print("| case | runs | passed | median s per run |\n|---|---:|---:|---:|")
    for (case, test), runs in zip(TESTS.items(), (args.runs, args.four)):
        if runs:
            passed, seconds = run(test, runs)
            print(f"| {case} | {runs} | {passed} | {statistics.median(seconds):.1f} |", flush=True)


if __name__ == "__main__":
    main()

"""SQLite against DuckDB for ragapp's tables (issue 29): a 1,000,000-row sheet loaded and queried the
way ragapp queries (a sum with a filter, a count with a filter, a top row, a group by), each engine
in a new process, with its import time and peak memory. DuckDB is not a dependency: pip install duckdb.

    python bench/table_engines.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

QUERIES = {
    "sum with a filter": 'SELECT SUM("amount") FROM t WHERE "region" = \'r3\'',
    "count with a filter": 'SELECT COUNT(*) FROM t WHERE "amount" > 500',
    "top row": 'SELECT "id" FROM t ORDER BY "amount" DESC, "id" LIMIT 1',
    "group by": 'SELECT "region", SUM("amount") FROM t GROUP BY "region" ORDER BY 2 DESC',
}
_RUN = textwrap.dedent("""
    import json, resource, sys, time
    engine, folder, rows, queries = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    t0 = time.perf_counter()
    if engine == "sqlite":
        import sqlite3
        conn = sqlite3.connect(folder + "/t.sqlite")
        imported = time.perf_counter() - t0
        conn.execute('CREATE TABLE t ("_row" INTEGER, "id" REAL, "region" TEXT, "amount" REAL)')
    else:
        import duckdb
        conn = duckdb.connect(folder + "/t.duckdb")
        imported = time.perf_counter() - t0
        conn.execute('CREATE TABLE t ("_row" INTEGER, "id" DOUBLE, "region" VARCHAR, "amount" DOUBLE)')
    t0 = time.perf_counter()
    batch = []
    for n in range(rows):
        batch.append((n + 2, float(n), f"r{n % 7}", float(n % 1000) + 0.5))
        if len(batch) == 500 or n == rows - 1:
            conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", batch)
            batch = []
    conn.commit()
    loaded = time.perf_counter() - t0
    out = {"import_s": imported, "load_s": loaded}
    for name, sql in queries.items():
        best = min((lambda t: (conn.execute(sql).fetchall(), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(3))
        out[name] = best * 1000
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"{args.rows:,} rows; {machine()}")
    print("| engine | import s | load (INSERT in batches of 500) s | " + " | ".join(f"{q} ms" for q in QUERIES) + " | peak RSS MB |")
    print("|---" * (4 + len(QUERIES)) + "|")
    for engine in ("sqlite", "duckdb"):
        with tempfile.TemporaryDirectory() as folder:
            done = subprocess.run([sys.executable, "-c", _RUN, engine, folder, str(args.rows), json.dumps(QUERIES)],
                                  capture_output=True, text=True, check=True)
            r = json.loads(done.stdout)
            print(f"| {engine} | {r['import_s']:.3f} | {r['load_s']:.1f} | " + " | ".join(f"{r[q]:.1f}" for q in QUERIES)
                  + f" | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()

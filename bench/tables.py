"""Questions over tables (issue 29): the table path (a query the chat model writes, checked and run
read-only) against the ordinary path (passages → the model) on the same index and questions, with
the packaged model. The set: bench/table_data.py (spreadsheets written from the shared eval PDFs'
tables, gold answers computed from their rows in Python).

    python bench/tables.py [--limit N] [--from-pdfs]

--from-pdfs asks the same questions of the original PDFs instead of the spreadsheets written from
them (PDF tables as ragapp reads them from the text layer: docs/tables.md says which qualify).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import EVAL, OUT, machine  # noqa: E402
from table_data import PDF_OF, QUESTIONS, build  # noqa: E402

from ragapp import RAG, Config  # noqa: E402
from ragapp.tables.ask import sql_of  # noqa: E402
from ragapp.tables.sql import QueryRefused, check_query  # noqa: E402

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def numbers(text: str) -> list[float]:
    """The numbers written in an answer (1,234.5 → 1234.5)."""
    return [float(n.replace(",", "")) for n in _NUMBER.findall(text)]


def correct(answer: str, gold: object) -> bool:
    """A number within 0.5 % (or 0.01) of the gold; one of the gold names for a name (ties list several)."""
    if isinstance(gold, tuple):
        return any(correct(answer, g) for g in gold)
    if isinstance(gold, str):
        return gold.lower() in answer.lower()
    value = float(gold)  # type: ignore[arg-type]
    return any(abs(n - value) <= max(0.01, abs(value) * 0.005) for n in numbers(answer))


def valid_sql(reply: str) -> bool:
    """The model's reply holds one SELECT that parses (before ragapp's repairs and column checks)."""
    sql = sql_of(reply)
    try:
        return sql is not None and bool(check_query(sql, "t", "t"))
    except QueryRefused:
        return False


def ask_all(rag: RAG, data: dict, questions: list, names: dict[str, str]) -> list[dict]:
    replies: list[str] = []
    generate = rag.generator.generate

    def recorded(messages: list[dict]) -> str:  # the table path's calls (the ordinary path streams)
        reply = generate(messages)
        replies.append(reply)
        return reply

    rag.generator.generate = recorded  # type: ignore[method-assign]
    rows = []
    for lang, file, question, gold_of in questions:
        gold = gold_of(data[file]) if gold_of is not None else None
        replies.clear()
        t0 = time.perf_counter()
        answer = rag.ask(question)
        table = answer.table
        rows.append({"lang": lang, "file": names.get(file, file), "question": question, "gold": gold, "answer": answer.text,
                     "answered": answer.answered, "seconds": time.perf_counter() - t0,
                     "right": answer.answered and gold is not None and correct(answer.text, gold),
                     "refused_ok": gold is None and not answer.answered,
                     "query": table.sql if table else None, "table_file": Path(table.source).name if table else None,
                     "first_reply": replies[0] if replies else None,
                     "valid_sql": valid_sql(replies[0]) if replies else None})
    return rows


def summary(name: str, rows: list[dict]) -> None:
    for lang in ("en", "zh", "all"):
        part = [r for r in rows if lang in ("all", r["lang"])]
        answerable = [r for r in part if r["gold"] is not None]
        probes = [r for r in part if r["gold"] is None]
        queried = [r for r in answerable if r["query"]]
        tried = [r for r in answerable if r["valid_sql"] is not None]
        right_table = [r for r in queried if r["table_file"] == r["file"]]
        if tried:
            query_columns = (f"{sum(bool(r['valid_sql']) for r in tried) / len(tried):.2f} | {len(queried) / len(answerable):.2f} | "
                             f"{len(right_table) / max(1, len(queried)):.2f} | "
                             f"{sum(r['right'] for r in queried) / max(1, len(queried)):.2f}")
        else:
            query_columns = "– | – | – | –"
        print(f"| {name} | {lang} | {len(answerable)} | **{sum(r['right'] for r in answerable) / max(1, len(answerable)):.2f}** | "
              f"{query_columns} | {sum(r['refused_ok'] for r in probes)} of {len(probes)} | "
              f"{statistics.median(r['seconds'] for r in part):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions (a quick look)")
    parser.add_argument("--from-pdfs", action="store_true", help="ask the original PDFs instead of the spreadsheets")
    args = parser.parse_args()
    docs, index = OUT / "tables-docs", OUT / "tables-index"
    data = build(EVAL, docs)
    names: dict[str, str] = {}
    if args.from_pdfs:  # copies in bench/out (never in the repository)
        docs, index, names = OUT / "tables-pdfs", OUT / "tables-pdf-index", PDF_OF
        docs.mkdir(parents=True, exist_ok=True)
        for pdf in set(PDF_OF.values()):
            shutil.copyfile(EVAL / "pdfs" / pdf, docs / pdf)
    report = RAG(index).ingest([docs])
    print(f"ingest: {report.chunks} chunks, {report.seconds:.1f} s; {machine()}", file=sys.stderr)
    questions = QUESTIONS[: args.limit] if args.limit else QUESTIONS
    results = {}
    for name, enabled in (("table path", True), ("ordinary path", False)):
        rag = RAG(index, Config.load(tables__enabled=enabled))
        results[name] = ask_all(rag, data, questions, names)
    print("| path | lang | answerable | accuracy | valid SQL | a query answered | right table | query right | probes refused | median s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        summary(name, rows)
    out = OUT / ("tables-pdf-results.json" if args.from_pdfs else "tables-results.json")
    out.write_text(json.dumps(results, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    print(f"per question: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

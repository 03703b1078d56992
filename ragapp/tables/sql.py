"""Running a query a model wrote, and nothing else: parsed with sqlglot (one SELECT over the one table
it was shown, every other table name refused), then run on a read-only SQLite connection whose
authorizer allows reads and a list of pure functions only (no writes, ATTACH, PRAGMA, extensions or
file access), under a time limit, a row limit and a byte limit on every value and on the result.

Two layers on purpose: the parser gives the model a reason it can be told; the authorizer is
SQLite's own check of what the compiled statement does, which no parser mistake can get past.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

# Functions a query may call: aggregates, arithmetic, text and dates (no I/O, no extensions).
FUNCTIONS = frozenset("""
    sum total count avg min max abs round coalesce ifnull nullif iif lower upper length substr substring trim
    ltrim rtrim replace instr like glob printf format typeof date time datetime julianday strftime cast
    group_concat char unicode hex sign ceil ceiling floor
""".split())
MAX_CITED_ROWS = 200
# SQLite's own limits on the read-only connection: a string or blob (a printf, replace, group_concat or
# char result, a stored cell) larger than MAX_VALUE_BYTES is an error at the moment it would be built,
# where the progress handler cannot reach (one huge printf is a single step).
MAX_VALUE_BYTES = 1_000_000
MAX_RESULT_BYTES = 1_000_000
_LIMITS = {sqlite3.SQLITE_LIMIT_LENGTH: MAX_VALUE_BYTES, sqlite3.SQLITE_LIMIT_SQL_LENGTH: 100_000,
           sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 100, sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 20,
           sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 20, sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 1_000,
           sqlite3.SQLITE_LIMIT_ATTACHED: 0, sqlite3.SQLITE_LIMIT_VDBE_OP: 100_000}
# A printf/format conversion: SQLite repeats `%.Nc` N times one character at a time in a single step
# (999,999,999 took 11 s, out of the clock's and the length limit's reach), so widths and precisions
# must be written out, three digits at most.
_CONVERSION = re.compile(r"%[-+ 0#,!]*(\*|\d*)(?:\.(\*|\d*))?")
MAX_WIDTH_DIGITS = 3
# The clock is read every PROGRESS_STEPS virtual-machine steps (about a millisecond's work).
PROGRESS_STEPS = 1_000
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}


class QueryRefused(ValueError):
    """A query that is not one read-only SELECT over the shown table, or that failed or ran too long."""


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of a query's result; `truncated` when more rows (or bytes) than the limit came."""

    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    truncated: bool = False


def _parse(sql: str):
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        statements = [s for s in sqlglot.parse(sql, read="sqlite") if s is not None]
    except SqlglotError as exc:
        raise QueryRefused(f"not valid SQL ({str(exc).splitlines()[0][:200]})") from exc
    if len(statements) != 1:
        raise QueryRefused(f"{len(statements)} statements; one SELECT is allowed")
    tree = statements[0]
    if not isinstance(tree, (exp.Select, exp.SetOperation)):
        raise QueryRefused(f"a {tree.key.upper()} statement; only SELECT is allowed")
    return tree


def check_query(sql: str, alias: str, table: str) -> str:
    """The query with the table the model knew as `alias` renamed to the stored `table`; QueryRefused
    naming why a query is not a single SELECT over that table."""
    from sqlglot import exp

    tree = _parse(sql)
    for node in tree.walk():
        if isinstance(node, (exp.DML, exp.DDL, exp.Command, exp.Pragma, exp.Attach, exp.Detach, exp.Copy)):
            raise QueryRefused(f"{node.key.upper()} is not allowed in a query")
    _check_formats(tree)
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for node in tree.find_all(exp.Table):
        if node.name.lower() in ctes and not node.args.get("db"):
            continue
        if node.name.lower() != alias.lower() or node.args.get("db") or node.args.get("catalog"):
            raise QueryRefused(f"table {node.sql(dialect='sqlite')} is not the table shown ({alias})")
        node.set("this", exp.to_identifier(table, quoted=True))
    return tree.sql(dialect="sqlite")


def _check_formats(tree) -> None:
    """QueryRefused for a printf/format whose format is not a written string, or whose width or precision
    is `*` or longer than MAX_WIDTH_DIGITS digits."""
    from sqlglot import exp

    for node in tree.find_all(exp.Format, exp.Anonymous):
        name = "format" if isinstance(node, exp.Format) else str(node.name).lower()
        if name not in ("printf", "format"):
            continue
        first = node.this if isinstance(node, exp.Format) else (node.expressions or [None])[0]
        if not (isinstance(first, exp.Literal) and first.is_string):
            raise QueryRefused(f"{name}() needs its format written as a string")
        for width, precision in _CONVERSION.findall(first.this):
            if "*" in (width, precision) or max(len(width), len(precision)) > MAX_WIDTH_DIGITS:
                raise QueryRefused(f"{name}() widths and precisions are written out, {MAX_WIDTH_DIGITS} digits at most")


def cited_rows_query(sql: str) -> str | None:
    """A query for the `_row` numbers of the rows that fed `sql` (its FROM and WHERE; its ORDER BY and
    LIMIT too when it does not aggregate), or None for a query too involved to say (joins, CTEs, sets)."""
    from sqlglot import exp

    tree = _parse(sql)
    source = tree.args.get("from_") or tree.args.get("from")  # the key's name moved in sqlglot 26
    if not isinstance(tree, exp.Select) or tree.args.get("with_") or tree.args.get("with") or tree.args.get("joins") or source is None \
            or not isinstance(source.this, exp.Table):
        return None
    query = exp.select(exp.column("_row", quoted=True)).from_(source.this.copy())
    if tree.args.get("where") is not None:
        query = query.where(tree.args["where"].this.copy())
    aggregated = tree.args.get("group") is not None or any(True for _ in tree.find_all(exp.AggFunc))
    if not aggregated and tree.args.get("order") is not None:
        query.set("order", tree.args["order"].copy())
    limit = tree.args.get("limit") if not aggregated else None
    return query.limit(limit.expression.copy() if limit is not None else MAX_CITED_ROWS).sql(dialect="sqlite")


def _authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
    if action in _ALLOWED or action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in FUNCTIONS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that can only read the store at `path` (opened read-only, query_only, no extensions),
    every value held to MAX_VALUE_BYTES."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5, check_same_thread=False)
    conn.execute("PRAGMA query_only = ON")
    for category, limit in _LIMITS.items():
        conn.setlimit(category, limit)
    return conn


def _size(row: tuple) -> int:
    return sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in row)


def run_query(conn: sqlite3.Connection, sql: str, timeout_s: float, max_rows: int) -> QueryResult:
    """Run a checked query under the authorizer, stopped after `timeout_s`; at most `max_rows` rows and
    MAX_RESULT_BYTES kept."""
    deadline = time.monotonic() + timeout_s
    conn.set_authorizer(_authorizer)
    conn.set_progress_handler(lambda: time.monotonic() > deadline, PROGRESS_STEPS)
    rows: list[tuple] = []
    size, truncated = 0, False
    try:
        cursor = conn.execute(sql)
        columns = tuple(d[0] for d in cursor.description or ())
        for row in cursor:
            size += _size(row)
            if len(rows) == max_rows or size > MAX_RESULT_BYTES:
                truncated = True
                break
            rows.append(row)
        cursor.close()
    except sqlite3.DatabaseError as exc:
        if time.monotonic() > deadline:
            raise QueryRefused(f"stopped after {timeout_s:g} s") from exc
        raise QueryRefused(f"the query failed ({exc})") from exc
    finally:
        conn.set_authorizer(None)
        conn.set_progress_handler(None, 0)
    return QueryResult(columns, tuple(rows), truncated)

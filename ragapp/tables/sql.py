"""Running a query a model wrote, and nothing else: parsed with sqlglot (one SELECT over the one table
it was shown, every other table name refused), then run on a read-only SQLite connection whose
authorizer allows reads and a list of pure functions only (no writes, ATTACH, PRAGMA, extensions or
file access), under a time limit and a row limit.

Two layers on purpose: the parser gives the model a reason it can be told; the authorizer is
SQLite's own check of what the compiled statement does, which no parser mistake can get past.
"""

from __future__ import annotations

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
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}


class QueryRefused(ValueError):
    """A query that is not one read-only SELECT over the shown table, or that failed or ran too long."""


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of a query's result; `truncated` when more rows than the limit came."""

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
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for node in tree.find_all(exp.Table):
        if node.name.lower() in ctes and not node.args.get("db"):
            continue
        if node.name.lower() != alias.lower() or node.args.get("db") or node.args.get("catalog"):
            raise QueryRefused(f"table {node.sql(dialect='sqlite')} is not the table shown ({alias})")
        node.set("this", exp.to_identifier(table, quoted=True))
    return tree.sql(dialect="sqlite")


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
    """A connection that can only read the store at `path` (opened read-only, query_only, no extensions)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5, check_same_thread=False)
    conn.execute("PRAGMA query_only = ON")
    return conn


def run_query(conn: sqlite3.Connection, sql: str, timeout_s: float, max_rows: int) -> QueryResult:
    """Run a checked query under the authorizer, stopped after `timeout_s`; at most `max_rows` rows kept."""
    deadline = time.monotonic() + timeout_s
    conn.set_authorizer(_authorizer)
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        cursor = conn.execute(sql)
        rows = cursor.fetchmany(max_rows + 1)
        columns = tuple(d[0] for d in cursor.description or ())
    except sqlite3.DatabaseError as exc:
        if time.monotonic() > deadline:
            raise QueryRefused(f"stopped after {timeout_s:g} s") from exc
        raise QueryRefused(f"the query failed ({exc})") from exc
    finally:
        conn.set_authorizer(None)
        conn.set_progress_handler(None, 0)
    return QueryResult(columns, tuple(rows[:max_rows]), len(rows) > max_rows)

"""Questions over tables: when retrieval's best hits are rows of a stored table, the chat model is
shown that table's schema and a few rows and writes one query; ragapp checks it (ragapp.tables.sql),
runs it read-only, states the result in a sentence and cites the rows that fed it. A query that
fails, refers to what the table does not have, or returns nothing gives None: the ordinary path
answers (or refuses) instead."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ragapp.config import TablesConfig
from ragapp.records import Hit, TableQuery
from ragapp.tables.sql import QueryRefused, check_query, cited_rows_query, connect_readonly, run_query
from ragapp.tables.store import TABLES_FILE, Column, TableInfo, catalog, quote

ALIAS = "t"
# A text column's values are listed in the prompt when the first DISTINCT_SCAN rows hold at most DISTINCT_SHOWN.
DISTINCT_SCAN = 10_000
DISTINCT_SHOWN = 12
# A name the model wrote is read as a column when it is this close (difflib's ratio) to exactly one.
CLOSE_NAME = 0.8
_SQL_BLOCK = re.compile(r"```(?:sql|sqlite)?\s*(.*?)```", re.S | re.I)
# A run of text with non-ASCII characters outside quotes and operators: a column name the model left bare.
_BARE_RUN = re.compile(r"[^\s'\"(),=<>!;*+\-]*[^\x00-\x7f][^\s'\"(),=<>!;*+\-]*")
_SQL_START = re.compile(r"\b(SELECT|WITH)\b", re.I)
_SYSTEM = ("You write one SQLite query that answers the question from the table t below. Use only table t and "
           "its columns, in double quotes. Numbers are stored as numbers (a percentage as 5.37 for 5.37%). "
           "To give a value of a row, select that column; use COUNT only to count rows. For example, with "
           "CREATE TABLE t (\"City\" TEXT, \"Visitors\" REAL), \"How many visitors did Oslo have?\" is "
           "SELECT \"Visitors\" FROM t WHERE \"City\" = 'Oslo', and \"How many cities had over 1000 visitors?\" is "
           "SELECT COUNT(*) FROM t WHERE \"Visitors\" > 1000. "
           "Reply with the SQL query only. If the table cannot answer the question, reply NONE.")
# (one value, several values, where: with the count of rows that fed it, without, "and more" for a cut list)
_SENTENCE = {
    "en": ("The answer is {value}, from {where}.", "The answer ({where}): {value}.", "{n} row(s) of {file}", "{file}", "; …"),
    "zh": ("答案是 {value}（依据{where}）。", "答案（依据{where}）：{value}。", "{file}中的 {n} 行", "{file}", "；……"),
}

Ask = Callable[[list[dict[str, str]]], str]


def sql_of(reply: str) -> str | None:
    """The query in a model's reply (a fenced block, or the text from its first SELECT/WITH); None for NONE."""
    block = _SQL_BLOCK.search(reply)
    text = block.group(1) if block else reply
    start = _SQL_START.search(text)
    if start is None:
        return None
    return text[start.start():].split(";")[0].strip() or None


def _plain(value: object) -> str:
    """A value as SQL would compare it (1200, not 1,200)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "NULL" if value is None else str(value)


def value_text(value: object) -> str:
    """A result value as a person writes it (12,345; 5.37; text as it is)."""
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.4f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


class TableQA:
    """Answers from the tables in `<folder>/tables.sqlite` (see the module's docstring)."""

    def __init__(self, folder: Path, config: TablesConfig) -> None:
        self.path, self.config = Path(folder) / TABLES_FILE, config
        self._local = threading.local()  # a read-only connection per thread

    def _conn(self) -> sqlite3.Connection | None:
        if not self.path.is_file():
            return None
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect_readonly(self.path)
        return conn

    def tables(self, files: Mapping[str, str]) -> list[TableInfo]:
        """The stored tables of the documents `files` (source → sha256) lists."""
        conn = self._conn()
        return catalog(conn, files) if conn is not None else []

    def choose(self, question: str, hits: Sequence[Hit], tables: Sequence[TableInfo]) -> TableInfo | None:
        """The table of the best hits (the one whose column names the hit's text mentions most), else the
        table whose column names the question mentions most; None when neither."""
        for hit in hits[: self.config.hits]:
            c = hit.chunk
            mine = [t for t in tables if t.source == c.source and t.page == c.page and t.label == c.label]
            if mine:
                return max(mine, key=lambda t: sum(col.name in c.text for col in t.columns))
        named = [(sum(len(col.name) > 1 and col.name.lower() in question.lower() for col in t.columns), t) for t in tables]
        best = max(named, key=lambda x: x[0], default=(0, None))
        return best[1] if best[0] >= 2 else None

    def messages(self, question: str, table: TableInfo, error: str = "", previous: str = "") -> list[dict[str, str]]:
        """The prompt: the table's schema and sample rows, the question (and, on a retry, what went wrong)."""
        cols = ",\n".join(f"  {quote(c.name)} {c.kind}{self._comment(table, c)}" for c in table.columns)
        user = f"CREATE TABLE t (\n{cols}\n);\n"
        sample = self._sample(table)
        if sample:
            user += f"/* {len(sample)} example rows:\n" + "\n".join(" | ".join(_plain(v) for v in r) for r in sample) + "\n*/\n"
        user += f"Question: {question}\nSQL:"
        messages = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]
        if error:
            messages += [{"role": "assistant", "content": previous},
                         {"role": "user", "content": f"That query failed: {error}. Write a corrected query for table t."}]
        return messages

    def _comment(self, table: TableInfo, column: Column) -> str:
        """A column's unit, or a text column's values when it has few (so the model matches them as written)."""
        if column.unit:
            return f" -- {column.unit}"
        conn = self._conn()
        if column.kind != "TEXT" or conn is None:
            return ""
        name = quote(column.name)
        values = [v for (v,) in conn.execute(f"SELECT DISTINCT {name} FROM (SELECT {name} FROM {quote(table.name)} "
                                              f"LIMIT {DISTINCT_SCAN}) LIMIT {DISTINCT_SHOWN + 1}") if v is not None]
        if not values or len(values) > DISTINCT_SHOWN:
            return ""
        return " -- values: " + ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)

    def _sample(self, table: TableInfo) -> list[tuple]:
        conn = self._conn()
        if conn is None or not self.config.sample_rows:
            return []
        names = ", ".join(quote(c.name) for c in table.columns)
        return conn.execute(f"SELECT {names} FROM {quote(table.name)} LIMIT ?", (self.config.sample_rows,)).fetchall()

    def answer(self, question: str, hits: Sequence[Hit], files: Mapping[str, str], ask: Ask) -> TableQuery | None:
        """A TableQuery answering `question` from a table, or None (no table fits, no valid query, no result)."""
        table = self.choose(question, hits, self.tables(files))
        conn = self._conn()
        if table is None or conn is None:
            return None
        error, reply = "", ""
        for _ in range(self.config.attempts):
            reply = ask(self.messages(question, table, error, reply))
            sql = sql_of(reply)
            if sql is None:
                return None  # the model says the table cannot answer
            try:
                checked = _check_columns(check_query(quote_columns(sql, table), ALIAS, table.name), table)
                check_grounded(checked, question)
                result = run_query(conn, checked, self.config.timeout_s, self.config.max_rows)
            except QueryRefused as exc:
                error = str(exc)
                continue
            if not result.rows or all(v is None for r in result.rows for v in r):
                error = "it returned no rows (match text values exactly as the column's values are written)"
                continue
            rows = self._cited(conn, checked)
            if rows == ():
                # Nothing matched the query's filter: a zero or an empty sum from a name the table does
                # not hold is no answer (the ordinary path answers or refuses).
                return None
            rows = rows or ()
            return TableQuery(checked, table.source, table.page, table.label, table.place, table.name, rows,
                              result.columns, result.rows, self._quote(conn, table, rows), result.truncated)
        return None

    def _cited(self, conn: sqlite3.Connection, sql: str) -> tuple[int, ...] | None:
        """The numbers of the rows that fed the query's result; None when the query is too involved to say."""
        query = cited_rows_query(sql)
        if query is None:
            return None
        try:
            return tuple(int(r[0]) for r in run_query(conn, query, self.config.timeout_s, 200).rows if r[0] is not None)
        except QueryRefused:
            return None

    def _quote(self, conn: sqlite3.Connection, table: TableInfo, rows: Sequence[int], shown: int = 10) -> str:
        """The cited rows as "row N: column: value; ..." lines (the first `shown`: every row of a small
        answer is quoted, none left as a bare number), and how many more there are."""
        names = [c.name for c in table.columns]
        lines = []
        for number in rows[:shown]:
            found = conn.execute(f'SELECT * FROM {quote(table.name)} WHERE "_row" = ?', (number,)).fetchone()
            if found is not None:
                cells = "; ".join(f"{n}: {value_text(v)}" for n, v in zip(names, found[1:]) if v is not None)
                lines.append(f"row {number}: {cells}")
        if len(rows) > shown:
            lines.append(f"(and {len(rows) - shown} more rows: {', '.join(map(str, rows[shown:shown + 20]))}"
                         + (", ..." if len(rows) > shown + 20 else "") + ")")
        return "\n".join(lines)


def quote_columns(sql: str, table: TableInfo) -> str:
    """The query with the table's column names that hold spaces or other non-word characters quoted where
    the model wrote them bare (`Long Gun` → `"Long Gun"`; a bare run of non-ASCII text close to one such
    name, `地区指标基准值（公顷/处）`, as that name); string literals are left as they are."""
    names = sorted((c.name for c in table.columns if not re.fullmatch(r"\w+", c.name)), key=len, reverse=True)
    if not names:
        return sql
    bare = re.compile("|".join(r'(?<![\w"])' + re.escape(n) + r'(?![\w"])' for n in names))

    def fix(text: str) -> str:
        text = bare.sub(lambda m: quote(m.group(0)), text)
        return _BARE_RUN.sub(lambda m: quote(close) if (close := _close_column(m.group(0), table)) in names else m.group(0),
                             text)

    parts = re.split(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")", sql)  # odd parts: string literals and quoted names
    return "".join(p if k % 2 else fix(p) for k, p in enumerate(parts))


def _close_column(name: str, table: TableInfo) -> str | None:
    """The one column whose name is close to `name` (a model's misspelling), or None."""
    import difflib

    found = difflib.get_close_matches(name, [c.name for c in table.columns], n=2, cutoff=CLOSE_NAME)
    return found[0] if len(found) == 1 else None


def _check_columns(sql: str, table: TableInfo) -> str:
    """The query with a double-quoted name that is no column, inside a condition, read as a string (as
    SQLite itself reads it); QueryRefused when it selects a name that is no column (a constant is not
    an answer from the table) or names one, unquoted, that the table does not have."""
    from sqlglot import exp, parse_one

    tree = parse_one(sql, read="sqlite")
    known = {c.name.lower() for c in table.columns} | {"_row"}
    aliases = {a.alias.lower() for a in tree.find_all(exp.Alias)} | {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    for column in list(tree.find_all(exp.Column)):
        name = column.name.lower()
        if name in known or name in aliases:
            continue
        if column.this.args.get("quoted") and not column.table and column.find_ancestor(exp.Where, exp.Having, exp.Join):
            column.replace(exp.Literal.string(column.name))
            continue
        close = _close_column(column.name, table)
        if close is not None:
            column.set("this", exp.to_identifier(close, quoted=True))
            continue
        raise QueryRefused(f'table t has no column "{column.name}"; its columns: '
                           + ", ".join(f'"{c.name}"' for c in table.columns))
    if isinstance(tree, exp.Select) and not any(e.find(exp.Column, exp.Star) for e in tree.expressions):
        raise QueryRefused("it selects constants, not columns of table t")
    return tree.sql(dialect="sqlite")


def check_grounded(sql: str, question: str) -> None:
    """QueryRefused when a text the query filters on is not written in the question: the model put in a
    name the question does not ask about ("1 Year Fixed Rate" for "the 10 Year Fixed Rate")."""
    from sqlglot import exp, parse_one

    asked = question.lower()
    for condition in parse_one(sql, read="sqlite").find_all(exp.Where, exp.Having):
        for literal in condition.find_all(exp.Literal):
            text = literal.this.strip("%").lower() if literal.is_string else ""
            if text and text not in asked:
                raise QueryRefused(f"it filters on '{literal.this}', which the question does not name")


def sentence(query: TableQuery, language: str) -> str:
    """The result stated in one sentence, with the file and place it came from."""
    one, many, counted, uncounted, more = _SENTENCE["zh" if language == "zh" else "en"]
    file = Path(query.source).name + (f" ({query.place})" if query.place else "")
    where = (counted if query.rows else uncounted).format(n=len(query.rows), file=file)
    if len(query.result) == 1 and len(query.result[0]) == 1:
        return one.format(value=value_text(query.result[0][0]), where=where)
    values = "; ".join(" / ".join(value_text(v) for v in row) for row in query.result)
    return many.format(value=values + (more if query.truncated else ""), where=where)

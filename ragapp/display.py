"""How paths and sources are shown to people (command line, the server client, progress bars, the chat app)."""

from __future__ import annotations

import os

import click


def shown_path(path: str, width: int | None = None) -> str:
    """A path as the command line shows it: relative to here when that is shorter, cut to `width`."""
    try:
        rel = os.path.relpath(path)
        path = rel if len(rel) < len(path) else path
    except ValueError:
        pass
    return path if width is None or len(path) <= width else "…" + path[-(width - 1):]


def print_sources(citations: list[dict], table_query: dict | None = None) -> None:
    """The numbered sources under an answer: where, character range (or rows of a table), quote; and
    the query that answered, when a table did."""
    if table_query:
        where = shown_path(table_query["source"]) + (f", {table_query['place']}" if table_query.get("place") else "")
        click.echo(f"\nQuery over the table in {where}:\n  {table_query['sql']}")
    if citations:
        click.echo("\nSources:")
    for n, c in enumerate(citations, start=1):
        where = shown_path(c["source"]) + (f", {c['place']}" if c.get("place") else "")
        quote = " ".join(c["quote"].split())
        span = f"rows {', '.join(map(str, table_query['rows'][:20]))}" if table_query and n == 1 else \
            f"chars {c['start']}-{c['end']}"
        click.echo(f"  [{n}] {where} ({span}): \"{quote}\"")

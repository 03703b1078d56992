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


def print_confidence(answered: bool | None, confidence: float | None, draft: str = "") -> None:
    """How sure the answer is (ragapp.query.confidence); for an answer the confidence gate withheld, that it was."""
    if confidence is None:
        return
    if answered:
        click.echo(f"\nConfidence: {confidence:.2f}")
    elif draft:
        click.echo(f"\nAn answer was written but withheld: its confidence {confidence:.2f} is under [answer] min_confidence "
                   "(--json shows the draft).")


def show_pages(rag, citations: list, folder: str | None = None) -> list[tuple[str, str] | None]:
    """Each citation's page drawn with its quote boxed (RAG.page_image), written as a PNG into `folder`
    (default: ragapp-pages in the temporary directory); (path, notice) each, None where a citation has
    no page (a text file, a table's rows)."""
    import hashlib
    import tempfile
    from pathlib import Path

    from ragapp.show import drawable

    # Absolute: the path is printed for the user to open (a viewer does not share the shell's folder).
    out = (Path(folder) if folder else Path(tempfile.gettempdir()) / "ragapp-pages").resolve()
    out.mkdir(parents=True, exist_ok=True)
    paths: list[tuple[str, str] | None] = []
    for c in citations:
        if not drawable(c.source) or c.end <= c.start:
            paths.append(None)
            continue
        shown = rag.page_image(c.source, c.page, c.start, c.end)
        tag = hashlib.sha256(f"{c.source}\0{c.page}\0{c.start}\0{c.end}".encode()).hexdigest()[:8]
        path = out / f"{Path(c.source).stem[:60]}-p{c.page or 1}-{tag}.png"
        path.write_bytes(shown.png)
        paths.append((str(path), shown.notice))
    return paths


def print_pages(paths: list[tuple[str, str] | None]) -> None:
    """The pictures `show_pages` wrote, numbered as the sources are (with a notice where the page is
    shown otherwise than asked: changed since indexed, scaled down)."""
    if any(paths):
        click.echo("\nPages:")
    for n, shown in enumerate(paths, start=1):
        if shown:
            click.echo(f"  [{n}] {shown[0]}" + (f"  ({shown[1]})" if shown[1] else ""))

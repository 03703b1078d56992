"""A citation in the chat page: its page drawn with the quote boxed (PDFs, scans, images), the quote in
its passage as text under it (copyable), and the original file to open at that page."""

from __future__ import annotations

import html
from pathlib import Path

import streamlit as st

from ragapp import RAG
from ragapp.display import shown_path
from ragapp.records import Citation, TableQuery
from ragapp.show import drawable
from ui.words import t

# The original is offered for download up to this size (Streamlit holds it in memory while sending it).
MAX_DOWNLOAD_BYTES = 50_000_000
PAGE_WIDTH = 900


def highlighted(text: str, span: tuple[int, int] | None) -> str:
    """HTML of a passage with its supporting sentence marked (one block, so Markdown leaves it alone)."""
    a, b = span if span else (0, 0)
    parts = [html.escape(text[:a]), f"<mark>{html.escape(text[a:b])}</mark>" if b > a else "", html.escape(text[b:])]
    return '<div class="ragapp-quote">' + "".join(parts).replace("\n", "<br>") + "</div>"


def render_citation(rag: RAG | None, n: int, c: Citation, table: TableQuery | None, caption: str) -> None:
    """One citation's body: its page with the quote boxed when the document has pages to draw, then the
    quote in its passage, where it is, and the file itself."""
    if rag is not None and drawable(c.source) and c.end > c.start:
        _page(rag, n, c)
    st.markdown(highlighted(c.chunk_text or c.quote, c.span if c.chunk_text else (0, len(c.quote))), unsafe_allow_html=True)
    span = (t("cite_rows", rows=", ".join(map(str, table.rows[:20]))) if table is not None and n == 1
            else t("cite_span", start=c.start, end=c.end, score=f"{c.score:.3f}"))
    st.caption(f"{caption} · {span}")


def _page(rag: RAG, n: int, c: Citation) -> None:
    try:
        shown = rag.page_image(c.source, c.page, c.start, c.end, PAGE_WIDTH)
    except (LookupError, ValueError, OSError) as exc:  # the answer stays; the page says why it is missing
        st.warning(t("page_missing", why=exc))
        return
    if shown.notice:
        st.warning(shown.notice)
    st.image(shown.png, caption=t("citation_page", n=n) if shown.boxes else t("citation_page_plain", n=n), width="stretch")
    _download(c)


def _download(c: Citation) -> None:
    """The original file (read only when the button is clicked), with the page to open it at."""
    path = Path(c.source)
    try:
        if path.stat().st_size > MAX_DOWNLOAD_BYTES:
            st.caption(t("the_file", path=shown_path(c.source), page=c.page or 1))
            return
    except OSError:
        return
    st.download_button(t("open_file", page=c.page or 1), path.read_bytes, file_name=path.name,
                       key=f"open-{id(c)}", mime="application/pdf" if path.suffix.lower() == ".pdf" else None)

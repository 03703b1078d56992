"""Word, PowerPoint and Excel files (parsed in the sandbox child) with python-docx, python-pptx and
openpyxl, after the zip checks in ragapp.load.archive.

- .docx: one page (Word has no fixed pages): headings, paragraphs, list items and tables in
  document order, tables as "header: value" rows; headers and footers once, at the end.
- .pptx: one page per slide (its number): the title, then text frames and tables top to bottom,
  then the speaker notes.
- .xlsx: one page per sheet (its name as the label), streamed in read-only mode, rows as
  "header: value" lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ragapp.errors import ParseError
from ragapp.load.archive import check_zip
from ragapp.load.clean import clean_text
from ragapp.load.tables import RowRecords, cell_text, table_text

Emit = Callable[[dict], None]


def _open(path: str, limits: dict, opener: Callable, what: str):
    """The document opened by its library, after the zip checks; library errors become ParseError."""
    check_zip(path, limits)
    try:
        return opener(path)
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, OSError, SyntaxError) as exc:
        raise ParseError(f"unreadable {what} file ({type(exc).__name__}: {exc})"[:400]) from exc


# -- Word ---------------------------------------------------------------------------------------

def _table_record(rows: list[list[str]], number: int) -> dict:
    """A table's cells as a page record carries them (see ragapp.records.TableRows)."""
    return {"key": f"table {number}", "rows": rows, "first": 1}


def _docx_blocks(container, tables: list[dict] | None = None) -> Iterator[str]:
    """The text blocks of a document body or table cell, in order; the body's tables' cells go to
    `tables` (a merged cell filled into every grid cell it spans)."""
    from docx.table import Table

    for item in container.iter_inner_content():
        if isinstance(item, Table):
            yield table_text([cell_text(c.text) for c in _unique_cells(row)] for row in item.rows)
            if tables is not None:
                tables.append(_table_record([[cell_text(c.text) for c in row.cells] for row in item.rows], len(tables) + 1))
            continue
        text = item.text.strip()
        if not text:
            continue
        style = (item.style.name if item.style is not None else "") or ""
        is_list = style.startswith("List") or item._p.pPr is not None and item._p.pPr.numPr is not None
        yield f"- {text}" if is_list and not style.startswith("Heading") else text


def _unique_cells(row) -> list:
    """A row's cells with a merged cell counted once (python-docx repeats it for every grid column)."""
    cells, seen = [], set()
    for cell in row.cells:
        if id(cell._tc) not in seen:
            seen.add(id(cell._tc))
            cells.append(cell)
    return cells


def _docx_margins(doc) -> list[str]:
    """The distinct texts of every section's headers and footers."""
    seen: list[str] = []
    for section in doc.sections:
        for part in (section.header, section.first_page_header, section.even_page_header, section.footer,
                     section.first_page_footer, section.even_page_footer):
            if part.is_linked_to_previous:  # no text of its own
                continue
            for text in _docx_blocks(part):
                if text not in seen:
                    seen.append(text)
    return seen


def parse_docx(path: str, limits: dict, emit: Emit, start_page: int = 1) -> None:
    """Emit a Word document as one page of text blocks."""
    from docx import Document

    doc = _open(path, limits, Document, "Word")
    tables: list[dict] = []
    blocks = list(_docx_blocks(doc, tables)) + _docx_margins(doc)
    text = clean_text("\n\n".join(b for b in blocks if b.strip()))
    if text.strip():
        emit({"page": None, "text": text, "tables": tables})


# -- PowerPoint ---------------------------------------------------------------------------------

def _shape_texts(shapes, tables: list[dict]) -> Iterator[str]:
    """Text of shapes top to bottom, left to right; groups are entered; tables' cells go to `tables`."""
    ordered = sorted(shapes, key=lambda s: ((s.top or 0), (s.left or 0)))
    for shape in ordered:
        if getattr(shape, "shapes", None) is not None:  # a group
            yield from _shape_texts(shape.shapes, tables)
        elif shape.has_text_frame and shape.text_frame.text.strip():
            yield shape.text_frame.text.strip()
        elif getattr(shape, "has_table", False) and shape.has_table:
            rows = [[cell_text(c.text) for c in row.cells] for row in shape.table.rows]
            tables.append(_table_record(rows, len(tables) + 1))
            yield table_text(rows)


def _slide_text(slide, tables: list[dict]) -> str:
    title = slide.shapes.title
    parts = [title.text_frame.text.strip()] if title is not None and title.has_text_frame else []
    parts += [t for t in _shape_texts((s for s in slide.shapes if title is None or s.shape_id != title.shape_id), tables)]
    if slide.has_notes_slide:
        notes = slide.notes_slide.notes_text_frame
        if notes is not None and notes.text.strip():
            parts.append(f"Notes: {notes.text.strip()}")
    return clean_text("\n\n".join(p for p in parts if p))


def parse_pptx(path: str, limits: dict, emit: Emit, start_page: int = 1) -> None:
    """Emit each slide of a presentation as a page (numbered like the slides)."""
    from pptx import Presentation

    deck = _open(path, limits, Presentation, "PowerPoint")
    count = len(deck.slides)
    if count > limits["pdf_max_pages"]:
        raise ParseError(f"{count} slides, over the limit of {limits['pdf_max_pages']} (ingest.pdf_max_pages)")
    for number, slide in enumerate(deck.slides, start=1):
        tables: list[dict] = []
        text = _slide_text(slide, tables)
        if text.strip():
            emit({"page": number, "text": text, "tables": tables})


# -- Excel --------------------------------------------------------------------------------------

def parse_xlsx(path: str, limits: dict, emit: Emit, start_page: int = 1) -> None:
    """Emit each sheet's rows as "header: value" lines, streamed (the sheet's number is the page)."""
    from openpyxl import load_workbook

    book = _open(path, limits, lambda p: load_workbook(p, read_only=True, data_only=True), "Excel")
    try:
        for number, sheet in enumerate(book.worksheets, start=1):
            records = RowRecords(emit, number, sheet.title)
            for row in sheet.iter_rows(values_only=True):
                records.add([cell_text(v) for v in row])
            records.flush()
    finally:
        book.close()

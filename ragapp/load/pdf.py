"""PDF files (parsed in the sandbox child): the text layer with pypdf, page by page; a page with
no text layer, or an unusable one (glyphs without a Unicode mapping), is rendered with pypdfium2
and read by OCR.

pypdf reads the text layer because it keeps text that pdfium drops: on the Chinese audit letter
in ../shared/eval/pdfs pdfium returns none of its 3,983 Han characters (bench/formats.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ragapp.errors import ParseError
from ragapp.load.clean import clean_text, drop_repeated_lines, is_garbled, undouble
from ragapp.load.pdftables import page_tables

# A page with fewer characters of text than this is treated as a scan (a page number or a stamp
# over an image is not the page's text).
MIN_TEXT_LAYER_CHARS = 20


def _reader(path: str):
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    reader = PdfReader(path, strict=False)
    if reader.is_encrypted:
        try:
            if not reader.decrypt(""):
                raise ParseError("encrypted PDF (a password is required)")
        except (NotImplementedError, FileNotDecryptedError) as exc:
            raise ParseError("encrypted PDF (a password is required)") from exc
    return reader


def _text(page) -> str:
    return drop_repeated_lines(undouble(clean_text(page.extract_text() or "")))


def _has_images(page) -> bool:
    """Whether the page draws an image (read from its resources; nothing is decoded)."""
    try:
        resources = page.get("/Resources")
        objects = resources.get_object().get("/XObject") if resources is not None else None
        if objects is None:
            return False
        objects = objects.get_object()
        return any(objects[name].get_object().get("/Subtype") == "/Image" for name in objects)
    except (AttributeError, KeyError, TypeError, ValueError):
        return True  # resources we cannot read: let the renderer look


def _needs_ocr(text: str, garbled: bool, page) -> bool:
    """A garbled text layer, or next to no text on a page that draws an image (a scan)."""
    return garbled or len(text.strip()) < MIN_TEXT_LAYER_CHARS and _has_images(page)


def parse(path: str, limits: dict, emit: Callable[[dict], None], start_page: int = 1) -> None:
    """Emit one record per page from `start_page` on: its text layer, or its OCR text."""
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = _reader(path)
        count = len(reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError, IndexError, AssertionError) as exc:
        raise ParseError(f"unreadable PDF ({type(exc).__name__}: {exc})") from exc
    if count > limits["pdf_max_pages"]:
        raise ParseError(f"{count} pages, over the limit of {limits['pdf_max_pages']} (ingest.pdf_max_pages)")
    renderer = _Renderer(path, limits)
    for number in range(start_page, count + 1):
        page = reader.pages[number - 1]
        try:
            text = _text(page)
        except MemoryError:
            raise
        except Exception as exc:  # one bad page must not lose the rest: reported, not hidden
            emit({"page": number, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        garbled = bool(text.strip()) and is_garbled(text)
        if limits["ocr"] and _needs_ocr(text, garbled, page):
            emit({"working": number})
            record = renderer.ocr_page(number, garbled)
        elif garbled:
            record = {"page": number, "error": "garbled text layer (fonts without a Unicode mapping); OCR is off"}
        else:
            record = {"page": number, "text": text, "tables": page_tables(text),
                      "boxes": renderer.text_boxes(number, text)} if text.strip() else None
        if record:  # a blank page is no loss
            emit(record)


class _Renderer:
    """The file opened with pypdfium2 (at first use): where a text layer's characters sit, and pages
    rendered at a bounded size and read by OCR (the engine loaded when a page first needs it)."""

    def __init__(self, path: str, limits: dict) -> None:
        self.path, self.limits = path, limits
        self.pdf: Any = None  # pypdfium2's document, opened at first use
        self.broken = ""  # why pdfium cannot open the file, once it has tried
        self.ocr: Any = None

    @property
    def doc(self) -> Any:
        """The document (PdfiumError, once per file, when pdfium cannot open what pypdf could)."""
        import pypdfium2

        if self.broken:
            raise pypdfium2.PdfiumError(self.broken)
        if self.pdf is None:
            try:
                self.pdf = pypdfium2.PdfDocument(self.path)
            except pypdfium2.PdfiumError as exc:
                self.broken = str(exc) or "pdfium cannot open the file"
                raise
        return self.pdf

    def text_boxes(self, number: int, text: str) -> str | None:
        """The page's character boxes (ragapp.load.geometry), or None where pdfium cannot place them: the
        text is kept either way, only its citations fall back to the text view."""
        import pypdfium2

        from ragapp.load.geometry import text_layer_boxes

        try:
            page = self.doc[number - 1]
            try:
                return text_layer_boxes(page, text)
            finally:
                page.close()
        except (pypdfium2.PdfiumError, ValueError, IndexError):
            return None

    def ocr_page(self, number: int, garbled: bool) -> dict | None:
        """The page's OCR text as a record; an error record when a garbled page yields none; None for a blank page."""
        import pypdfium2

        from ragapp.load.geometry import line_boxes
        from ragapp.load.ocr import OCR, render_scale

        if self.ocr is None:
            self.ocr = OCR(self.limits["ocr_threads"])
        try:
            page = self.doc[number - 1]
            try:
                width, height = page.get_size()
                image = page.render(scale=render_scale(width, height, self.limits["render_max_pixels"])).to_pil()
            finally:
                page.close()
        except pypdfium2.PdfiumError as exc:
            return {"page": number, "error": f"cannot render the page for OCR ({exc})"[:300]}
        text, boxes = line_boxes(self.ocr.read_lines(image), image.width, image.height)
        if not text.strip():
            return {"page": number, "error": "garbled text layer, and OCR found no text"} if garbled else None
        return {"page": number, "text": text, "ocr": True, "boxes": boxes}

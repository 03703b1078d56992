"""Load stage: read a document into pages of clean text, with one loader per format (by suffix).

Text and Markdown are streamed here (ragapp.load.text); every other format is parsed in a
sandboxed child process (ragapp.sandbox) by its module: text (html), pdf, office (docx, pptx, xlsx),
tables (csv, tsv), epub, mail (eml) and ocr (images, and PDF pages without a usable text layer). PDF
and OCR pages also record where their characters sit (geometry), and a cited page is drawn in the same
child (render).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from ragapp.config import IngestConfig
from ragapp.errors import DocumentError
from ragapp.load.clean import clean_text, drop_repeated_lines, undouble
from ragapp.load.geometry import from_text
from ragapp.load.text import SEGMENT_CHARS, text_pages
from ragapp.records import Page, TableRows
from ragapp.sandbox import PageTimeout, run_parser

__all__ = ["SUPPORTED_SUFFIXES", "SEGMENT_CHARS", "iter_pages", "load_file", "clean_text", "undouble",
           "drop_repeated_lines"]

_STREAMED = (".txt", ".md", ".markdown")
# Formats parsed in the sandbox: suffix → "module:function" (the child imports only that module).
PARSERS = {
    ".html": "ragapp.load.text:parse_html",
    ".htm": "ragapp.load.text:parse_html",
    ".pdf": "ragapp.load.pdf:parse",
    ".docx": "ragapp.load.office:parse_docx",
    ".pptx": "ragapp.load.office:parse_pptx",
    ".xlsx": "ragapp.load.office:parse_xlsx",
    ".csv": "ragapp.load.tables:parse_csv",
    ".tsv": "ragapp.load.tables:parse_tsv",
    ".epub": "ragapp.load.epub:parse",
    ".eml": "ragapp.load.mail:parse",
    **{s: "ragapp.load.ocr:parse_image" for s in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")},
}
SUPPORTED_SUFFIXES = (*_STREAMED, *PARSERS)
# A PDF whose OCR overruns the page limit on more pages than this is given up (time stays bounded).
MAX_PAGE_TIMEOUTS = 3
# Page names (sheet, chapter, attachment) are cut to this many characters.
LABEL_CHARS = 80


def parsed_pages(path: Path, source: str, limits: IngestConfig | None = None,
                 on_warning: Callable[[str], None] | None = None) -> Iterator[Page]:
    """The pages the sandboxed parser of this file's format emits; a page whose OCR overruns its time
    is reported through `on_warning` and the parser goes on from the next page."""
    limits = limits or IngestConfig()
    parser, start, pages, skipped, timeouts = PARSERS[path.suffix.lower()], 1, 0, 0, 0
    while start:
        try:
            for record in run_parser(parser, str(path), source, limits, start):
                if "error" in record:
                    skipped += 1
                    if on_warning is not None:
                        on_warning(f"page {record['page']} skipped: {record['error']}")
                elif "text" in record and record["text"].strip():
                    pages += 1
                    yield Page(source, record.get("page"), record["text"], int(record.get("offset", 0)),
                               _label(record.get("label")), bool(record.get("ocr")), _tables(record.get("tables")),
                               from_text(record.get("boxes")))
            start = 0
        except PageTimeout as exc:
            timeouts += 1
            if not parser.endswith("pdf:parse") or timeouts > MAX_PAGE_TIMEOUTS:
                raise DocumentError(f"{source}: {exc}" + (f" on {timeouts} pages; stopped" if timeouts > 1 else "")) from exc
            skipped += 1
            if on_warning is not None:
                on_warning(f"page {exc.page} skipped: {exc}")
            start = exc.page + 1
    if not pages:
        raise DocumentError(f"{source}: {_why_empty(path.suffix.lower(), skipped, limits)}")


def _label(label: object) -> str | None:
    """A page's name from a document (a sheet, chapter or attachment name) made safe to show: one line, short."""
    if not isinstance(label, str):
        return None
    return " ".join(clean_text(label).split())[:LABEL_CHARS] or None


def _tables(tables: object) -> tuple[TableRows, ...]:
    """The tables a parser sent with a page, as cells of text (anything else in the record is dropped)."""
    if not isinstance(tables, list):
        return ()
    return tuple(TableRows(str(t.get("key", ""))[:LABEL_CHARS],
                           tuple(tuple(str(c) for c in row) for row in t.get("rows", ()) if isinstance(row, list)),
                           int(t.get("first", 1)))
                 for t in tables if isinstance(t, dict))


def _why_empty(suffix: str, skipped: int, limits: IngestConfig) -> str:
    if skipped:
        return f"no readable text ({skipped} page(s) skipped, see the warnings)"
    if suffix == ".pdf" and not limits.ocr:
        return "no extractable text — scanned? (OCR is off: ingest.ocr)"
    if suffix == ".pdf" or suffix in PARSERS and PARSERS[suffix].endswith("parse_image"):
        return "no text found (no text layer, and OCR found none in its images)"
    return "no text"


def iter_pages(path: str | Path, source: str | None = None, max_bytes: int | None = None,
               segment_chars: int = SEGMENT_CHARS, limits: IngestConfig | None = None,
               on_warning: Callable[[str], None] | None = None) -> Iterator[Page]:
    """The pages of one document, lazily: a text file streamed in segments (any size, bounded
    memory); every other format parsed in a child process within `limits`, page by page. Files
    parsed whole are limited to `max_bytes`. Raises DocumentError naming the file and the reason;
    problems that lose part of a file (a page) go to `on_warning`."""
    path = Path(path)
    source = source or str(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DocumentError(f"{source}: unsupported file type {suffix or '(none)'}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    try:
        size = path.stat().st_size
        if size == 0:
            raise DocumentError(f"{source}: empty file")
        if suffix not in _STREAMED and max_bytes is not None and size > max_bytes:
            raise DocumentError(f"{source}: {size / 1e6:.0f} MB is over the {max_bytes / 1e6:.0f} MB limit for "
                                f"{suffix} files (ingest.max_file_mb in the config); not read")
        if suffix in _STREAMED:
            yield from text_pages(path, source, segment_chars)
        else:
            yield from parsed_pages(path, source, limits, on_warning)
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{source}: invalid text ({exc.reason})") from exc
    except PermissionError as exc:
        raise DocumentError(f"{source}: permission denied") from exc
    except FileNotFoundError as exc:
        raise DocumentError(f"{source}: file disappeared while ingesting") from exc
    except IsADirectoryError as exc:
        raise DocumentError(f"{source}: is a directory") from exc
    except OSError as exc:
        raise DocumentError(f"{source}: cannot read ({exc.strerror or exc})") from exc


def load_file(path: str | Path, source: str | None = None, max_bytes: int | None = None,
              segment_chars: int = SEGMENT_CHARS, limits: IngestConfig | None = None) -> list[Page]:
    """Read one whole document into pages (see `iter_pages`)."""
    return list(iter_pages(path, source, max_bytes, segment_chars, limits))

"""Load stage: read .txt, .md, .html and .pdf files into pages of clean text."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

from ragapp.errors import DocumentError
from ragapp.sandbox import Limits, run_parser
from ragapp.types import Page

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".pdf", ".html", ".htm")

# Zero-width and formatting characters that break tokenisation; C0/C1 controls except tab and newline.
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\ufeff\u00ad]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


# "Fake bold" in Chinese PDFs draws every glyph twice, and extraction yields 长长城城: a run of
# at least three doubled Han characters in a row is collapsed (single doublings like 看看 stay).
_FAKE_BOLD = re.compile(r"(?:([\u3400-\u9fff])\1){3,}")
# A run of end marks is tried only from its start, so a buffer of dots is scanned in linear time.
_SEGMENT_END = re.compile(r"[。！？；]++\s*+|(?<![.!?])[.!?]++\s++")
_PDF_JUNK = re.compile(r"\(cid:\d+\)|[\ue000-\uf8ff\ufffd]")


def undouble(text: str) -> str:
    """Collapse fake-bold doubling of Han characters (长长城城是是 → 长城是)."""
    return _FAKE_BOLD.sub(lambda m: m.group(0)[::2], text)


def drop_repeated_lines(text: str) -> str:
    """Fake bold done by drawing a text line twice extracts as that line twice in a row; a PDF page
    never means the same line twice in a row, so such repeats are dropped."""
    lines = text.split("\n")
    return "\n".join([lines[0]] + [b for a, b in zip(lines, lines[1:]) if not (b.strip() and a == b)])


def readable_share(text: str) -> float:
    """Share of a text that is letters, digits or spaces (a garbled PDF text layer scores low)."""
    body = _PDF_JUNK.sub("\ufffd", text)
    if not body.strip():
        return 0.0
    good = sum(ch.isalnum() or ch.isspace() or ch in ".,;:!?'\"()-%/。，、；：！？（）“”《》" for ch in body if ch != "\ufffd")
    return good / len(body)


def clean_text(text: str) -> str:
    """Normalise line endings and drop invisible and control characters; the text is otherwise kept as written
    (citations quote it), and width normalisation happens in the BM25 tokenizer instead."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _INVISIBLE.sub("", text)
    return _CONTROL.sub(" ", text)


_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_BLOCK = 1 << 20
# Text files are streamed in segments of about this many characters, cut at a paragraph, line or
# sentence end, so a file of any size is read with bounded memory (each segment is split on its own).
SEGMENT_CHARS = 1 << 20


def _decoded_blocks(path: Path, encoding: str) -> Iterator[str]:
    """The file decoded block by block (raises UnicodeDecodeError where it is not `encoding`)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            yield decoder.decode(block)
    yield decoder.decode(b"", final=True)


# Bytes read to tell text from binary data (a file system block or sixteen).
_SNIFF_BYTES = 65536
# Binary when control bytes pass 2 % of the head, NUL bytes 30 %, or (decoded as Latin-1) fewer than
# 95 % of the characters are printable: plain text in any encoding stays far from each (tests/test_load.py).
_MAX_CONTROL_SHARE, _MAX_NUL_SHARE, _MIN_PRINTABLE_LATIN1 = 1 / 50, 3 / 10, 0.95
# A PDF page whose text is under 60 % letters, digits, spaces and punctuation is a garbled text layer
# (glyphs without a Unicode mapping); the real garbled PDFs in ../shared/eval/ocr score far below it.
_MIN_READABLE_SHARE = 0.6


def text_encoding(path: Path, source: str) -> str:
    """The encoding of a text file: its BOM, else UTF-8, else GB18030 (a superset of GBK), else Latin-1.
    Raises DocumentError for binary content."""
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    # Text never holds many control bytes (tab, newlines, form feed and NUL aside); binary data does.
    # Stray NUL bytes in otherwise plain text are dropped by clean_text; mostly-NUL is binary or BOM-less UTF-16.
    controls = sum(head.count(bytes([b])) for b in (*range(1, 9), 11, *range(14, 32), 127))
    if (controls >= 4 and controls > len(head) * _MAX_CONTROL_SHARE) or head.count(b"\x00") > len(head) * _MAX_NUL_SHARE:
        raise DocumentError(f"{source}: binary content, not text")
    for encoding in ("utf-8", "gb18030"):
        try:
            for _ in _decoded_blocks(path, encoding):
                pass
            return encoding
        except UnicodeDecodeError:
            continue
    text = head.decode("latin-1")
    if sum(ch.isprintable() or ch in "\n\t\r" for ch in text) < _MIN_PRINTABLE_LATIN1 * len(text):
        raise DocumentError(f"{source}: binary content, not text")
    return "latin-1"


def _segment_end(buf: str) -> int:
    """Where a streamed segment ends: after the last paragraph break in the second half of `buf`,
    else the last line break, sentence end or space, else at the end of `buf`."""
    half = len(buf) // 2
    for mark in ("\n\n", "\n"):
        pos = buf.rfind(mark, half)
        if pos >= 0:
            return pos + len(mark)
    ends = [m.end() for m in _SEGMENT_END.finditer(buf, half)]  # not inside 3.14
    if ends:
        return ends[-1]
    pos = max(buf.rfind(" ", half), buf.rfind("\t", half))
    return pos + 1 if pos >= 0 else len(buf)


def _text_pages(path: Path, source: str, segment_chars: int) -> Iterator[Page]:
    """A text file as pages of about `segment_chars` characters each, read and decoded as a stream;
    page offsets count characters of the cleaned text, so chunk positions are file positions."""
    encoding = text_encoding(path, source)
    buf, offset, emitted = "", 0, False
    try:
        for block in _decoded_blocks(path, encoding):
            buf += block
            while len(buf) >= 2 * segment_chars:
                cut = _segment_end(buf[: 2 * segment_chars])
                text, buf = clean_text(buf[:cut]), buf[cut:]
                if text.strip():
                    emitted = True
                    yield Page(source, None, text, offset)
                offset += len(text)
    except UnicodeDecodeError as exc:  # only BOM encodings are not checked on the whole file first
        bom = encoding in {enc for _, enc in _BOMS}
        where = "after its byte-order mark" if bom else "(the file changed while it was read)"
        raise DocumentError(f"{source}: invalid {encoding} text {where} ({exc.reason})") from exc
    text = clean_text(buf)
    if text.strip():
        yield Page(source, None, text, offset)
    elif not emitted:
        raise DocumentError(f"{source}: no text")


class _HTMLText(HTMLParser):
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript", "template") and self._skip:
            self._skip -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _html_to_text(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r"\n\s*\n\s*", "\n\n", text).strip()


def load_pdf(path: Path, source: str, limits: Limits | None = None,
             on_warning: Callable[[str], None] | None = None) -> Iterator[Page]:
    """One Page per PDF page that has text (pages numbered from 1), parsed in a child process
    within `limits`; a page that cannot be read is reported through `on_warning`, not hidden."""
    garbled = pages = 0
    for record in run_parser("pdf", str(path), source, limits or Limits()):
        if "error" in record:
            if on_warning is not None:
                on_warning(f"page {record['page']} skipped: {record['error']}")
            continue
        if "text" not in record:
            continue
        text = drop_repeated_lines(undouble(clean_text(record["text"])))
        if not text.strip():
            continue
        if readable_share(text) < _MIN_READABLE_SHARE:  # indexing unmapped glyphs would only add noise
            garbled += 1
            continue
        pages += 1
        yield Page(source, record["page"], text)
    if not pages and garbled:
        raise DocumentError(f"{source}: garbled text layer on {garbled} page(s) (fonts without a Unicode mapping) — OCR it")
    if not pages:
        raise DocumentError(f"{source}: no extractable text — scanned?")


def iter_pages(path: str | Path, source: str | None = None, max_bytes: int | None = None,
               segment_chars: int = SEGMENT_CHARS, limits: Limits | None = None,
               on_warning: Callable[[str], None] | None = None) -> Iterator[Page]:
    """The pages of one document, lazily: a PDF page by page (parsed in a child process within
    `limits`), a text file streamed in segments (any size, bounded memory). PDF and HTML are parsed
    whole, so `max_bytes` limits those. Raises DocumentError naming the file and the reason;
    problems that lose part of a file (a PDF page) go to `on_warning`."""
    path = Path(path)
    source = source or str(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DocumentError(f"{source}: unsupported file type {suffix or '(none)'}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    try:
        size = path.stat().st_size
        if size == 0:
            raise DocumentError(f"{source}: empty file")
        if suffix not in (".txt", ".md", ".markdown") and max_bytes is not None and size > max_bytes:
            raise DocumentError(f"{source}: {size / 1e6:.0f} MB is over the {max_bytes / 1e6:.0f} MB limit for "
                                f"{suffix} files (ingest.max_file_mb in the config); not read")
        if suffix == ".pdf":
            yield from load_pdf(path, source, limits, on_warning)
        elif suffix in (".html", ".htm"):
            text = clean_text(_html_to_text("".join(_decoded_blocks(path, text_encoding(path, source)))))
            if not text.strip():
                raise DocumentError(f"{source}: no text")
            yield Page(source, None, text)
        else:
            yield from _text_pages(path, source, segment_chars)
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
              segment_chars: int = SEGMENT_CHARS, limits: Limits | None = None) -> list[Page]:
    """Read one whole document into pages (see `iter_pages`)."""
    return list(iter_pages(path, source, max_bytes, segment_chars, limits))

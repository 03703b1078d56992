"""Text, Markdown and HTML files: text is streamed in segments in this process (any size, bounded
memory); HTML is parsed whole, in the sandboxed child (`parse_html`), since its parse takes about
20 times the file's size in memory."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

from ragapp.errors import DocumentError, ParseError
from ragapp.load.clean import clean_text
from ragapp.records import Page

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_BLOCK = 1 << 20
# A run of end marks is tried only from its start, so a buffer of dots is scanned in linear time.
_SEGMENT_END = re.compile(r"[。！？；]++\s*+|(?<![.!?])[.!?]++\s++")
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


def text_pages(path: Path, source: str, segment_chars: int) -> Iterator[Page]:
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


# Elements whose content is not the page's text (a <title> repeats the first heading).
_SKIPPED = {"script", "style", "noscript", "template", "title"}


class _HTMLText(HTMLParser):
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIPPED:
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED and self._skip:
            self._skip -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r"\n\s*\n\s*", "\n\n", text).strip()


def parse_html(path: str, limits: dict, emit: Callable[[dict], None], start_page: int = 1) -> None:
    """Sandbox parser: an HTML file as one page of its visible text (scripts and styles left out)."""
    try:
        text = clean_text(html_to_text("".join(_decoded_blocks(Path(path), text_encoding(Path(path), path)))))
    except (DocumentError, UnicodeDecodeError) as exc:
        raise ParseError(str(exc).removeprefix(f"{path}: ")) from exc
    emit({"page": None, "text": text})

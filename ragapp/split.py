"""Split stage: language-aware recursive splitting into chunks that keep sentences whole.

Sizes are counted in tokens of the embedding model's tokenizer (pass `count_tokens`), so a
200-token chunk is the same amount of model input in Chinese and in English.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from ragapp.records import Chunk, Page
from ragapp.text import clause_spans, line_spans, paragraph_spans, sentence_spans

CountTokens = Callable[[Sequence[str]], list[int]]


def count_chars(texts: Sequence[str]) -> list[int]:
    """Token counter that counts characters (for tests and tokenizer-less use)."""
    return [len(t) for t in texts]


def chunk_id(source: str, page: int | None, start: int, text: str) -> str:
    """Stable id: sha256 of source, page, position and content."""
    h = hashlib.sha256(f"{source}\x00{page}\x00{start}\x00{text}".encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:24]


def _units(text: str, size: int, count: CountTokens) -> list[tuple[int, int, int]]:
    """Sentences (start, end, tokens); sentences longer than `size` are cut at lines, clauses, words, then characters."""
    spans: list[tuple[int, int]] = []
    heading: tuple[int, int] | None = None
    for p in paragraph_spans(text):
        sentences = sentence_spans(text, *p)
        if heading is not None and sentences:
            # A heading is a one-line paragraph without end punctuation: it becomes part of the
            # sentence that follows, so it gives context instead of standing alone as a "sentence".
            sentences[0] = (heading[0], sentences[0][1])
            heading = None
        if len(sentences) == 1 and _is_heading(text[sentences[0][0] : sentences[0][1]]):
            heading = sentences[0]
            continue
        spans.extend(sentences)
    if heading is not None:
        spans.append(heading)
    out: list[tuple[int, int, int]] = []
    tokens = count([text[a:b] for a, b in spans]) if spans else []
    for (a, b), n in zip(spans, tokens):
        if n <= size:
            out.append((a, b, n))
        else:
            out.extend(_cut_long(text, a, b, size, count))
    return out


# A line this short without a sentence end is a heading: it stays with the text after it.
_HEADING_CHARS = 80
# A hard cut aims 10 % under the token budget, since characters per token vary along the text.
_HARD_CUT_MARGIN = 0.9


def _is_heading(line: str) -> bool:
    return "\n" not in line and len(line) <= _HEADING_CHARS and not line.rstrip().endswith(tuple(".!?。！？；;:：…"))


def _cut_long(text: str, a: int, b: int, size: int, count: CountTokens) -> list[tuple[int, int, int]]:
    for splitter in (lambda s, e: line_spans(text, s, e), lambda s, e: clause_spans(text, s, e), lambda s, e: _word_spans(text, s, e)):
        parts = splitter(a, b)
        if len(parts) > 1:
            pieces = [(s, e, n) for (s, e), n in zip(parts, count([text[s:e] for s, e in parts]))]
            out: list[tuple[int, int, int]] = []
            for i, j in _pack(pieces, size, 0):
                s, e, n = pieces[i][0], pieces[j - 1][1], sum(p[2] for p in pieces[i:j])
                out.extend([(s, e, n)] if n <= size else _cut_long(text, s, e, size, count))
            return out
    # No usable boundary (e.g. one 5 MB line without spaces): hard cut by characters.
    tokens = count([text[a:b]])[0]
    step = max(1, int((b - a) * size / max(tokens, 1) * _HARD_CUT_MARGIN))
    return [(s, min(s + step, b), count([text[s : min(s + step, b)]])[0]) for s in range(a, b, step)]


def _word_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+\s*", text[start:end])]
    return [(start + s, start + e) for s, e in spans]


def _pack(units: Sequence[tuple[int, int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """Greedily group consecutive units into runs of at most `size` tokens (the sum of unit counts).

    Returns (first, last+1) unit indices; each run after the first starts with trailing whole units
    of the previous run worth at most `overlap` tokens.
    """
    runs: list[tuple[int, int]] = []
    i = 0
    while i < len(units):
        j, total = i, 0
        while j < len(units) and (j == i or total + units[j][2] <= size):
            total += units[j][2]
            j += 1
        runs.append((i, j))
        if j >= len(units):
            break
        k, back = j, 0
        while k - 1 > i and back + units[k - 1][2] <= overlap:
            back += units[k - 1][2]
            k -= 1
        # The overlap must leave room for the next new unit, or the next run would add nothing.
        while k < j and back + units[j][2] > size:
            back -= units[k][2]
            k += 1
        i = k
    return runs


def split_text(
    text: str,
    source: str,
    page: int | None = None,
    size: int = 200,
    overlap: int = 30,
    count_tokens: CountTokens = count_chars,
    offset: int = 0,
) -> list[Chunk]:
    """Split one page of text into chunks of at most `size` tokens, cutting between sentences where possible.
    Chunk positions are `offset` plus positions in `text`."""
    units = _units(text, size, count_tokens)
    chunks: list[Chunk] = []
    for i, j in _pack(units, size, overlap):
        start, end = units[i][0], units[j - 1][1]
        body = text[start:end]
        sentences = tuple((a - start, b - start) for a, b, _ in units[i:j])
        chunks.append(Chunk(chunk_id(source, page, offset + start, body), body, source, page, offset + start, offset + end, sentences))
    return chunks


def split_page(page: Page, size: int = 200, overlap: int = 30, count_tokens: CountTokens = count_chars) -> list[Chunk]:
    """Split one page; its chunks carry the page's number, name and OCR flag."""
    chunks = split_text(page.text, page.source, page.page, size, overlap, count_tokens, page.offset)
    if page.label or page.ocr:
        chunks = [replace(c, label=page.label, ocr=page.ocr) for c in chunks]
    return chunks


def split_pages(pages: Sequence[Page], size: int = 200, overlap: int = 30, count_tokens: CountTokens = count_chars) -> list[Chunk]:
    """Split every page of a document; offsets are relative to each page's text."""
    return [c for p in pages for c in split_page(p, size, overlap, count_tokens)]

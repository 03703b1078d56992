"""Cleaning shared by every loader: invisible characters out, fake-bold doubling undone, garbled text found."""

from __future__ import annotations

import re

# Zero-width and formatting characters that break tokenisation; C0/C1 controls except tab and newline.
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\ufeff\u00ad]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


# "Fake bold" in Chinese PDFs draws every glyph twice, and extraction yields 长长城城: a run of
# at least three doubled Han characters in a row is collapsed (single doublings like 看看 stay).
_FAKE_BOLD = re.compile(r"(?:([\u3400-\u9fff])\1){3,}")
_PDF_JUNK = re.compile(r"\(cid:\d+\)|[\ue000-\uf8ff\ufffd]")
# A PDF page whose text is under 60 % letters, digits, spaces and punctuation is a garbled text layer
# (glyphs without a Unicode mapping); the real garbled PDFs in ../shared/eval/ocr score far below it.
MIN_READABLE_SHARE = 0.6


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


# Text of which under half the visible characters are letters or digits is not prose, a table or a
# heading; fonts without a Unicode mapping extract as such runs of symbols ('"7+%-').
MIN_ALNUM_SHARE = 0.5


def is_garbled(text: str) -> bool:
    """True for extracted text that is mostly not words (a font without a Unicode mapping)."""
    visible = [ch for ch in text if not ch.isspace()]
    if not visible:
        return False
    return readable_share(text) < MIN_READABLE_SHARE or sum(map(str.isalnum, visible)) < MIN_ALNUM_SHARE * len(visible)

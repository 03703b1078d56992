"""Where a page's characters sit, recorded at ingest so a citation can be boxed on the page: the owner
of the geometry format.

A page's geometry is one box per character of its text (the text ingest keeps, so a citation's
offsets index it directly), in page-relative units (0..10000 across and down the page as shown,
rotation applied); characters the page does not place (inserted spaces and line breaks) have none.
Text-layer PDF pages take pdfium's character boxes, aligned to pypdf's text (the two libraries'
texts differ in spacing, ligatures and the order of some blocks); OCR pages give each character its
line's box. Stored as uint16 columns of differences, zlib-compressed (base64 in the sandbox's JSON lines).
"""

from __future__ import annotations

import base64
import unicodedata
import zlib
from typing import TYPE_CHECKING, Any

from ragapp.records import Box

if TYPE_CHECKING:
    import numpy as np

SCALE = 10_000  # Box's units
NONE = 0xFFFF
# No page holds more characters than a whole file may (ingest.pdf_max_chars' default).
MAX_CHARS = 50_000_000
# Characters matched in a row before a resynchronised alignment is trusted (see `align`).
_GRAM = 6
# How far ahead in the text a lost alignment looks for the next run it can place; how many places of
# a repeated run it weighs, and over how many characters it checks that each goes on agreeing.
_LOOKAHEAD = 64
_CANDIDATES = 32
_CONFIRM = 64
_TRUSTED = 3  # grams after the first that agree before a resynchronisation is taken at once


def encode(boxes: np.ndarray) -> bytes:
    """A page's boxes (n x 4 uint16, NONE where a character has no box), compressed: column by column,
    each as differences from the character before (neighbours on a line sit close), then zlib."""
    import numpy as np

    columns = np.ascontiguousarray(np.asarray(boxes, dtype=np.uint16).T)
    steps = np.diff(columns, axis=1, prepend=np.zeros((4, 1), dtype=np.uint16))  # wraps modulo 2**16
    return zlib.compress(steps.astype("<u2").tobytes(), 6)


def decode(blob: bytes, chars: int) -> np.ndarray:
    """The boxes of a page of `chars` characters; ValueError when the blob does not hold that many."""
    import numpy as np

    if not 0 <= chars <= MAX_CHARS:
        raise ValueError(f"a page of {chars} characters")
    raw = zlib.decompressobj().decompress(blob, chars * 8 + 1)  # bounded: a stored blob is not trusted to be small
    if len(raw) != chars * 8:
        more = "more than " if len(raw) > chars * 8 else ""
        raise ValueError(f"geometry for {more}{len(raw) // 8} characters, the page has {chars}")
    steps = np.frombuffer(raw, dtype="<u2").reshape(4, chars)
    return np.cumsum(steps, axis=1, dtype=np.uint16).T


def to_text(blob: bytes) -> str:
    """Encoded boxes as text, for the sandbox's JSON lines."""
    return base64.b64encode(blob).decode("ascii")


def from_text(text: object) -> bytes | None:
    """Encoded boxes back from a JSON record; None for anything that is not base64 text."""
    try:
        return base64.b64decode(text, validate=True) if isinstance(text, str) else None
    except ValueError:
        return None


def boxes_for(boxes: np.ndarray, start: int, end: int, ocr: bool = False) -> list[Box]:
    """The boxes covering characters start..end of the page, one per line of text they fall on (an OCR
    page's lines are its recogniser's: characters of one line share its box)."""
    out: list[list[int]] = []
    for x0, y0, x1, y1 in boxes[max(start, 0):max(end, 0)].tolist():
        if x0 == NONE:
            continue
        if out and (out[-1] == [x0, y0, x1, y1] if ocr else _same_line(out[-1], y0, y1, x0)):
            last = out[-1]
            last[:] = [min(last[0], x0), min(last[1], y0), max(last[2], x1), max(last[3], y1)]
        else:
            out.append([x0, y0, x1, y1])
    return [Box(*b) for b in out]


def _same_line(line: list[int], y0: int, y1: int, x0: int) -> bool:
    """Whether a character continues `line`: its middle lies within the line's height, and it does not
    jump back to the left of the line's start (a new column line at the same height)."""
    middle = (y0 + y1) / 2
    return line[1] <= middle <= line[3] and x0 >= line[0] - (line[3] - line[1])


# -- text-layer pages (the child) -----------------------------------------------------------------

def _placed_chars(textpage: Any, page: Any) -> tuple[str, np.ndarray]:
    """pdfium's characters of a page that it draws (no generated spaces), NFKC-normalised one by one (a
    ligature "ﬁ" becomes "f", "i" with one box), and their boxes (n x 4) in page-relative units."""
    from ctypes import c_double

    import numpy as np
    import pypdfium2.raw as pdfium_c

    chars: list[str] = []
    corners: list[tuple[float, float, float, float]] = []
    left, right, bottom, top = c_double(), c_double(), c_double(), c_double()
    for i in range(pdfium_c.FPDFText_CountChars(textpage)):
        code = pdfium_c.FPDFText_GetUnicode(textpage, i)
        if code <= 32 or chr(code).isspace() or pdfium_c.FPDFText_IsGenerated(textpage, i) == 1:
            continue
        if not pdfium_c.FPDFText_GetCharBox(textpage, i, left, right, bottom, top):
            continue
        corner = (left.value, bottom.value, right.value, top.value)
        for ch in chr(code) if code < 128 else unicodedata.normalize("NFKC", chr(code)):
            if not ch.isspace():
                chars.append(ch)
                corners.append(corner)
    return "".join(chars), _to_page(page, np.asarray(corners, dtype=np.float64).reshape(-1, 4))


def _to_page(page: Any, corners: np.ndarray) -> np.ndarray:
    """Boxes (left, bottom, right, top in PDF user space) in page-relative units of the page as shown:
    pdfium's own mapping at rotation 0 (which applies the page's /Rotate and crop box), taken at three
    points and applied to all."""
    from ctypes import c_int

    import numpy as np
    import pypdfium2.raw as pdfium_c

    def device(x: float, y: float) -> np.ndarray:
        dx, dy = c_int(), c_int()
        pdfium_c.FPDF_PageToDevice(page, 0, 0, SCALE, SCALE, 0, x, y, dx, dy)
        return np.array([dx.value, dy.value], dtype=np.float64)

    origin = device(0, 0)
    along_x, along_y = (device(1000, 0) - origin) / 1000, (device(0, 1000) - origin) / 1000
    a = origin + np.outer(corners[:, 0], along_x) + np.outer(corners[:, 1], along_y)  # (left, bottom)
    b = origin + np.outer(corners[:, 2], along_x) + np.outer(corners[:, 3], along_y)  # (right, top)
    boxes = np.concatenate([np.minimum(a, b), np.maximum(a, b)], axis=1)
    return np.clip(np.rint(boxes), 0, SCALE).astype(np.uint16)


def _clip(v: float) -> int:
    return int(min(max(round(v), 0), SCALE))


def text_layer_boxes(page: Any, text: str) -> str:
    """The encoded boxes of `text` (a page's text as pypdf read and ingest cleaned it) on a pypdfium2
    page: pdfium's character boxes, aligned to the text."""
    import numpy as np

    textpage = page.get_textpage()
    try:
        placed, placed_boxes = _placed_chars(textpage, page)
    finally:
        textpage.close()
    boxes = np.full((len(text), 4), NONE, dtype=np.uint16)
    pairs = align(text, placed)
    if pairs:
        boxes[np.fromiter(pairs.keys(), dtype=np.int64)] = placed_boxes[np.fromiter(pairs.values(), dtype=np.int64)]
    return to_text(encode(boxes))


def align(text: str, placed: str) -> dict[int, int]:
    """Which character of `placed` (pdfium's drawn characters) each non-space character of `text` is.

    A walk along both: equal characters pair up; where they part (a hyphen pypdf dropped, a block the
    two read in another order), the next `_GRAM` characters of the text are looked up in `placed`
    (nearest occurrence after the current place first) and the walk resumes there. Linear in practice,
    where difflib's matcher takes seconds on a dense page."""
    where: list[int] = []  # the text's index of each character of `mine` (a ligature gives two)
    parts: list[str] = []
    for i, ch in enumerate(text):
        for x in (ch if ch < "\x80" else unicodedata.normalize("NFKC", ch)):
            if not x.isspace():
                parts.append(x)
                where.append(i)
    mine = "".join(parts)
    grams: dict[str, list[int]] = {}
    for j in range(len(placed) - _GRAM + 1):
        grams.setdefault(placed[j:j + _GRAM], []).append(j)
    out: dict[int, int] = {}
    i = j = 0
    while i < len(mine):
        if j < len(placed) and mine[i] == placed[j]:
            out.setdefault(where[i], j)
            i, j = i + 1, j + 1
            continue
        found = _resync(mine, i, j, grams, len(placed))
        if found is None:
            i += 1
        else:
            i, j = found
    return out


def _resync(mine: str, i: int, j: int, grams: dict[str, list[int]], drawn: int) -> tuple[int, int] | None:
    """The nearest place where the text from `i` on (skipping at most `_LOOKAHEAD` characters) is found in
    the drawn characters again and goes on agreeing there. Where its next characters occur more than once
    (a table's repeated dates, a formula's bracket pdfium does not draw before a common word), the
    occurrence that agrees longest wins, then the nearest after `j`; a run that agrees with nothing after
    it is taken only when no skip does better."""
    best: tuple[int, int, int] | None = None  # (agreement, i, position)
    for skip in range(min(_LOOKAHEAD, len(mine) - i)):
        spots = grams.get(mine[i + skip:i + skip + _GRAM])
        if not spots:
            continue
        near = sorted(spots, key=lambda p: (p < j, abs(p - j)))[:_CANDIDATES]
        score, at = max((_agreeing(mine, i + skip, grams, p, drawn), -n) for n, p in enumerate(near))
        if best is None or score > best[0]:
            best = (score, i + skip, near[-at])
        if score >= _TRUSTED:
            break
    return None if best is None else (best[1], best[2])


def _agreeing(mine: str, i: int, grams: dict[str, list[int]], p: int, drawn: int) -> int:
    """How many of the text's next grams continue in step from drawn position `p` (of `drawn` characters),
    up to the first that does not; running off the end of either counts as agreeing to the end."""
    agreed = 0
    for k in range(_GRAM, _CONFIRM, _GRAM):
        if i + k + _GRAM > len(mine) or p + k + _GRAM > drawn:
            return _TRUSTED
        if p + k not in grams.get(mine[i + k:i + k + _GRAM], ()):
            break
        agreed += 1
    return agreed


# -- OCR pages (the child) ------------------------------------------------------------------------

def line_boxes(lines: list[tuple[str, tuple[float, float, float, float]]], width: float, height: float) -> tuple[str, str]:
    """A page's OCR text (its lines joined by newlines) and encoded boxes: each character gets its line's
    box (x0, y0, x1, y1 in pixels of an image of `width` x `height`)."""
    import numpy as np

    text = "\n".join(t for t, _ in lines)
    boxes = np.full((len(text), 4), NONE, dtype=np.uint16)
    at = 0
    for line, (x0, y0, x1, y1) in lines:
        boxes[at:at + len(line)] = (_clip(x0 / width * SCALE), _clip(y0 / height * SCALE),
                                    _clip(x1 / width * SCALE), _clip(y1 / height * SCALE))
        at += len(line) + 1
    return text, to_text(encode(boxes))

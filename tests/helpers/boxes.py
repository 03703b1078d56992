"""Independent measures of a drawn citation (tests and bench/highlight.py): where pdfium itself places
a text on a page, intersection over union of two sets of boxes, and highlight pixels in a picture."""

from __future__ import annotations

import unicodedata

import numpy as np

GRID = 2000  # boxes are compared on a GRID x GRID raster of the page
# The highlight over white paper (ragapp.load.render: amber at 110/255 over white) and its tolerance.
HIGHLIGHT_ON_WHITE = (255, 229, 145)
TOLERANCE = 24


def pdfium_boxes(path: str, page: int, text: str) -> list[tuple[int, int, int, int]] | None:
    """Where pdfium places `text` on page `page` (1-based): the bounding rectangle of its character boxes
    on each line (a line ends where a character's middle leaves the line's height), in page-relative
    units (0..10000, top-left origin, the page as shown); None when pdfium's text of the page does not
    hold `text` exactly once (spaces and NFKC forms aside)."""
    import pypdfium2 as pdfium

    from ragapp.load.geometry import _placed_chars

    doc = pdfium.PdfDocument(path)
    p = doc[page - 1]
    tp = p.get_textpage()
    placed, placed_boxes = _placed_chars(tp, p)
    boxes = placed_boxes.tolist()
    tp.close()
    wanted = "".join(c for c in unicodedata.normalize("NFKC", text) if not c.isspace())
    at = placed.find(wanted)
    if not wanted or at < 0 or placed.find(wanted, at + 1) >= 0:
        return None
    lines: list[list[int]] = []
    for x0, y0, x1, y1 in boxes[at:at + len(wanted)]:
        if lines and lines[-1][1] <= (y0 + y1) / 2 <= lines[-1][3]:
            line = lines[-1]
            line[:] = [min(line[0], x0), min(line[1], y0), max(line[2], x1), max(line[3], y1)]
        else:
            lines.append([x0, y0, x1, y1])
    return [tuple(line) for line in lines]  # type: ignore[misc]


def _mask(boxes) -> np.ndarray:
    grid = np.zeros((GRID, GRID), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        a, b, c, d = (int(v * GRID / 10_000) for v in (x0, y0, x1, y1))
        grid[b:max(d, b + 1), a:max(c, a + 1)] = True
    return grid


def iou(drawn, truth) -> float:
    """Intersection over union of the areas two sets of boxes cover."""
    a, b = _mask(drawn), _mask(truth)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def highlight_share(png: bytes, box: tuple[float, float, float, float] | None = None) -> float:
    """The share of pixels in `box` (fractions of the picture: x0, y0, x1, y1; the whole picture when None)
    that have the highlight's colour over white paper."""
    import io

    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    if box is not None:
        h, w = pixels.shape[:2]
        pixels = pixels[int(box[1] * h):max(int(box[3] * h), int(box[1] * h) + 1), int(box[0] * w):max(int(box[2] * w), int(box[0] * w) + 1)]
    close = (np.abs(pixels - np.array(HIGHLIGHT_ON_WHITE)) <= TOLERANCE).all(axis=-1)
    return float(close.mean())

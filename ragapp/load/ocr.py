"""OCR with RapidOCR (PP-OCR det/rec and a direction classifier as ONNX, inside the `rapidocr`
wheel, Chinese and English, offline), and image files read through it (in the sandbox child).

The recogniser returns text lines with their boxes; lines are put in reading order by cutting the
page at its blank bands (an XY-cut), so two-column pages read column by column, and vertical
Chinese reads column by column from right to left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ragapp.errors import ParseError
from ragapp.load.geometry import line_boxes

INSTALL = "pip install rapidocr onnxruntime"
# Pages are rendered at 200 dpi (PDF units are 1/72 inch): enough for 9-point text, and the
# detector scales larger images down anyway.
RENDER_DPI = 200
# A box taller than 1.5 times its width holding two or more characters is a vertical line of text.
_VERTICAL_RATIO = 1.5
# A blank band down the page narrower than this share of its width is a space between words, not a gutter.
_MIN_GAP_SHARE = 0.01


def render_scale(width_pt: float, height_pt: float, max_pixels: int) -> float:
    """The scale to render a page of this size at RENDER_DPI, lowered to stay under `max_pixels`."""
    scale = RENDER_DPI / 72
    area = max(width_pt * height_pt, 1.0)
    return min(scale, (max_pixels / area) ** 0.5)


class OCR:
    """Reads the text of an image (an RGB array) in reading order."""

    def __init__(self, threads: int = 1) -> None:
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise ParseError(f"OCR is not installed: {INSTALL}") from exc
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self.engine = RapidOCR(params={"Global.log_level": "error",
                                       "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                                       "EngineConfig.onnxruntime.inter_op_num_threads": 1})

    def read(self, image) -> str:
        """The text of a PIL image, one line per detected text line, in reading order."""
        return "\n".join(text for text, _ in self.read_lines(image))

    def read_lines(self, image) -> list[tuple[str, tuple[float, float, float, float]]]:
        """The text lines of a PIL image in reading order, each with its box in the image's pixels (the
        bounding box of the line as detected, before the page's slant is taken out for ordering)."""
        import numpy as np

        pixels = np.asarray(image.convert("RGB"))[:, :, ::-1]  # the engine reads OpenCV's BGR order
        result: Any = self.engine(np.ascontiguousarray(pixels))  # RapidOCROutput: txts, boxes
        if not result.txts:
            return []
        quads = np.asarray(result.boxes, dtype=np.float64)
        drawn: dict[int, tuple[float, float, float, float]] = {}
        boxes: list[Box] = []
        for quad, level, text in zip(quads, deskewed(quads), result.txts):
            if text.strip():
                box = (float(level[:, 0].min()), float(level[:, 1].min()), float(level[:, 0].max()), float(level[:, 1].max()), text)
                drawn[id(box)] = (float(quad[:, 0].min()), float(quad[:, 1].min()), float(quad[:, 0].max()), float(quad[:, 1].max()))
                boxes.append(box)
        return [(b[4], drawn[id(b)]) for b in reading_order(boxes, float(image.size[0]), float(image.size[1]))]


Box = tuple[float, float, float, float, str]  # x0, y0, x1, y1, text


def deskewed(quads):
    """Text boxes (n x 4 corner points, clockwise from top left) turned by the median slant of their top
    edges, so the lines of a skewed scan lie level and their bounding boxes stop overlapping."""
    import numpy as np

    top = quads[:, 1] - quads[:, 0]
    wide = np.abs(top[:, 0]) > np.abs(top[:, 1])  # horizontal lines carry the page's slant
    if not wide.any():
        return quads
    angle = float(np.median(np.arctan2(top[wide, 1], top[wide, 0])))
    cos, sin = np.cos(-angle), np.sin(-angle)
    return quads @ np.array([[cos, sin], [-sin, cos]])


def _vertical(box: Box) -> bool:
    x0, y0, x1, y1, text = box
    return len(text) >= 2 and (y1 - y0) > _VERTICAL_RATIO * (x1 - x0)


def _widest_gap(boxes: list[Box], axis: int) -> tuple[float, int]:
    """The widest blank band between boxes along `axis` (0: x, 1: y) and where it falls in the sorted
    order: (-1, 0) when every box overlaps the next."""
    coords = [(float(b[axis]), float(b[axis + 2])) for b in sorted(boxes, key=lambda b: b[axis])]
    best, at, end = -1.0, 0, coords[0][1]
    for n, (start, stop) in enumerate(coords[1:], start=1):
        if start - end > best:
            best, at = start - end, n
        end = max(end, stop)
    return (best, at) if best > 0 else (-1.0, 0)


def reading_order(boxes: list[Box], width: float = 0.0, height: float = 0.0) -> list[Box]:
    """Boxes in reading order (a recursive XY-cut): the page is cut at its widest blank band, across
    or down, and each side is read in turn, so a two-column region reads column by column under a
    full-width heading. Vertical text reads column by column, right to left."""
    if len(boxes) <= 1:
        return boxes
    if sum(map(_vertical, boxes)) * 2 > len(boxes):
        return _columns_right_to_left(boxes)
    across, at_row = _widest_gap(boxes, 1)
    down, at_col = _widest_gap(boxes, 0)
    if down > across and down >= _MIN_GAP_SHARE * width:
        axis, at = 0, at_col
    elif across > 0:
        axis, at = 1, at_row
    else:
        return _lines(boxes)
    ordered = sorted(boxes, key=lambda b: b[axis])
    return reading_order(ordered[:at], width, height) + reading_order(ordered[at:], width, height)


def _columns_right_to_left(boxes: list[Box]) -> list[Box]:
    """Vertical lines right to left; boxes whose centres fall in one column read top to bottom."""
    columns: list[list[Box]] = []
    for box in sorted(boxes, key=lambda b: -(b[0] + b[2]) / 2):
        if columns and columns[-1][0][0] <= (box[0] + box[2]) / 2 <= columns[-1][0][2]:
            columns[-1].append(box)
        else:
            columns.append([box])
    return [b for col in columns for b in sorted(col, key=lambda b: b[1])]


def _lines(boxes: list[Box]) -> list[Box]:
    """Boxes top to bottom, and left to right where they share a line."""
    ordered = sorted(boxes, key=lambda b: (b[1] + b[3]) / 2)
    lines: list[list[Box]] = []
    for box in ordered:
        if lines and (box[1] + box[3]) / 2 < max(b[3] for b in lines[-1]):
            lines[-1].append(box)
        else:
            lines.append([box])
    return [b for line in lines for b in sorted(line, key=lambda b: b[0])]


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")


def parse_image(path: str, limits: dict, emit: Callable[[dict], None], start_page: int = 1) -> None:
    """Emit the OCR text of an image file (each frame of a multi-page TIFF as a page)."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = limits["render_max_pixels"]  # Pillow raises DecompressionBombError past twice this
    if not limits["ocr"]:
        raise ParseError("an image, and OCR is off (ingest.ocr)")
    try:
        image = Image.open(path)
        frames = getattr(image, "n_frames", 1)
        if frames > limits["pdf_max_pages"]:
            raise ParseError(f"{frames} frames, over the limit of {limits['pdf_max_pages']} (ingest.pdf_max_pages)")
        ocr = OCR(limits["ocr_threads"])
        for number in range(start_page, frames + 1):
            image.seek(number - 1)
            emit({"working": number})
            frame = _bounded(image, limits["render_max_pixels"])
            text, boxes = line_boxes(ocr.read_lines(frame), frame.width, frame.height)
            if text.strip():
                emit({"page": number if frames > 1 else None, "text": text, "ocr": True, "boxes": boxes})
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, EOFError) as exc:
        raise ParseError(f"unreadable image ({type(exc).__name__}: {exc})") from exc


def _bounded(image, max_pixels: int):
    """The frame upright (a phone's EXIF orientation applied), in RGB (palette and 1-bit scans are misread
    otherwise), at most `max_pixels` pixels."""
    from PIL import ImageOps

    frame = ImageOps.exif_transpose(image).convert("RGB")
    pixels = frame.width * frame.height
    if pixels > max_pixels:
        ratio = (max_pixels / pixels) ** 0.5
        frame = frame.resize((max(1, int(frame.width * ratio)), max(1, int(frame.height * ratio))))
    return frame

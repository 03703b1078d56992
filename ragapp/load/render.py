"""A page drawn for a citation (in the sandbox child, like every reader of the user's files): a PDF page
rendered by pypdfium2, or an image file's frame, at a requested width within the render cap, with the
cited characters' boxes highlighted. Emits one record: {"png": base64, "width", "height", "capped"}."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from typing import Any

from ragapp.errors import ParseError
from ragapp.load.geometry import SCALE
from ragapp.load.ocr import IMAGE_SUFFIXES

# The highlight: a translucent amber fill and a darker outline, visible on white, grey and photo pages.
HIGHLIGHT = (255, 196, 0)
HIGHLIGHT_ALPHA = 110  # of 255
OUTLINE = (214, 120, 0)
# A box is drawn a little larger than the glyphs it covers, so the letters sit inside it.
PAD = 0.004
MAX_WIDTH = 4000
MAX_BOXES = 4000


def page_image(path: str, limits: dict, emit: Callable[[dict], None], start_page: int = 1, *, width: int = 900,
               boxes: Sequence[Sequence[int]] = ()) -> None:
    """Emit page `start_page` of the file at `path` as a PNG `width` pixels wide (less when the page would
    pass `render_max_pixels`), with `boxes` (page-relative, 0..10000) highlighted."""
    if not isinstance(width, int) or not 16 <= width <= MAX_WIDTH:
        raise ParseError(f"width must be 16..{MAX_WIDTH} pixels. Currently, the width is {width!r}")
    if len(boxes) > MAX_BOXES:
        raise ParseError(f"{len(boxes)} boxes, over {MAX_BOXES}")
    if path.lower().endswith(IMAGE_SUFFIXES):
        image, capped = _image_frame(path, start_page, width, limits["render_max_pixels"])
    else:
        image, capped = _pdf_page(path, start_page, width, limits["render_max_pixels"])
    image = highlighted(image, boxes)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=3)
    emit({"png": base64.b64encode(out.getvalue()).decode("ascii"), "width": image.width, "height": image.height,
          "capped": capped})


def _fit(width: int, aspect: float, max_pixels: int) -> tuple[int, bool]:
    """The width to draw at: as asked, or lower so that width x height stays within `max_pixels`."""
    most = int((max_pixels / max(aspect, 1e-6)) ** 0.5)
    return (width, False) if width <= most else (max(most, 1), True)


def _pdf_page(path: str, number: int, width: int, max_pixels: int) -> tuple[Any, bool]:
    import pypdfium2

    try:
        doc = pypdfium2.PdfDocument(path)
    except pypdfium2.PdfiumError as exc:
        raise ParseError(f"unreadable PDF ({exc})") from exc
    if not 1 <= number <= len(doc):
        raise ParseError(f"the PDF has {len(doc)} pages, not a page {number}")
    page = doc[number - 1]
    w_pt, h_pt = page.get_size()
    drawn, capped = _fit(width, h_pt / max(w_pt, 1e-6), max_pixels)
    try:
        return page.render(scale=drawn / max(w_pt, 1e-6)).to_pil().convert("RGB"), capped
    except pypdfium2.PdfiumError as exc:
        raise ParseError(f"the page could not be rendered ({exc})") from exc


def _image_frame(path: str, number: int, width: int, max_pixels: int) -> tuple[Any, bool]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow raises DecompressionBombError past twice this
    try:
        image = Image.open(path)
        frames = getattr(image, "n_frames", 1)
        if number > frames:
            raise ParseError(f"the image has {frames} frames, not a frame {number}")
        image.seek(number - 1)
        frame = ImageOps.exif_transpose(image).convert("RGB")  # upright, as OCR read it
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, EOFError) as exc:
        raise ParseError(f"unreadable image ({type(exc).__name__}: {exc})") from exc
    drawn, capped = _fit(width, frame.height / max(frame.width, 1), max_pixels)
    return frame.resize((drawn, max(1, round(frame.height * drawn / frame.width)))), capped


def highlighted(image: Any, boxes: Sequence[Sequence[int]]) -> Any:
    """The image with each box (page-relative, 0..10000) filled in translucent amber and outlined (only
    the boxes' pixels are blended: the rest of the page is copied as it is)."""
    from PIL import Image, ImageDraw

    if not boxes:
        return image
    image = image.copy()
    draw = ImageDraw.Draw(image)
    w, h = image.size
    for box in boxes:
        x0, y0, x1, y1 = (int(v) / SCALE for v in box[:4])
        rect = (max(0, int((x0 - PAD) * w)), max(0, int((y0 - PAD) * h)), min(w, int((x1 + PAD) * w) + 1),
                min(h, int((y1 + PAD) * h) + 1))
        if rect[2] <= rect[0] or rect[3] <= rect[1]:
            continue
        region = image.crop(rect)
        image.paste(Image.blend(region, Image.new("RGB", region.size, HIGHLIGHT), HIGHLIGHT_ALPHA / 255), rect[:2])
        draw.rectangle((rect[0], rect[1], rect[2] - 1, rect[3] - 1), outline=OUTLINE, width=max(1, w // 500))
    return image

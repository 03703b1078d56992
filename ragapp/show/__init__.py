"""Show stage: a citation on its page. Boxes come from the geometry ingest recorded (ragapp.show.store,
read only when a citation is shown); the picture is the user's own file rendered in the sandbox with
ingest's limits (ragapp.load.render), for documents the index lists and nothing else. A file deleted
or changed since it was indexed, a page that will not render, a page over the render cap: each gives
a picture with a notice instead of a traceback (a changed file is shown as it is now, without boxes).
"""

from __future__ import annotations

import base64
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

from ragapp.config import IngestConfig
from ragapp.digest import file_sha256
from ragapp.errors import BusyError, DocumentError
from ragapp.index import FileRecord
from ragapp.load.geometry import boxes_for, decode
from ragapp.load.ocr import IMAGE_SUFFIXES
from ragapp.records import Box
from ragapp.sandbox import run_parser
from ragapp.show.store import PAGES_FILE, has_pages, read_page

__all__ = ["PAGES_FILE", "PageImage", "PageView", "drawable", "has_pages"]

# A page shown for a citation waits at most this long for the renderer (ingest's own limit is minutes).
RENDER_TIMEOUT_S = 30.0
# Pictures kept per process (a chat shows the same few pages again and again).
CACHE_PAGES = 48
# A page is drawn at the first of these widths at or above the one asked for, so the cache serves
# neighbouring widths and a caller cannot make every request a new render.
WIDTHS = (240, 480, 720, 900, 1200, 1600, 2000, 2400, 3200, 4000)
RENDERER = "ragapp.load.render:page_image"


@dataclass(frozen=True)
class PageImage:
    """A page as a PNG with the cited text boxed; `notice` says why it is shown otherwise (changed since
    indexed, no geometry, scaled down) or why there is no page to show (then the PNG is the notice)."""

    png: bytes
    width: int
    height: int
    boxes: tuple[Box, ...] = ()
    notice: str = ""


class PageView:
    """Citations of one index on their pages (see the module's docstring)."""

    def __init__(self, folder: Path, limits: IngestConfig) -> None:
        self.folder = folder
        self.limits = replace(limits, pdf_timeout_s=min(limits.pdf_timeout_s, RENDER_TIMEOUT_S))
        self._cache: OrderedDict[tuple, PageImage] = OrderedDict()
        self._hashes: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def boxes(self, source: str, record: FileRecord | None, page: int | None, start: int, end: int) -> tuple[Box, ...]:
        """The boxes of characters start..end of the page as ingest recorded them; () when the index keeps
        no geometry for it."""
        if record is None or end <= start:
            return ()
        stored = read_page(self.folder, source, record.sha256, page)
        if stored is None:
            return ()
        try:
            return tuple(boxes_for(decode(stored.boxes, stored.chars), start, end, stored.ocr))
        except (ValueError, OSError):  # a damaged row: the citation falls back to its text
            return ()

    def image(self, source: str, record: FileRecord | None, page: int | None, start: int = 0, end: int = 0,
              width: int = 900, renders: threading.Semaphore | None = None) -> PageImage:
        """The page of `source` (a document the index lists: `record`) as a PNG at least `width` pixels wide
        (the next of WIDTHS) with characters start..end boxed; LookupError for a document the index does not
        list. With `renders`, a page not in the cache is drawn only when a slot is free, else BusyError."""
        if record is None:
            raise LookupError(f"{source} is not in the index")
        if not 16 <= width <= 4000:
            raise ValueError(f"width must be 16..4000 pixels. Currently, the width is {width!r}")
        width = next(w for w in WIDTHS if w >= width)
        state = self._state(source, record)
        key = (source, record.sha256, state, page, start, end, width)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        if renders is not None and not renders.acquire(blocking=False):
            raise BusyError("every page renderer is busy; try again in a moment")
        try:
            shown = self._draw(source, record, state, page, start, end, width)
        finally:
            if renders is not None:
                renders.release()
        with self._lock:
            self._cache[key] = shown
            while len(self._cache) > CACHE_PAGES:
                self._cache.popitem(last=False)
        return shown

    def _draw(self, source: str, record: FileRecord, state: str, page: int | None, start: int, end: int,
              width: int) -> PageImage:
        if state == "deleted":
            return notice_image("The file is gone from where it was indexed (deleted or moved); ingest again to "
                                "update the index.", width)
        if not drawable(source):
            return notice_image("Pages are drawn for PDFs and images; this citation is shown as text.", width)
        boxes = self.boxes(source, record, page, start, end) if state == "same" else ()
        notice = "Changed since indexed: the page is shown as it is now, without the highlight." if state == "changed" \
            else "" if boxes or end <= start else self._why_no_boxes(source, record, page)
        try:
            shown = _render(source, page or 1, width, boxes, self.limits)
        except DocumentError as exc:
            return notice_image(f"The page could not be shown: {str(exc).removeprefix(f'{source}: ')}", width)
        if shown.notice:
            notice = " ".join(n for n in (notice, shown.notice) if n)
        return replace(shown, boxes=boxes, notice=notice)

    def _why_no_boxes(self, source: str, record: FileRecord, page: int | None) -> str:
        if not has_pages(self.folder):
            return "This index was built before ragapp kept where text sits on a page: rebuild it to see the highlight."
        if read_page(self.folder, source, record.sha256, page) is None:
            return "Where this page's text sits was not recorded (its text could not be placed on the page)."
        return "The quoted characters could not be placed on the page."

    def _state(self, source: str, record: FileRecord) -> str:
        """"same" when the file is as indexed, "changed", or "deleted" (gone, unreadable, or no longer a
        regular file: a FIFO put in its place would block whoever opened it)."""
        try:
            st = Path(source).stat()
        except OSError:
            return "deleted"
        if not stat.S_ISREG(st.st_mode):
            return "deleted"
        if record.same_stat(st):
            return "same"
        mark = (source, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        digest = self._hashes.get(mark)
        if digest is None:
            if len(self._hashes) > CACHE_PAGES:
                self._hashes.clear()
            if st.st_size > self.limits.max_file_mb * 1e6:
                return "changed"  # not hashed: a file over the ingest limit was not what was indexed
            try:
                digest = self._hashes[mark] = _regular_sha256(source)
            except OSError:
                return "deleted"
        return "same" if digest == record.sha256 else "changed"


def _regular_sha256(source: str) -> str:
    """sha256 of a regular file, opened without blocking (OSError for anything else put in its place)."""
    fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{source} is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            return file_sha256(f)
    finally:
        os.close(fd)


def drawable(source: str) -> bool:
    """Whether pages of this file are drawn (PDFs and images); other formats' citations are shown as text."""
    return source.lower().endswith((".pdf", *IMAGE_SUFFIXES))


def _render(source: str, page: int, width: int, boxes: tuple[Box, ...], limits: IngestConfig) -> PageImage:
    """The page drawn by the sandboxed renderer, with the boxes filled in."""
    options = {"width": width, "boxes": [[b.x0, b.y0, b.x1, b.y1] for b in boxes]}
    for record in run_parser(RENDERER, source, source, limits, page, options):
        if "png" in record:
            png = base64.b64decode(record["png"])
            notice = f"Scaled down to {record['width']} pixels wide: the page is larger than the render cap " \
                     "(ingest.render_max_pixels)." if record.get("capped") else ""
            return PageImage(png, int(record["width"]), int(record["height"]), notice=notice)
    raise DocumentError(f"{source}: the renderer gave no picture")


def notice_image(message: str, width: int = 900) -> PageImage:
    """A plain picture that says `message`, where a page cannot be shown."""
    import io
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    width = max(width, 240)
    size = max(12, width // 45)
    font = ImageFont.load_default(size=size)
    lines = textwrap.wrap(message, width=max(20, int(width / (size * 0.55))))
    height = int(size * 1.5 * len(lines) + size * 3)
    image = Image.new("RGB", (width, height), (250, 245, 230))
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((size * 1.5, size * 1.5 + n * size * 1.5), line, fill=(90, 60, 0), font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return PageImage(out.getvalue(), width, height, notice=message)

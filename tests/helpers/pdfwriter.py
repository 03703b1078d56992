"""A minimal PDF writer for tests: real PDF files with a text layer (Helvetica, Latin-1), one list of lines per page."""

from __future__ import annotations

from pathlib import Path


def _escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_pdf(path: str | Path, pages: list[list[str]], title: str = "", size: tuple[int, int] = (595, 842)) -> Path:
    """Write `pages` (each a list of text lines, from the top left) as a PDF of pages `size` points; returns the path."""
    objects: list[bytes] = []
    n_pages = len(pages)
    # 1: catalog, 2: pages, 3: font, then per page: page object + content stream.
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, lines in enumerate(pages):
        body = ["BT", "/F1 11 Tf", "14 TL", f"50 {size[1] - 52} Td"]
        for line in lines:
            body.append(f"({_escape(line)}) Tj T*")
        body.append("ET")
        stream = "\n".join(body).encode("latin-1")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {size[0]} {size[1]}] /Resources << /Font << /F1 3 0 R >> >> "
                       f"/Contents {5 + 2 * i} 0 R >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    info = f" /Info << /Title ({_escape(title)}) >>" if title else ""
    return _write(path, objects, info)


def _write(path: str | Path, objects: list[bytes], trailer_extra: str = "") -> Path:
    """Numbered objects, the xref table and the trailer (object 1 is the catalog)."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{trailer_extra} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    Path(path).write_bytes(bytes(out))
    return Path(path)


def write_flate_pdf(path: str | Path, first_page: str, content: bytes | None = None, expanded: int = 0) -> Path:
    """A two-page PDF: page 1 holds `first_page` as text; page 2's FlateDecode content stream is
    `content`, followed by `expanded` bytes of spaces (compressed streaming, so a stream that
    inflates to gigabytes costs megabytes on disk: a decompression bomb)."""
    import zlib

    comp = zlib.compressobj(9)
    body = comp.compress(content or b"BT /F1 11 Tf 50 790 Td (page two) Tj ET\n")
    block = b" " * (1 << 24)
    for _ in range(expanded // len(block)):
        body += comp.compress(block)
    body += comp.compress(b" " * (expanded % len(block))) + comp.flush()
    text = f"BT /F1 11 Tf 50 790 Td ({_escape(first_page)}) Tj ET".encode("latin-1")
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [4 0 R 6 0 R] /Count 2 >>",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    for number, (stream, extra) in enumerate(((text, b""), (body, b" /Filter /FlateDecode"))):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> "
                       b"/Contents %d 0 R >>" % (5 + 2 * number))
        objects.append(b"<< /Length %d%s >>\nstream\n" % (len(stream), extra) + stream + b"\nendstream")
    return _write(path, objects)


def write_image_pdf(path: str | Path, lines: list[str], side: int) -> Path:
    """A one-page PDF with `lines` as text over a side x side RGB image (FlateDecode, all black): small on
    disk, side * side * 3 bytes when a renderer decodes it."""
    import zlib

    comp = zlib.compressobj(1)
    row = b"\0" * (side * 3)
    image = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    text = "\n".join(f"({_escape(line)}) Tj T*" for line in lines)
    content = f"q 100 0 0 100 400 50 cm /Im1 Do Q BT /F1 11 Tf 14 TL 50 790 Td {text} ET".encode("latin-1")
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> "
               b"/XObject << /Im1 6 0 R >> >> /Contents 5 0 R >>",
               b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
               b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB /BitsPerComponent 8 "
               b"/Filter /FlateDecode /Length %d >>\nstream\n" % (side, side, len(image)) + image + b"\nendstream"]
    return _write(path, objects)

"""Checks on zip-based formats (docx, pptx, xlsx, epub) before a library opens them: entry count
and total uncompressed size (zip bombs), and the encrypted or old binary Office files that share
their suffixes."""

from __future__ import annotations

import zipfile

from ragapp.errors import ParseError

_CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # OLE compound file: encrypted OOXML, or .doc/.xls/.ppt
_ENCRYPTION_INFO = "EncryptionInfo".encode("utf-16-le")


def check_zip(path: str, limits: dict) -> None:
    """Raise ParseError for a file that is not a zip archive, is encrypted, or would inflate past the limits.
    zipfile stops each entry at its declared size, so the declared sizes bound what is read."""
    with open(path, "rb") as f:
        head = f.read(8)
        if head == _CFB_MAGIC:
            if _ENCRYPTION_INFO in f.read(1 << 20):
                raise ParseError("password-protected (encrypted) Office file; save a copy without a password")
            raise ParseError("an old binary Office file (.doc/.xls/.ppt) under a new suffix; save it as .docx/.xlsx/.pptx")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ParseError(f"not a valid zip package, truncated or broken ({exc})") from exc
    if len(entries) > limits["zip_max_entries"]:
        raise ParseError(f"{len(entries)} entries in the archive, over the limit of {limits['zip_max_entries']} "
                         "(ingest.zip_max_entries; a zip bomb?)")
    total = sum(e.file_size for e in entries)
    if total > limits["unzip_max_mb"] << 20:
        raise ParseError(f"{total / 2**20:.0f} MB uncompressed, over the {limits['unzip_max_mb']} MB limit "
                         "(ingest.unzip_max_mb; a zip bomb?)")

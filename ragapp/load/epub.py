"""EPUB books (parsed in the sandbox child) with the standard library: the zip's OPF package
lists the chapters in reading order (its spine); each chapter's XHTML becomes one page, numbered
in that order, with its title as the label."""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable

from ragapp.errors import ParseError
from ragapp.load.archive import check_zip
from ragapp.load.clean import clean_text
from ragapp.load.text import html_to_text

_TITLE = re.compile(r"<(title|h1|h2)\b[^>]*>(.*?)</\1>", re.I | re.S)
_TAG = re.compile(r"<[^>]+>")
_LABEL_CHARS = 80


def _xml(archive: zipfile.ZipFile, name: str) -> ET.Element:
    try:
        return ET.fromstring(archive.read(name))
    except KeyError as exc:
        raise ParseError(f"not a valid EPUB ({name} is missing)") from exc
    except ET.ParseError as exc:
        raise ParseError(f"not a valid EPUB ({name}: {exc})") from exc


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def spine(archive: zipfile.ZipFile) -> list[str]:
    """The archive paths of the book's content documents, in reading order."""
    container = _xml(archive, "META-INF/container.xml")
    rootfile = next((e.get("full-path") for e in container.iter() if _local(e.tag) == "rootfile"), None)
    if not rootfile:
        raise ParseError("not a valid EPUB (container.xml names no package file)")
    package = _xml(archive, rootfile)
    base = posixpath.dirname(rootfile)
    items = {e.get("id"): e.get("href") for e in package.iter() if _local(e.tag) == "item"}
    order = [e.get("idref") for e in package.iter() if _local(e.tag) == "itemref"]
    return [posixpath.normpath(posixpath.join(base, href)) for i in order if (href := items.get(i))]


def _title(html: str) -> str | None:
    match = _TITLE.search(html)
    title = " ".join(_TAG.sub("", match.group(2)).split()) if match else ""
    return title[:_LABEL_CHARS] or None


def parse(path: str, limits: dict, emit: Callable[[dict], None], start_page: int = 1) -> None:
    """Emit each chapter of the book as a page (in reading order, with its title as the label)."""
    check_zip(path, limits)
    with zipfile.ZipFile(path) as archive:
        chapters = spine(archive)
        if len(chapters) > limits["pdf_max_pages"]:
            raise ParseError(f"{len(chapters)} chapters, over the limit of {limits['pdf_max_pages']} (ingest.pdf_max_pages)")
        number = 0
        for name in chapters:
            try:
                html = archive.read(name).decode("utf-8", errors="replace")
            except KeyError:
                continue  # a spine entry without its file: the rest of the book still goes in
            text = clean_text(html_to_text(html))
            if text.strip():
                number += 1
                emit({"page": number, "label": _title(html), "text": text})

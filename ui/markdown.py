"""Untrusted text (model answers, document names, reasons that quote them) made safe for st.markdown:
nothing a document says can make the page load a remote image or show a live link."""

from __future__ import annotations

import re

_LINKS = re.compile(r"[\[\]<>]")
_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:/=&@$^\"'])")
# Streamlit's Markdown turns bare URLs ("http://", "www.") and e-mail addresses into links after
# parsing, so backslash escapes do not stop it: a zero-width space inside the pattern does, and the
# text still reads the same.
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=\bwww)(?=\.)|(?=@)", re.IGNORECASE)
_ZWSP = "\u200b"


def _defang(text: str) -> str:
    return _AUTOLINK.sub(_ZWSP, text)


def safe_markdown(text: str) -> str:
    """Answer text with its formatting kept (emphasis, lists) but no images, links, autolinks or HTML."""
    text = _LINKS.sub(lambda m: "\\" + m.group(0), text.replace("\\", "\\\\"))
    return _defang(text).replace("\n", "  \n")


def plain_markdown(text: str) -> str:
    """Text shown literally (file names, labels, messages): every Markdown character escaped."""
    return _PUNCTUATION.sub(r"\\\1", _defang(text)).replace("\n", " ")

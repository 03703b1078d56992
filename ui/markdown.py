"""Untrusted text (model answers, document names, reasons that quote them) made safe for st.markdown:
nothing a document says can make the page load a remote image or show a live link."""

from __future__ import annotations

import re

_LINKS = re.compile(r"[\[\]<>]")
# Bare URLs ("http://", "www.") and e-mail addresses become links in GitHub-flavoured Markdown:
# an escaped character in the middle breaks the pattern and still shows the same text.
_SCHEME = re.compile(r"(?<=[A-Za-z]):(?=//)")
_WWW = re.compile(r"\b(www)\.", re.IGNORECASE)
_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:/=&@$^\"'])")


def safe_markdown(text: str) -> str:
    """Answer text with its formatting kept (emphasis, lists) but no images, links, autolinks or HTML."""
    text = _LINKS.sub(lambda m: "\\" + m.group(0), text.replace("\\", "\\\\"))
    text = _WWW.sub(r"\1\\.", _SCHEME.sub(r"\\:", text)).replace("@", "\\@")
    return text.replace("\n", "  \n")


def plain_markdown(text: str) -> str:
    """Text shown literally (file names, labels): every Markdown character escaped."""
    return _PUNCTUATION.sub(r"\\\1", text).replace("\n", " ")

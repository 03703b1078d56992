"""E-mail messages (.eml, parsed in the sandbox child) with the standard library: the headers
people search by and the body make the first page; each text attachment is a page of its own,
labelled with its file name. Other attachments are listed by name, not read."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from email.message import EmailMessage, MIMEPart

from ragapp.errors import ParseError
from ragapp.load.clean import clean_text
from ragapp.load.text import html_to_text

_HEADERS = ("From", "To", "Cc", "Date", "Subject")
_TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".csv", ".tsv", ".html", ".htm")


def _text_of(part: EmailMessage | MIMEPart) -> str:
    """A text part decoded (its declared charset, else UTF-8 with replacement), HTML as its visible text."""
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # an unknown charset or a broken encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    if isinstance(content, bytes):
        content = content.decode("utf-8", errors="replace")
    return html_to_text(content) if part.get_content_subtype() == "html" else content


def _is_text_attachment(part: EmailMessage) -> bool:
    name = (part.get_filename() or "").lower()
    return part.get_content_maintype() == "text" or name.endswith(_TEXT_SUFFIXES)


def parse(path: str, limits: dict, emit: Callable[[dict], None], start_page: int = 1) -> None:
    """Emit the message (headers and body) and its text attachments."""
    with open(path, "rb") as f:
        message = email.message_from_binary_file(f, policy=email.policy.default)
    if not any(message.get(h) for h in (*_HEADERS, "Message-ID")):
        raise ParseError("not an e-mail message (no From, To, Subject, Date or Message-ID header)")
    lines = [f"{h}: {' '.join(str(message.get(h)).split())}" for h in _HEADERS if message.get(h)]
    body = message.get_body(preferencelist=("plain", "html"))
    attachments = list(message.iter_attachments()) if message.is_multipart() else []
    others = [a.get_filename() or a.get_content_type() for a in attachments if not _is_text_attachment(a)]
    if others:
        lines.append("Attachments not read: " + ", ".join(others))
    text = "\n".join(lines) + "\n\n" + (_text_of(body) if body is not None else "")
    emit({"page": None, "text": clean_text(text)})
    number = 0
    for part in attachments:
        if _is_text_attachment(part):
            number += 1
            emit({"page": number, "label": part.get_filename() or f"part {number}", "text": clean_text(_text_of(part))})

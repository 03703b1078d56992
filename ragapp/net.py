"""Network addresses: which bind addresses keep a server on this machine, and which Host names are its own."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str | None) -> bool:
    """True for localhost and loopback addresses; False for "", 0.0.0.0, :: and every other address."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# The names a browser uses for this machine; a server on loopback answers to these only (a DNS name
# an attacker rebinds to 127.0.0.1 is none of them).
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})


def host_name(header: str) -> str:
    """The name part of a Host header, lowercased ("[::1]:8000" → "[::1]", "Localhost:80" → "localhost")."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header

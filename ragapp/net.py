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
    if header.startswith("[") and "]" in header:
        name, rest = header[: header.find("]") + 1], header[header.find("]") + 1:]
    elif header.count(":") == 1:
        name, rest = header.split(":")[0], ":" + header.split(":")[1]
    else:
        return header
    # A port is digits or nothing: "localhost:evil.com" is no name of ours (returned whole, it matches none).
    return name if rest == "" or rest[0] == ":" and rest[1:].isdigit() and len(rest) <= 6 else header

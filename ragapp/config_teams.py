"""`[auth]` and `[audit]`, the sections of the one config (ragapp.config.Config holds them) for a team
sharing one ragapp: who may sign in and how often, and what the audit log keeps (docs/teams.md)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ragapp.config_serve import check


@dataclass(frozen=True)
class AuthConfig:
    """People on one server: the limits each one gets, and the reverse proxy that may name them."""

    # A user-name header set by a single sign-on proxy (oauth2-proxy: "X-Forwarded-User"), trusted only
    # on requests whose peer address is one of `trusted_proxies` (addresses or networks).
    trusted_proxy_header: str = ""
    trusted_proxies: tuple[str, ...] = ()
    requests_per_minute: int = 120  # per user, every route
    concurrent_answers: int = 2  # per user: questions answered or waiting at once
    sign_in_attempts_per_minute: int = 5  # failed sign-ins, per user name and per client address
    max_conversations: int = 200  # kept per user (the oldest go first)
    max_turns: int = 100  # kept per conversation
    session_hours: int = 168  # the chat app remembers a sign-in this long (a reload keeps it)

    def __post_init__(self) -> None:
        object.__setattr__(self, "trusted_proxies", tuple(self.trusted_proxies))
        check(min(self.requests_per_minute, self.concurrent_answers, self.sign_in_attempts_per_minute,
                  self.max_conversations, self.max_turns, self.session_hours) > 0, "auth limits must be greater than 0")
        check(not self.trusted_proxies or bool(self.trusted_proxy_header),
              "auth trusted_proxies needs trusted_proxy_header (the header those proxies set)")
        for net in self.trusted_proxies:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                check(False, f"auth trusted_proxies are addresses or networks like 10.0.0.5 or 10.0.0.0/24, not {net!r}")

    def from_proxy(self, peer: str) -> bool:
        """True when `peer` (a request's client address) is a trusted proxy."""
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net, strict=False) for net in self.trusted_proxies)


@dataclass(frozen=True)
class AuditConfig:
    """The audit log of a team's server: one JSON line per request (docs/teams.md)."""

    questions: bool = True  # keep the question text (false: only its length)
    max_mb: int = 50  # a log file past this size is rotated
    keep: int = 10  # rotated files kept

    def __post_init__(self) -> None:
        check(self.max_mb > 0 and self.keep > 0, "audit max_mb and keep must be greater than 0")

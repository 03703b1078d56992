"""Who sent a request: a user of the store (by API key, or named by a trusted single sign-on proxy), an
operator's key (RAGAPP_API_KEYS / the key file: admin of everything, as before users existed), or,
on a server with neither, anyone on loopback. Every identified request is counted against its
sender's per-minute limit and written to the audit log."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ragapp.config import Config
from ragapp.serve.keys import bearer, one_of
from ragapp.teams import EVERYONE, Principal
from ragapp.teams.audit import AuditLog
from ragapp.teams.limits import PerMinute
from ragapp.teams.users import LiveUsers


@dataclass(frozen=True)
class Refused:
    """Why a request names nobody: the reply's message, and what the audit log says."""

    message: str
    reason: str
    who: str = "-"  # whose key it was, when known


class Doorman:
    """Identifies callers of one server (the store as it is at each request, so a removed user or
    revoked key is refused at once), and keeps their per-minute counts and the audit log."""

    def __init__(self, root: str | Path, keys: frozenset[str], config: Config) -> None:
        self.keys, self.auth = keys, config.auth
        self.store = LiveUsers(root)
        self.audit = AuditLog(root, config.audit)
        self.minutes = PerMinute(config.auth.requests_per_minute)

    @property
    def shared(self) -> bool:
        """True when people are told apart (users exist or operator keys are set): then the audit log is kept."""
        return bool(self.keys) or self.store.has_users()

    def limited(self, who: Principal) -> bool:
        """Whether `who` gets the per-person limits: the users of a shared server do; an operator's key
        (as before users existed) and one person alone on their machine do not."""
        return who.via != "operator key" and self.shared

    def identify(self, authorization: str | None, headers: dict[str, str], peer: str) -> Principal | Refused:
        """The caller of a request, or why nobody."""
        header = self.auth.trusted_proxy_header.lower()
        if header and headers.get(header) and self.auth.from_proxy(peer):
            found = self.store.principal(headers[header].strip(), "proxy")
            return found or Refused(f"user {headers[header].strip()!r} (named by the proxy) is not a ragapp user", "unknown user")
        key = bearer(authorization)
        users = self.store.has_users()
        if not key:
            if not self.keys and not users:
                return EVERYONE
            return Refused("missing API key (send Authorization: Bearer <key>)", "no key")
        if one_of(key, self.keys):
            return Principal("operator", admin=True, via="operator key", key_id=hashlib.sha256(key.encode()).hexdigest()[:8])
        if users:
            found, why = self.store.by_key(key)
            if found is not None:
                return found
            if why.startswith("revoked"):
                owner = why.removeprefix("revoked key of ")
                return Refused("this API key was revoked", "revoked key", owner)
        if not self.keys and not users:
            return EVERYONE
        return Refused("wrong API key (send Authorization: Bearer <key>)", "wrong key")

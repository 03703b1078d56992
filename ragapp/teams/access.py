"""Who is asking and what they may do: roles per knowledge base (docs/teams.md has the table)."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("reader", "editor", "admin")
# reader: ask, search, list documents, see pages, give feedback, read jobs and eval reports;
# editor: + upload, delete, ingest, run eval, apply a threshold; admin: + the knowledge base's users.
READ, EDIT, ADMIN = ROLES


@dataclass(frozen=True)
class Principal:
    """One caller: a user of the store, or (`admin` of everything, no roles needed) an operator's key
    from RAGAPP_API_KEYS / the key file, or anyone on a server without users and keys (loopback)."""

    name: str
    admin: bool = False
    roles: dict[str, str] = field(default_factory=dict)
    via: str = "open"  # open | operator key | key | password | proxy
    key_id: str = ""

    def role(self, kb: str) -> str | None:
        """Their role on knowledge base `kb` (None: it does not exist for them)."""
        return ADMIN if self.admin else self.roles.get(kb)

    def may(self, kb: str, need: str) -> bool:
        """True when their role on `kb` is `need` or above."""
        have = self.role(kb)
        return have is not None and ROLES.index(have) >= ROLES.index(need)

    def sees(self, names: list[str]) -> list[str]:
        """The knowledge bases of `names` that exist for them."""
        return [n for n in names if self.role(n) is not None]

    @property
    def who(self) -> str:
        """How the audit log names them (a key by its id, never the key)."""
        return f"{self.name} (key {self.key_id})" if self.key_id else self.name


EVERYONE = Principal("local", admin=True)

"""The user store of a team's ragapp (the only reader and writer of `.ragapp/users.db` under the
knowledge root): people, their role on each knowledge base, their API keys and their password.

Passwords are kept as scrypt hashes (the standard library's; 16 MiB and about 50 ms each, so a stolen
file is slow to guess against); API keys as the SHA-256 of their 32 random bytes (a fast hash is safe
for a secret nobody chose) under a key id that the audit log may name. A change made by `ragapp users` is in force on a
running server's next request (LiveUsers reads the file again whenever another connection committed).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ragapp.teams.access import ROLES, Principal
from ragapp.teams.sqlite import opened

STORE = Path(".ragapp") / "users.db"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_NO_PASSWORD = f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${'00' * 16}${'00' * 32}"  # matches nothing, in equal time
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, admin INTEGER NOT NULL, password TEXT NOT NULL DEFAULT '',
                                  created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS grants (user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE, kb TEXT NOT NULL,
                                   role TEXT NOT NULL, PRIMARY KEY (user, kb));
CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
                                 hash TEXT NOT NULL, created REAL NOT NULL, revoked REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sessions (hash TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
                                     expires REAL NOT NULL);
"""


class UserError(ValueError):
    """A user-store request that cannot be done (unknown user, bad name or role), with the reason."""


def check_name(name: str) -> str:
    """A user name: letters, digits and . _ @ -, at most 64 (UserError otherwise)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"{name!r} is not a user name (letters, digits and . _ @ -, at most 64, starting with a letter or digit)")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"{role!r} is not a role; roles are {', '.join(ROLES)}")
    return role


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, maxmem=64 << 20, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def password_matches(stored: str, password: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        given = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                               dklen=32, maxmem=64 << 20)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(given.hex(), digest)


@dataclass(frozen=True)
class People:
    """One consistent read of the store: who is admin, each one's roles, and the API keys (id: user,
    hash, revocation time)."""

    admin: dict[str, bool] = field(default_factory=dict)
    roles: dict[str, dict[str, str]] = field(default_factory=dict)
    keys: dict[str, tuple[str, str, float]] = field(default_factory=dict)

    @classmethod
    def read(cls, db: sqlite3.Connection) -> People:
        """Everything, in one read transaction (empty while the file is made but holds no tables yet)."""
        try:
            db.execute("BEGIN")
            people = cls({n: bool(a) for n, a in db.execute("SELECT name, admin FROM users")}, {},
                         {i: (u, h, r) for i, u, h, r in db.execute("SELECT id, user, hash, revoked FROM keys")})
            for user, kb, role in db.execute("SELECT user, kb, role FROM grants"):
                people.roles.setdefault(user, {})[kb] = role
            return people
        except sqlite3.OperationalError:
            return cls()
        finally:
            if db.in_transaction:
                db.execute("COMMIT")

    def principal(self, name: str, via: str, key_id: str = "") -> Principal | None:
        if name not in self.admin:
            return None
        return Principal(name, self.admin[name], dict(self.roles.get(name, {})), via, key_id)

    def by_key(self, key: str) -> tuple[Principal | None, str]:
        kind, _, rest = key.partition("_")
        key_id, _, secret = rest.partition("_")
        row = self.keys.get(key_id) if kind == "rgk" and secret else None
        if row is None or not hmac.compare_digest(row[1], hashlib.sha256(secret.encode()).hexdigest()):
            return None, "unknown"
        if row[2]:
            return None, f"revoked key of {row[0]} (key {key_id})"
        return self.principal(row[0], "key", key_id), ""


class UserStore:
    """People and their roles under one knowledge root; safe from several threads and processes."""

    def __init__(self, root: str | Path) -> None:
        self.path = Path(root) / STORE

    def _db(self, write: bool = False):
        return opened(self.path, _SCHEMA, write, durable=True)

    def has_users(self) -> bool:
        """True once the store holds a user: from then on every request names one."""
        return bool(self._people().admin)

    def _people(self) -> People:
        """The store as it is now, read anew."""
        if not self.path.exists():
            return People()
        with self._db() as db:
            return People.read(db)

    def add(self, name: str, admin: bool = False) -> None:
        """A new user (UserError when the name is taken)."""
        with self._db(write=True) as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (check_name(name),)).fetchone():
                raise UserError(f"user {name!r} exists already")
            db.execute("INSERT INTO users (name, admin, created) VALUES (?, ?, ?)", (name, int(admin), time.time()))

    def remove(self, name: str) -> None:
        """The user, their roles and keys go (refused on their next request)."""
        with self._db(write=True) as db:
            self._known(db, name)
            db.execute("DELETE FROM users WHERE name = ?", (name,))

    def set_admin(self, name: str, admin: bool) -> None:
        with self._db(write=True) as db:
            self._known(db, name)
            db.execute("UPDATE users SET admin = ? WHERE name = ?", (int(admin), name))

    def grant(self, name: str, kb: str, role: str) -> None:
        """Give `name` role `role` on knowledge base `kb` (replacing the one they had)."""
        with self._db(write=True) as db:
            self._known(db, name)
            db.execute("INSERT OR REPLACE INTO grants (user, kb, role) VALUES (?, ?, ?)", (name, kb, check_role(role)))

    def revoke(self, name: str, kb: str) -> None:
        """Take away `name`'s role on `kb` (UserError when they had none)."""
        with self._db(write=True) as db:
            self._known(db, name)
            if db.execute("DELETE FROM grants WHERE user = ? AND kb = ?", (name, kb)).rowcount == 0:
                raise UserError(f"{name!r} holds no role on {kb!r}")

    def new_key(self, name: str) -> tuple[str, str]:
        """A new API key for `name`: (key id, the key). The key is shown once and kept only as a hash."""
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        with self._db(write=True) as db:
            self._known(db, name)
            db.execute("INSERT INTO keys (id, user, hash, created) VALUES (?, ?, ?, ?)",
                       (key_id, name, hashlib.sha256(secret.encode()).hexdigest(), time.time()))
        return key_id, f"rgk_{key_id}_{secret}"

    def revoke_key(self, name: str, key_id: str = "") -> int:
        """Revoke one key of `name` (all of them without `key_id`); how many were revoked."""
        with self._db(write=True) as db:
            self._known(db, name)
            where, args = ("AND id = ?", (name, key_id)) if key_id else ("", (name,))
            return db.execute("UPDATE keys SET revoked = ? WHERE user = ? AND revoked = 0 " + where, (time.time(), *args)).rowcount

    def set_password(self, name: str, password: str) -> None:
        if len(password) < 8:
            raise UserError("a password needs at least 8 characters")
        with self._db(write=True) as db:
            self._known(db, name)
            db.execute("UPDATE users SET password = ? WHERE name = ?", (hash_password(password), name))

    def list(self) -> list[dict]:
        """Every user: name, admin, roles, key ids (live ones) and whether a password is set."""
        if not self.path.exists():
            return []
        with self._db() as db:
            users = db.execute("SELECT name, admin, password != '' FROM users ORDER BY name").fetchall()
            grants = db.execute("SELECT user, kb, role FROM grants ORDER BY kb").fetchall()
            keys = db.execute("SELECT user, id FROM keys WHERE revoked = 0 ORDER BY created").fetchall()
        return [{"name": n, "admin": bool(a), "password": bool(p), "roles": {kb: r for u, kb, r in grants if u == n},
                 "keys": [k for u, k in keys if u == n]} for n, a, p in users]

    def principal(self, name: str, via: str, key_id: str = "") -> Principal | None:
        """Who `name` is now (None: no such user)."""
        return self._people().principal(name, via, key_id)

    def by_key(self, key: str) -> tuple[Principal | None, str]:
        """The user holding API key `key`; when None, why: "unknown", or "revoked" naming whose key it was."""
        return self._people().by_key(key)

    def by_password(self, name: str, password: str) -> Principal | None:
        """The user, when `password` is theirs (the hash is computed for unknown names too: equal time)."""
        with self._db() as db:
            row = db.execute("SELECT password FROM users WHERE name = ?", (name,)).fetchone() if self.path.exists() else None
        stored = row[0] if row and row[0] else _NO_PASSWORD
        if not password_matches(stored, password) or not (row and row[0]):
            return None
        return self.principal(name, "password")

    def new_session(self, name: str, hours: float) -> str:
        """A sign-in of the chat app that a reload keeps: a random token (kept only as its hash) valid for
        `hours`; the user's expired ones go."""
        token = secrets.token_urlsafe(32)
        with self._db(write=True) as db:
            self._known(db, name)
            db.execute("DELETE FROM sessions WHERE user = ? AND expires < ?", (name, time.time()))
            db.execute("INSERT INTO sessions (hash, user, expires) VALUES (?, ?, ?)",
                       (hashlib.sha256(token.encode()).hexdigest(), name, time.time() + hours * 3600))
        return token

    def by_session(self, token: str) -> Principal | None:
        """The user a live session token belongs to (None: unknown, expired, or its user removed)."""
        if not token or not self.path.exists():
            return None
        with self._db() as db:
            try:
                row = db.execute("SELECT user FROM sessions WHERE hash = ? AND expires > ?",
                                 (hashlib.sha256(token.encode()).hexdigest(), time.time())).fetchone()
            except sqlite3.OperationalError:  # a store made before sessions existed
                return None
        return self.principal(row[0], "password") if row else None

    def end_session(self, token: str) -> None:
        """Sign out: the token is refused from now on."""
        with self._db(write=True) as db:
            db.execute("DELETE FROM sessions WHERE hash = ?", (hashlib.sha256(token.encode()).hexdigest(),))

    @staticmethod
    def _known(db: sqlite3.Connection, name: str) -> None:
        if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
            raise UserError(f"no user {name!r} (ragapp users list shows them)")


class LiveUsers(UserStore):
    """The store as a server reads it on every request: one open connection, read again only when
    another connection (`ragapp users`) has committed since (SQLite's data_version says so), so a
    revoked key or removed user is refused on the very next request without opening the file each time."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self._lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._file: tuple[int, int] = (0, 0)
        self._seen: tuple[int, People] = (-1, People())

    def _people(self) -> People:
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return People()
            if self._reader is None or self._file != (st.st_dev, st.st_ino):  # made, or replaced, since
                if self._reader is not None:
                    self._reader.close()
                self._reader = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                self._file, self._seen = (st.st_dev, st.st_ino), (-1, People())
            version = self._reader.execute("PRAGMA data_version").fetchone()[0]
            if version != self._seen[0]:
                self._seen = (version, People.read(self._reader))
            return self._seen[1]

"""API keys: from an environment variable (its NAME is configured) and an optional key file; required
whenever the server listens beyond loopback."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from ragapp.config import ServeConfig
from ragapp.errors import ConfigError
from ragapp.net import is_loopback

# A key shorter than this is guessable by a page that tries keys from the user's browser.
MIN_KEY_CHARS = 16


def _key_file_lines(path: str) -> list[str]:
    """The keys of a key file: one per line; blank lines and lines starting with # are not keys."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc.strerror or exc}") from exc
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def api_keys(config: ServeConfig, host: str, users: bool = False) -> frozenset[str]:
    """The operators' keys; ConfigError when `host` is not loopback and there are none (and no `users`
    with keys of their own), or a key is too short."""
    keys = {k.strip() for k in os.environ.get(config.api_keys_env, "").split(",") if k.strip()}
    if config.key_file:
        keys |= set(_key_file_lines(config.key_file))
    short = [k for k in keys if len(k) < MIN_KEY_CHARS]
    if short:
        raise ConfigError(f"{len(short)} API key(s) in {config.api_keys_env}{' or ' + config.key_file if config.key_file else ''} "
                          f"shorter than {MIN_KEY_CHARS} characters; use long random keys (python -c 'import secrets; "
                          "print(secrets.token_urlsafe(32))')")
    if not keys and not users and not is_loopback(host):
        raise ConfigError(f"--host {host} makes the API reachable from other machines: add users (ragapp users add) or "
                          f"set API keys in {config.api_keys_env} (comma-separated) or a key file first (or keep 127.0.0.1)")
    return frozenset(keys)


def bearer(header: str | None) -> str:
    """The key of an `Authorization: Bearer KEY` header ("" when there is none; the scheme compared
    case-insensitively, as HTTP says)."""
    scheme, _, given = (header or "").strip().partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def authorised(header: str | None, keys: frozenset[str]) -> bool:
    """True when no keys are configured (loopback only) or the Bearer key is one of them."""
    if not keys:
        return True
    return one_of(bearer(header), keys)


def one_of(key: str, keys: frozenset[str]) -> bool:
    """True when `key` is one of `keys` (compared in constant time)."""
    return bool(key) and any(hmac.compare_digest(key.encode(), k.encode()) for k in keys)

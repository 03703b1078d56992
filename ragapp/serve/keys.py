"""API keys: from an environment variable (its NAME is configured) and an optional key file; required
whenever the server listens beyond loopback."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from ragapp.config import ServeConfig
from ragapp.errors import ConfigError
from ragapp.net import is_loopback


def api_keys(config: ServeConfig, host: str) -> frozenset[str]:
    """The accepted keys; ConfigError when `host` is not loopback and there are none."""
    keys = {k.strip() for k in os.environ.get(config.api_keys_env, "").split(",") if k.strip()}
    if config.key_file:
        try:
            keys |= {line.strip() for line in Path(config.key_file).read_text(encoding="utf-8").splitlines() if line.strip()}
        except OSError as exc:
            raise ConfigError(f"cannot read the key file {config.key_file}: {exc.strerror or exc}") from exc
    if not keys and not is_loopback(host):
        raise ConfigError(f"--host {host} makes the API reachable from other machines: set API keys in "
                          f"{config.api_keys_env} (comma-separated) or a key file first (or keep 127.0.0.1)")
    return frozenset(keys)


def authorised(header: str | None, keys: frozenset[str]) -> bool:
    """True when no keys are configured (loopback only) or the Bearer key is one of them."""
    if not keys:
        return True
    if not header or not header.startswith("Bearer "):
        return False
    given = header.removeprefix("Bearer ").strip().encode()
    return any(hmac.compare_digest(given, k.encode()) for k in keys)

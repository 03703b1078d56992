"""`[serve]`, the HTTP API's section of the one config (ragapp.config.Config holds it), and the check
every section uses on its values."""

from __future__ import annotations

from dataclasses import dataclass

from ragapp.errors import ConfigError


def check(ok: bool, message: str) -> None:
    """ConfigError(message) unless `ok`."""
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class ServeConfig:
    """`ragapp serve`: the HTTP API over the knowledge bases under `knowledge_root`."""

    host: str = "127.0.0.1"
    # Knowledge bases are the index folders directly under this one (by default [ui] knowledge_root's too).
    knowledge_root: str = "data"
    port: int = 8000
    # The NAME of the variable holding API keys (comma-separated; a key file adds more): needed beyond loopback.
    api_keys_env: str = "RAGAPP_API_KEYS"
    key_file: str = ""
    # Host names besides 127.0.0.1, localhost and [::1] that requests may be sent to (a rebound DNS
    # name is refused); with keys on all interfaces and none listed, any name is accepted.
    allowed_hosts: tuple[str, ...] = ()
    # Web pages (origins, "https://app.example.org") besides the server's own that may call the API.
    allowed_origins: tuple[str, ...] = ()
    max_request_kb: int = 1024  # JSON bodies
    max_question_chars: int = 4000  # far above any question; the prompt budget is 350 tokens of passages
    # Uploads: per file, per request (checked before the body is read), files per request, uploads at
    # once, per knowledge base (0: no quota), and the free disk an upload may not eat into.
    max_upload_mb: int = 200
    max_request_mb: int = 1000
    max_upload_files: int = 100
    max_concurrent_uploads: int = 2
    quota_mb: int = 0
    min_free_disk_mb: int = 1024
    # Pages drawn at once across all knowledge bases (each a sandboxed child of up to pdf_memory_mb);
    # a request past them is a 429.
    max_concurrent_renders: int = 2
    # Questions waiting for the model across everyone (beyond those being answered): one more is a 429
    # with Retry-After, rather than a wait with no end (16 waits of a 3 s answer: under a minute).
    max_waiting_answers: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        object.__setattr__(self, "allowed_origins", tuple(self.allowed_origins))
        check(0 < self.port < 65536, f"port must be between 1 and 65535. Currently, it is {self.port}")
        check(min(self.max_request_kb, self.max_question_chars, self.max_upload_mb, self.max_request_mb,
                   self.max_upload_files, self.max_concurrent_uploads, self.max_concurrent_renders, self.max_waiting_answers) > 0,
              "serve limits must be greater than 0")
        check(self.quota_mb >= 0 and self.min_free_disk_mb >= 0, "serve quota_mb and min_free_disk_mb must be 0 or more")
        check(all(isinstance(h, str) and h and "/" not in h for h in self.allowed_hosts),
               f"serve allowed_hosts are host names (no scheme or path). Currently, {list(self.allowed_hosts)}")
        check(all(isinstance(o, str) and o.startswith(("http://", "https://")) for o in self.allowed_origins),
               f"serve allowed_origins are origins like 'https://app.example.org'. Currently, {list(self.allowed_origins)}")

"""Model servers over HTTP (OpenAI-compatible chat, embeddings, rerank): one client setup and one line
for each way a server can fail, shared by every backend that talks to one. The API key is read from
the environment variable the settings name and never appears in a message."""

from __future__ import annotations

import os
from typing import Any

from ragapp.errors import ConfigError, ModelNotAvailableError


def client(url: str, key_env: str, timeout_s: float, max_retries: int, setting: str):
    """An `openai.OpenAI` client for the server at `url` (no request is made)."""
    try:
        import openai
    except ImportError as exc:
        raise ModelNotAvailableError("talking to a model server needs the openai package: pip install openai") from exc
    key = os.environ.get(key_env, "") if key_env else ""
    if key_env and not key:
        raise ConfigError(f"{setting}.api_key_env names {key_env}, which is not set in the environment")
    # Servers without keys (Ollama, llama.cpp, TEI) accept any; the library insists on a non-empty one.
    return openai.OpenAI(base_url=url, api_key=key or "none", timeout=timeout_s, max_retries=max_retries)


class ServerBacked:
    """For backends whose model runs in a server: nothing loads in this process, and the HTTP client
    is made on first use from the backend's `config` (base_url, api_key_env, timeout_s, max_retries)."""

    setting = ""  # the config section, named in messages
    url = ""
    config: Any = None
    _client: Any = None

    @property
    def loaded(self) -> bool:
        """Nothing to load in this process."""
        return True

    def warm_up(self) -> None:
        """Create the HTTP client (no request is made)."""
        if self._client is None:
            c = self.config
            self._client = client(self.url, c.api_key_env, c.timeout_s, c.max_retries, self.setting)


def explain(exc: Exception, url: str, *, model: str, key_env: str, timeout_s: float, retries: int, setting: str,
            started: bool = False) -> str:
    """One line naming the URL and what to do, for an error the openai client raised."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return f"{url} did not answer within {timeout_s:g} s ({setting}.timeout_s), after {retries} retries"
    if isinstance(exc, openai.APIConnectionError):
        if started:
            return f"{url} stopped in the middle of the answer (the partial answer was dropped); is the server still running?"
        return f"cannot reach {url} (nothing listening?): start the model server or fix {setting}.base_url"
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        where = f"the environment variable {key_env}" if key_env else f"{setting}.api_key_env"
        return f"{url} refused the API key ({status}): put the right key in {where}"
    if status == 404:
        return f"{url} has no model {model!r} (404): list its models at {url}/models and set {setting}.model"
    if status == 429:
        return f"{url} is busy (429 Too Many Requests) after {retries} retries: try again later or raise {setting}.max_retries"
    if status is not None and status >= 500:
        return f"{url} failed ({status}) after {retries} retries: see the model server's log"
    if status is not None:
        return f"{url} refused the request ({status}): {str(exc)[:200]}"
    if started:
        return f"{url} stopped in the middle of the answer (the partial answer was dropped): {str(exc)[:150]}"
    return f"{url} sent a reply that is not OpenAI-compatible: {str(exc)[:200]}"


def transport_error() -> type[Exception]:
    """The HTTP library's base error under openai (httpx2 in openai 3.x, httpx before)."""
    try:
        from httpx2 import HTTPError
    except ImportError:
        from httpx import HTTPError  # type: ignore[assignment]
    return HTTPError

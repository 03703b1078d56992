"""OpenAI-compatible server backend: the chat model runs in a server the user runs (Ollama, llama.cpp's
llama-server, vLLM, SGLang, Xinference, FastChat, LM Studio), reached over HTTP with streaming (SSE).

The `openai` client library does the protocol work (SSE parsing, timeouts, retries with backoff on
429 and 5xx); this module turns each way a server can fail into one line naming the URL and what to
do. The API key comes from the environment variable the settings name and never leaves this object.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ragapp.config import GenerateConfig
from ragapp.errors import ConfigError, ModelNotAvailableError, ModelServerError


class OpenAIGenerator:
    """A chat model behind an OpenAI-compatible `/v1/chat/completions` endpoint."""

    def __init__(self, config: GenerateConfig) -> None:
        if not config.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"generate backend 'openai' needs base_url = 'http://HOST:PORT/v1'. Currently, it is {config.base_url!r}")
        if not config.model:
            raise ConfigError("generate backend 'openai' needs the server's model name (generate.model / --llm-model)")
        self.config = config
        self.name = config.model
        self.backend = "openai"
        self.url = config.base_url.rstrip("/")
        self._client = None

    @property
    def loaded(self) -> bool:
        """Nothing to load in this process."""
        return True

    def warm_up(self) -> None:
        """Create the HTTP client (no request is made)."""
        if self._client is not None:
            return
        try:
            import openai
        except ImportError as exc:
            raise ModelNotAvailableError('the openai backend needs the openai package: pip install "ragapp[openai]"') from exc
        key = os.environ.get(self.config.api_key_env, "") if self.config.api_key_env else ""
        if self.config.api_key_env and not key:
            raise ConfigError(f"generate.api_key_env names {self.config.api_key_env}, which is not set in the environment")
        # Servers without keys (Ollama, llama.cpp) accept any; the library insists on a non-empty one.
        self._client = openai.OpenAI(base_url=self.url, api_key=key or "none", timeout=self.config.timeout_s,
                                     max_retries=self.config.max_retries)

    def generate(self, messages: list[dict[str, str]]) -> str:
        """The whole answer."""
        return "".join(self.stream(messages))

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """Answer text piece by piece as the server sends it. Raises ModelServerError (one line) on any
        failure, including a server that stops in the middle: the text so far is not an answer."""
        import openai

        try:  # the HTTP library under openai: httpx2 in openai 3.x, httpx before
            from httpx2 import HTTPError
        except ImportError:
            from httpx import HTTPError

        self.warm_up()
        args = dict(model=self.config.model, messages=messages, stream=True, max_tokens=self.config.max_new_tokens,
                    temperature=self.config.temperature)
        started = finished = False
        try:
            for event in self._client.chat.completions.create(**args):
                started = True
                for choice in event.choices or ():
                    if choice.delta is not None and choice.delta.content:
                        yield choice.delta.content
                    finished = finished or choice.finish_reason is not None
        except openai.APIError as exc:
            raise ModelServerError(self._explain(exc, started)) from exc
        except HTTPError as exc:  # the connection broke while the stream was being read
            raise ModelServerError(f"{self.url} stopped in the middle of the answer (the partial answer was dropped; "
                                   f"{type(exc).__name__}); is the server still running?") from exc
        except (ValueError, TypeError, KeyError) as exc:  # a reply the client could not read as JSON
            raise ModelServerError(f"{self.url} sent a reply that is not OpenAI-compatible JSON ({exc})"[:300]) from exc
        if not finished:  # every server ends a stream with a finish_reason: without one the stream was cut
            raise ModelServerError(f"{self.url} stopped in the middle of the answer (the partial answer was dropped): "
                                   "the stream ended without a finish reason; is the server still running?")

    def _explain(self, exc, started: bool) -> str:
        """One line for each way the server can fail."""
        import openai

        url, retries = self.url, self.config.max_retries
        if isinstance(exc, openai.APITimeoutError):
            return f"{url} did not answer within {self.config.timeout_s:g} s (generate.timeout_s), after {retries} retries"
        if isinstance(exc, openai.APIConnectionError):
            if started:
                return f"{url} stopped in the middle of the answer (the partial answer was dropped); is the server still running?"
            return f"cannot reach {url} (nothing listening?): start the model server or fix generate.base_url / --llm-url"
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            where = f"the environment variable {self.config.api_key_env}" if self.config.api_key_env else "generate.api_key_env"
            return f"{url} refused the API key ({status}): put the right key in {where}"
        if status == 404:
            return f"{url} has no model {self.config.model!r} (404): list its models at {url}/models and set generate.model / --llm-model"
        if status == 429:
            return f"{url} is busy (429 Too Many Requests) after {retries} retries: try again later or raise generate.max_retries"
        if status is not None and status >= 500:
            return f"{url} failed ({status}) after {retries} retries: see the model server's log"
        if status is not None:
            return f"{url} refused the request ({status}): {str(exc)[:200]}"
        if started:
            return f"{url} stopped in the middle of the answer (the partial answer was dropped): {str(exc)[:150]}"
        return f"{url} sent a reply that is not OpenAI-compatible: {str(exc)[:200]}"

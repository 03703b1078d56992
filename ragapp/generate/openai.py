"""OpenAI-compatible server backend: the chat model runs in a server the user runs (Ollama, llama.cpp's
llama-server, vLLM, SGLang, Xinference, FastChat, LM Studio), reached over HTTP with streaming (SSE).

The `openai` client library does the protocol work (SSE parsing, timeouts, retries with backoff on
429 and 5xx); this module turns each way a server can fail into one line naming the URL and what to
do. The API key comes from the environment variable the settings name and never leaves this object.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ragapp import remote
from ragapp.config import GenerateConfig
from ragapp.errors import ConfigError, ModelServerError
from ragapp.generate.base import Generator


class OpenAIGenerator(remote.ServerBacked, Generator):
    """A chat model behind an OpenAI-compatible `/v1/chat/completions` endpoint."""

    setting = "generate"

    def __init__(self, config: GenerateConfig) -> None:
        if not config.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"generate backend 'openai' needs base_url = 'http://HOST:PORT/v1'. Currently, it is {config.base_url!r}")
        if not config.model:
            raise ConfigError("generate backend 'openai' needs the server's model name (generate.model / --llm-model)")
        self.config = config
        self.name = config.model
        self.backend = "openai"
        self.url = config.base_url.rstrip("/")
        self._client: Any = None

    def generate(self, messages: list[dict[str, str]]) -> str:
        """The whole answer."""
        return "".join(self.stream(messages))

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """Answer text piece by piece as the server sends it. Raises ModelServerError (one line) on any
        failure, including a server that stops in the middle: the text so far is not an answer."""
        import openai

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
        except remote.transport_error() as exc:  # the connection broke while the stream was being read
            raise ModelServerError(f"{self.url} stopped in the middle of the answer (the partial answer was dropped; "
                                   f"{type(exc).__name__}); is the server still running?") from exc
        except (ValueError, TypeError, KeyError) as exc:  # a reply the client could not read as JSON
            raise ModelServerError(f"{self.url} sent a reply that is not OpenAI-compatible JSON ({exc})"[:300]) from exc
        if not finished:  # every server ends a stream with a finish_reason: without one the stream was cut
            raise ModelServerError(f"{self.url} stopped in the middle of the answer (the partial answer was dropped): "
                                   "the stream ended without a finish reason; is the server still running?")

    def _explain(self, exc: Exception, started: bool) -> str:
        c = self.config
        return remote.explain(exc, self.url, model=c.model, key_env=c.api_key_env, timeout_s=c.timeout_s,
                              retries=c.max_retries, setting="generate", started=started)

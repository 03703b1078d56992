"""The Generator protocol: every member the query path uses, the optional ones with their defaults.
Subclass it to inherit the defaults (`class MyModel(Generator): ...`); RAG checks a generator has them all."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# How many of the likeliest first tokens a backend reports (the answer confidence reads them).
FIRST_TOKENS = 10


@dataclass
class TokenScores:
    """A model's own probabilities for the answer it just wrote, filled by a backend that can read them."""

    logprobs: list[float] = field(default_factory=list)  # of each token written, in order
    first: list[tuple[str, float]] = field(default_factory=list)  # the likeliest first tokens: (text, log-probability)


@runtime_checkable
class Generator(Protocol):
    """A chat model: messages in, text out (whole or streamed)."""

    name: str
    backend: str = ""  # "transformers", "llama-cpp", "xllamacpp", "openai": shown beside each answer ("" shows the class name)
    url: str = ""  # the server that answers ("" in this process)

    def generate(self, messages: list[dict[str, str]]) -> str: ...

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]: ...

    def stream_scored(self, messages: list[dict[str, str]], scores: TokenScores) -> Iterator[str]:
        """Like `stream`, filling `scores` with the model's token probabilities where the backend has them."""
        return self.stream(messages)

    @property
    def loaded(self) -> bool:
        """True once the model is in memory (a server's model always is)."""
        return True

    def warm_up(self) -> None:
        """Load the model now instead of on the first question."""
        return None

    def special_tokens(self) -> Sequence[str]:
        """The tokenizer's control tokens, which text from documents must never spell."""
        return ()

    def count_tokens(self, text: str) -> int | None:
        """`text`'s length in this model's tokens (None when the model cannot say: a server's model)."""
        return None


class ScoredStreams:
    """`generate` and `stream` for a backend that implements `stream_scored` (its scores then unasked)."""

    def stream_scored(self, messages: list[dict[str, str]], scores: TokenScores | None) -> Iterator[str]:
        raise NotImplementedError

    def generate(self, messages: list[dict[str, str]]) -> str:
        """The whole answer."""
        return "".join(self.stream(messages))

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """Answer text piece by piece, as the model produces it."""
        return self.stream_scored(messages, None)


def token_usage(generator: Generator, messages: list[dict[str, str]], reply: str,
                estimate: Callable[[str], int]) -> dict[str, int]:
    """Tokens the model read (the messages' text) and wrote, by its own tokenizer, else by `estimate`."""
    def count(text: str) -> int:
        found = generator.count_tokens(text)
        return found if found is not None else estimate(text)

    return {"prompt_tokens": sum(count(m["content"]) for m in messages), "completion_tokens": count(reply)}


def timed_stream(generator: Generator, messages: list[dict[str, str]], scores: TokenScores, timings: dict[str, float],
                 started: float) -> Iterator[str]:
    """The generator's pieces, with first-token (since `started`, and the model's own) and generation times."""
    t0 = time.perf_counter()
    for piece in generator.stream_scored(messages, scores):
        if "first_token_ms" not in timings:
            now = time.perf_counter()
            timings["first_token_ms"] = (now - started) * 1000
            timings["model_first_token_ms"] = (now - t0) * 1000  # the model's own prefill time
        yield piece
    timings["generate_ms"] = (time.perf_counter() - t0) * 1000

"""The Generator protocol: every member the query path uses, the optional ones with their defaults.
Subclass it to inherit the defaults (`class MyModel(Generator): ...`); RAG checks a generator has them all."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Generator(Protocol):
    """A chat model: messages in, text out (whole or streamed)."""

    name: str
    backend: str = ""  # "transformers", "llama-cpp", "openai": shown beside each answer ("" shows the class name)
    url: str = ""  # the server that answers ("" in this process)

    def generate(self, messages: list[dict[str, str]]) -> str: ...

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]: ...

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


def token_usage(generator: Generator, messages: list[dict[str, str]], reply: str,
                estimate: Callable[[str], int]) -> dict[str, int]:
    """Tokens the model read (the messages' text) and wrote, by its own tokenizer, else by `estimate`."""
    def count(text: str) -> int:
        found = generator.count_tokens(text)
        return found if found is not None else estimate(text)

    return {"prompt_tokens": sum(count(m["content"]) for m in messages), "completion_tokens": count(reply)}

"""In-process llama.cpp backend (llama-cpp-python): any .gguf runs as it is, the packaged Qwen2.5 and
SmolLM2 GGUFs included, with no de-quantisation step. The chat template comes from the GGUF's own
metadata. An optional extra: pip install "ragapp[llama-cpp]" (compiles llama.cpp once).

llama-cpp-python keeps the KV cache of the previous prompt and evaluates only what differs, so the
fixed system prompt at the head of every question is prefilled once per process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from ragapp.config import GenerateConfig
from ragapp.errors import ModelNotAvailableError
from ragapp.generate.base import Generator
from ragapp.lazy import LoadsOnce
from ragapp.models import gguf_file

_PIP = 'pip install "ragapp[llama-cpp]" (it compiles llama.cpp once, about 15 minutes on 2 cores)'


class LlamaCppGenerator(LoadsOnce, Generator):
    """A GGUF chat model run by llama.cpp in this process. Greedy by default; loads on first use."""

    def __init__(self, config: GenerateConfig | None = None, cache_dir: str = "", threads: int = 1) -> None:
        super().__init__()
        self.config = config or GenerateConfig(backend="llama-cpp")
        self.name = self.config.model
        self.backend = "llama-cpp"
        self._cache_dir = cache_dir
        self._threads = threads
        self._path: Path | None = None
        self._special: list[str] | None = None
        self._lock = threading.Lock()  # one generation at a time

    def _load(self):
        """Load the GGUF."""
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelNotAvailableError(f"the llama-cpp backend needs llama-cpp-python: {_PIP}") from exc
        self._path = gguf_file(self.config.model, self._cache_dir)
        try:
            return Llama(model_path=str(self._path), n_ctx=self.config.n_ctx, n_threads=self._threads,
                         n_threads_batch=self._threads, seed=0, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelNotAvailableError(f"llama.cpp cannot load {self._path} ({exc})") from exc

    def special_tokens(self) -> list[str]:
        """The vocabulary's control and user-defined tokens (defused in untrusted prompt text)."""
        if self._special is None:
            import llama_cpp

            self.warm_up()
            model = self._model._model
            wanted = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
            self._special = [model.token_get_text(i) for i in range(self._model.n_vocab())
                             if model.token_get_attr(i) & wanted]
        return self._special

    def generate(self, messages: list[dict[str, str]]) -> str:
        """The whole answer."""
        return "".join(self.stream(messages))

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """Answer text piece by piece, as the model produces it (one generation at a time per model)."""
        self.warm_up()
        sampling = {"temperature": self.config.temperature} if self.config.temperature > 0 else {"temperature": 0.0, "top_k": 1}
        with self._lock:
            for event in self._model.create_chat_completion(messages=messages, stream=True,
                                                          max_tokens=self.config.max_new_tokens, **sampling):
                piece = event["choices"][0]["delta"].get("content")
                if piece:
                    yield piece

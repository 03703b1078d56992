"""In-process llama.cpp without a compiler (xllamacpp: llama.cpp's own server run inside this process, from a
prebuilt wheel; pip install "ragapp[prebuilt]"). Any .gguf runs as it is, the packaged ones included.

Its generic x86-64 build is slower than llama-cpp-python compiled on the machine (docs/benchmarks.md,
"Generation speed"), so `backend = "auto"` picks it only where llama-cpp-python is not installed. The server
keeps the previous prompt's KV cache (the fixed system prompt is prefilled once per process) and reports each
token's log-probability, which the answer confidence reads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from ragapp.config import GenerateConfig
from ragapp.errors import ModelNotAvailableError, ModelServerError
from ragapp.generate.base import FIRST_TOKENS, Generator, ScoredStreams, TokenScores
from ragapp.lazy import LoadsOnce
from ragapp.models import gguf_file

PIP = 'pip install "ragapp[prebuilt]" (xllamacpp: llama.cpp prebuilt, no compiler needed)'
_DONE = object()


class XLlamaCppGenerator(ScoredStreams, LoadsOnce, Generator):
    """A GGUF chat model run by xllamacpp in this process. Greedy by default; loads on first use."""

    def __init__(self, config: GenerateConfig | None = None, cache_dir: str = "", threads: int = 1) -> None:
        super().__init__()
        self.config = config or GenerateConfig(backend="xllamacpp")
        self.name = self.config.model
        self.backend = "xllamacpp"
        self._cache_dir = cache_dir
        self._threads = threads
        self._lock = threading.Lock()  # one generation at a time

    def _load(self):
        """Start llama.cpp's server in this process (it listens on no port: requests are calls)."""
        try:
            import xllamacpp
        except ImportError as exc:
            raise ModelNotAvailableError(f"the xllamacpp backend needs xllamacpp: {PIP}") from exc
        path = gguf_file(self.config.model, self._cache_dir)
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = self.config.n_ctx
        params.n_parallel = 1
        params.cpuparams.n_threads = self._threads
        params.cpuparams_batch.n_threads = self._threads
        params.verbosity = -1  # its log lines would fill the command line's stderr
        try:
            return xllamacpp.Server(params)
        except (ValueError, RuntimeError) as exc:
            raise ModelNotAvailableError(f"xllamacpp cannot load {path} ({exc})") from exc

    def stream_scored(self, messages: list[dict[str, str]], scores: TokenScores | None) -> Iterator[str]:
        """`stream`, with each written token's log-probability and the likeliest first tokens in `scores`."""
        self.warm_up()
        request: dict[str, Any] = {"messages": messages, "max_tokens": self.config.max_new_tokens, "stream": True,
                                   "temperature": self.config.temperature, "logprobs": True, "top_logprobs": FIRST_TOKENS}
        if self.config.temperature <= 0:
            request["top_k"] = 1
        chunks: queue.Queue = queue.Queue()

        def run() -> None:
            try:
                self._model.handle_chat_completions(request, chunks.put)
            except Exception as exc:  # noqa: BLE001 -- handed to the reading thread, which raises it
                chunks.put(exc)
            chunks.put(_DONE)

        with self._lock:
            threading.Thread(target=run, name="ragapp-xllamacpp", daemon=True).start()
            while (chunk := chunks.get()) is not _DONE:
                yield from _pieces(chunk, scores)


def _pieces(chunk: Any, scores: TokenScores | None) -> Iterator[str]:
    """The text of one streamed chunk, its tokens' log-probabilities recorded."""
    if isinstance(chunk, Exception) or (isinstance(chunk, dict) and "error" in chunk):
        raise ModelServerError(f"xllamacpp failed in the middle of the answer: {chunk}"[:300])
    for choice in chunk.get("choices") or ():
        if scores is not None:
            _record(choice, scores)
        piece = (choice.get("delta") or {}).get("content")
        if piece:
            yield piece


def _record(choice: dict, scores: TokenScores) -> None:
    for token in (choice.get("logprobs") or {}).get("content") or ():
        if not scores.logprobs and not scores.first:
            scores.first = [(t["token"], float(t["logprob"])) for t in token.get("top_logprobs") or ()]
        scores.logprobs.append(float(token["logprob"]))

"""In-process llama.cpp backend (llama-cpp-python): any .gguf runs as it is, the packaged Qwen2.5 and
SmolLM2 GGUFs included, with no de-quantisation step. The chat template comes from the GGUF's own
metadata. An optional extra: pip install "ragapp[llama-cpp]" (compiles llama.cpp once).

llama-cpp-python keeps the KV cache of the previous prompt and evaluates only what differs, so the
fixed system prompt at the head of every question is prefilled once per process; its state is also
saved in the model cache (`saved_head`), so a new process restores it instead.
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ragapp.config import GenerateConfig
from ragapp.errors import ModelNotAvailableError
from ragapp.generate.base import FIRST_TOKENS, Generator, ScoredStreams, TokenScores
from ragapp.generate.llama_output import keep_output
from ragapp.generate.saved_head import SavedHead, head_file, head_length, read_head, write_head
from ragapp.lazy import LoadsOnce
from ragapp.models import gguf_file

_PIP = ('pip install "ragapp[llama-cpp]" (it compiles llama.cpp once, about 10 minutes on 2 cores); without a compiler: '
        'pip install "ragapp[prebuilt]" and [generate] backend = "xllamacpp" (slower: docs/benchmarks.md)')


class LlamaCppGenerator(ScoredStreams, LoadsOnce, Generator):
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
        self._heads_saved: set[str] = set()  # system prompts whose head is on disk

    def _load(self):
        """Load the GGUF."""
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelNotAvailableError(f"the llama-cpp backend needs llama-cpp-python: {_PIP}") from exc
        self._path = gguf_file(self.config.model, self._cache_dir)
        keep_output()
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

    def count_tokens(self, text: str) -> int | None:
        """`text`'s length in this model's tokens."""
        self.warm_up()
        return len(self._model.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream_scored(self, messages: list[dict[str, str]], scores: TokenScores | None) -> Iterator[str]:
        """`stream`, recording each written token's log-probability and the likeliest first tokens in `scores`."""
        self.warm_up()
        sampling = {"temperature": self.config.temperature} if self.config.temperature > 0 else {"temperature": 0.0, "top_k": 1}
        system = messages[0]["content"] if messages and messages[0].get("role") == "system" else ""
        with self._lock:
            self._restore_head(system)
            recorder = Recorder(scores, self._model.detokenize) if scores is not None else None
            extra = {"logits_processor": [recorder]} if recorder is not None else {}
            for event in self._model.create_chat_completion(messages=messages, stream=True,
                                                          max_tokens=self.config.max_new_tokens, **sampling, **extra):
                piece = event["choices"][0]["delta"].get("content")
                if piece:
                    yield piece
            if recorder is not None:
                recorder.finish()
            self._save_head(system)

    def _head_path(self, system: str) -> Path | None:
        import llama_cpp

        if not system or not self._cache_dir or self._path is None:
            return None
        return head_file(self._cache_dir, self._path, self.config.n_ctx, system, llama_cpp.__version__)

    def _restore_head(self, system: str) -> bool:
        """Into a fresh context, the saved state of the prompt head; llama-cpp-python then prefills only
        what follows it (or, if the prompt starts otherwise, drops it). True when restored."""
        import llama_cpp

        path = self._head_path(system)
        if path is None or self._model.n_tokens:
            return False
        head = read_head(path)
        if head is None or len(head.tokens) >= self.config.n_ctx:
            return False
        model = self._model
        buffer = (ctypes.c_uint8 * len(head.state)).from_buffer_copy(head.state)
        restored = llama_cpp.llama_state_seq_set_data(model._ctx.ctx, buffer, len(head.state), 0) != 0
        last = llama_cpp.llama_memory_seq_pos_max(llama_cpp.llama_get_memory(model._ctx.ctx), 0)
        if not restored or last + 1 != len(head.tokens):  # not the state of these tokens: start empty, save anew
            model._ctx.kv_cache_seq_rm(-1, 0, -1)
            path.unlink(missing_ok=True)
            return False
        self._heads_saved.add(system)
        model.input_ids[: len(head.tokens)] = head.tokens
        model.n_tokens = len(head.tokens)
        model._requires_eval = True  # the logits are not the restored state's
        return True

    def _save_head(self, system: str) -> None:
        """Once per system prompt: keep the context's state up to the end of the system prompt on disk
        (the context is cut back to it, which later prompts share anyway)."""
        import llama_cpp

        path = self._head_path(system)
        if path is None or system in self._heads_saved:
            return
        self._heads_saved.add(system)
        if read_head(path) is not None:
            return
        model = self._model
        tokens = [int(t) for t in model.input_ids[: model.n_tokens]]
        length = head_length([model.detokenize([t], special=True) for t in tokens], system)
        if length < 1 or not model._ctx.kv_cache_seq_rm(-1, length, -1):
            return
        model.n_tokens = length
        size = llama_cpp.llama_state_seq_get_size(model._ctx.ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(model._ctx.ctx, buffer, size, 0)
        write_head(path, SavedHead(tokens[:length], bytes(buffer)[:written]))


class Recorder:
    """A llama.cpp logits processor that reads the model's distribution at each step and leaves it as it is:
    when step k+1 is sampled, the token chosen at step k is the last input, so its log-probability is known."""

    def __init__(self, scores: TokenScores, detokenize: Callable[[list[int]], bytes]) -> None:
        self.scores = scores
        self._detokenize = detokenize
        self._previous: np.ndarray | None = None

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        row = logits.astype(np.float64)
        peak = float(row.max())
        logprobs = row - (peak + math.log(float(np.exp(row - peak).sum())))
        if self._previous is None:
            top = np.argpartition(-logprobs, FIRST_TOKENS)[:FIRST_TOKENS]
            self.scores.first = [(self._detokenize([int(i)]).decode("utf-8", "replace"), float(logprobs[i]))
                                 for i in top[np.argsort(-logprobs[top])]]
        else:
            self.scores.logprobs.append(float(self._previous[int(input_ids[-1])]))
        self._previous = logprobs
        return logits

    def finish(self) -> None:
        """The last step's token is never an input: count it as the likeliest (greedy decoding's choice)."""
        if self._previous is not None:
            self.scores.logprobs.append(float(self._previous.max()))
            self._previous = None

"""In-process transformers backend: any causal LM transformers loads (GLM, LLaMA, Qwen families)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from ragapp.config import GenerateConfig, ModelsConfig
from ragapp.errors import ModelNotAvailableError
from ragapp.generate.base import Generator
from ragapp.lazy import LoadsOnce
from ragapp.models import resolve_generator
from ragapp.runtime import torch_threads


class TransformersGenerator(LoadsOnce, Generator):
    """Any causal LM transformers can load: packaged names, model folders, .gguf files, hub ids.

    The chat template comes from the model's tokenizer. Decoding is greedy by default, so the
    same question over the same documents gives the same answer. Loads on first use.
    """

    def __init__(self, config: GenerateConfig | None = None, cache_dir: str = "", threads: int = 1,
                 policy: ModelsConfig | None = None) -> None:
        super().__init__()
        self.config = config or GenerateConfig()
        self._policy = policy or ModelsConfig()
        self.name = self.config.model
        self.backend = "transformers"
        self._cache_dir = cache_dir
        self._threads = threads
        self._tokenizer: Any = None
        self._lock = threading.Lock()  # one generation at a time

    def _load(self):
        """Load (and on first use convert) the model."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_generator(self.config.model, self._cache_dir, self._policy)
        dtype = torch.bfloat16 if self.config.dtype == "bfloat16" else torch.float32
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ModelNotAvailableError(
                f"cannot load chat model {self.config.model!r} offline ({exc}); use a packaged name "
                "(qwen2.5-coder-0.5b-instruct, qwen2.5-coder-1.5b-instruct, smollm2-135m-instruct), a local folder or a .gguf file") from exc
        model.eval()
        self._tokenizer = tokenizer
        return model

    def _inputs(self, messages: list[dict[str, str]]):
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:  # a base model without a chat template: a plain transcript
            text = "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in messages) + "\n\nASSISTANT:"
        return tok(text, return_tensors="pt", add_special_tokens=False)

    def _kwargs(self, inputs) -> dict:
        tok = self._tokenizer
        kwargs = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                      max_new_tokens=self.config.max_new_tokens, pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        if self.config.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.config.temperature)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def special_tokens(self) -> list[str]:
        """Every added and special token of the loaded tokenizer (defused in untrusted prompt text)."""
        self.warm_up()
        tok = self._tokenizer
        added = [t.content for t in getattr(tok, "added_tokens_decoder", {}).values()]
        return sorted(set(added) | set(tok.all_special_tokens))

    def count_tokens(self, text: str) -> int | None:
        """`text`'s length in this model's tokens."""
        self.warm_up()
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        """Prompt length in this model's tokens."""
        self.warm_up()
        return int(self._inputs(messages)["input_ids"].shape[1])

    def generate(self, messages: list[dict[str, str]]) -> str:
        """The whole answer."""
        return "".join(self.stream(messages))

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """Answer text piece by piece, as the model produces it."""
        import torch
        from transformers import TextIteratorStreamer

        self.warm_up()
        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with torch_threads(self._threads), torch.inference_mode():
                    self._model.generate(**self._kwargs(inputs), streamer=streamer)
            except BaseException as exc:  # surfaced in the caller's thread below
                errors.append(exc)
                streamer.end()

        # One generation at a time per model: torch modules are not safe to run concurrently here.
        with self._lock:
            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            yield from streamer
            thread.join()
        if errors:
            raise errors[0]

"""Generate stage: the Generator protocol and its backends, one module each.

- `transformers`: in-process transformers (any causal LM folder, the packaged GGUFs de-quantised once)
- `llama_cpp`: in-process llama.cpp through llama-cpp-python (any .gguf as it is; optional extra)
- `openai`: any OpenAI-compatible server the user runs (Ollama, llama.cpp server, vLLM, SGLang,
  Xinference, FastChat, LM Studio)
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace

from ragapp.config import GenerateConfig, ModelsConfig
from ragapp.generate.base import Generator
from ragapp.generate.transformers import TransformersGenerator
from ragapp.models import PARTED_MODELS, SMOLLM_NAME


def auto_backend(model: str) -> str:
    """llama-cpp for a GGUF model (packaged or a .gguf file) when llama-cpp-python is installed, else transformers."""
    gguf = model in PARTED_MODELS or model == SMOLLM_NAME or model.lower().endswith(".gguf")
    return "llama-cpp" if gguf and importlib.util.find_spec("llama_cpp") is not None else "transformers"


def build_generator(config: GenerateConfig, cache_dir: str = "", policy: ModelsConfig | None = None) -> Generator:
    """The generator the settings name (`[generate] backend`); light: models load on first use."""
    threads = config.threads
    if config.backend == "auto":
        config = replace(config, backend=auto_backend(config.model))
    if config.backend == "openai":
        from ragapp.generate.openai import OpenAIGenerator

        return OpenAIGenerator(config)
    if config.backend == "llama-cpp":
        from ragapp.generate.llama_cpp import LlamaCppGenerator

        return LlamaCppGenerator(config, cache_dir, threads)
    return TransformersGenerator(config, cache_dir, threads, policy)


__all__ = ["Generator", "TransformersGenerator", "auto_backend", "build_generator"]

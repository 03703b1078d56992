"""The int8 embedder's arithmetic: per-row activation quantisation, int8 linear layers, the fused GELU."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from ragapp.embed.int8 import GeluInt8, Int8Linear, _erf, quantize_encoder, quantize_rows

pytestmark = pytest.mark.unit


def test_each_row_keeps_its_own_scale_and_rounds_to_nearest():
    x = torch.randn(2, 37, 100)
    x[0, 3, 5] = 80.0  # one outlier token: only its own row gets a coarse scale
    rows = quantize_rows(x)
    assert rows.q.dtype == torch.int8 and rows.lead == (2, 37) and rows.q.shape == (74, 100)
    flat = x.reshape(74, 100)
    assert torch.allclose(rows.scales, flat.abs().amax(dim=1) / 127)
    assert (rows.q.abs().amax(dim=1) == 127).all()
    error = (rows.q.float() * rows.scales[:, None] - flat).abs()
    assert (error <= rows.scales[:, None] / 2 + 1e-6).all()  # nearest step, never further
    assert rows.scales[3] > 20 * rows.scales[4]
    zeros = quantize_rows(torch.zeros(3, 8))
    assert not zeros.q.any() and (zeros.scales == 1).all()


def test_erf_matches_the_library_to_float32_precision():
    xs = np.linspace(-7, 7, 20001, dtype=np.float32)
    worst = max(abs(float(_erf(x)) - math.erf(float(x))) for x in xs)
    assert worst < 5e-7


@pytest.mark.parametrize("rows", [1, 5, 300])
def test_an_int8_linear_layer_stays_within_its_quantisation_error(rows):
    torch.manual_seed(rows)
    dense = torch.nn.Linear(384, 96)
    x = torch.randn(rows, 384)
    ours, exact = Int8Linear(dense.weight, dense.bias)(x), dense(x).detach()
    assert ours.shape == exact.shape and ours.dtype == torch.float32
    assert (ours - exact).abs().max() < 0.02 * exact.abs().max()
    assert torch.nn.functional.cosine_similarity(ours, exact).min() > 0.999


def test_the_fused_gelu_hands_the_next_layer_rows_of_gelu_outputs():
    torch.manual_seed(0)
    dense = torch.nn.Linear(64, 256)
    x = torch.randn(3, 7, 64)
    rows = GeluInt8(dense)(x)
    expected = torch.nn.functional.gelu(Int8Linear(dense.weight, dense.bias)(x)).reshape(21, 256)
    assert rows.lead == (3, 7) and rows.q.dtype == torch.int8
    assert torch.allclose(rows.scales, expected.abs().amax(dim=1) / 127, rtol=1e-5)
    assert ((rows.q.float() * rows.scales[:, None] - expected).abs() <= rows.scales[:, None] * 0.51).all()


def test_a_bert_layer_is_fused_and_answers_like_float32():
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    model = BertModel(BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                                 vocab_size=100)).eval()
    ids = torch.randint(0, 100, (3, 12))
    with torch.inference_mode():
        exact = model(input_ids=ids).last_hidden_state
        quantize_encoder(model.encoder)
        ours = model(input_ids=ids).last_hidden_state
    layer = model.encoder.layer[0]
    assert type(layer.intermediate).__name__ == "GeluInt8" and type(layer.attention.self.key).__name__ == "ProjectionPart"
    assert isinstance(layer.output.dense, Int8Linear) and isinstance(layer.attention.output.dense, Int8Linear)
    assert type(model.pooler.dense) is torch.nn.Linear  # outside the encoder: left as it was
    cosines = torch.nn.functional.cosine_similarity(ours.reshape(-1, 64), exact.reshape(-1, 64))
    assert cosines.min() > 0.995


def test_query_key_value_stay_each_threads_own_when_two_threads_share_the_model():
    """The joint product is kept between the three projections' calls; two threads running the same
    layer at once must each get their own input's projections."""
    import threading

    from ragapp.embed.int8 import ProjectionPart, SharedProjection

    torch.manual_seed(2)
    parts = [torch.nn.Linear(64, 64) for _ in range(3)]
    shared = SharedProjection(parts)
    modules = [ProjectionPart(shared, i) for i in range(3)]
    inputs = [torch.randn(4, 9, 64), torch.randn(4, 9, 64) * 3]
    wanted = [[shared.joint(x).split([64] * 3, dim=-1)[i] for i in range(3)] for x in inputs]
    wrong = []

    def run(k: int) -> None:
        for _ in range(200):
            for i, module in enumerate(modules):
                if not torch.equal(module(inputs[k]), wanted[k][i]):
                    wrong.append((k, i))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as Python allows: any unguarded window shows
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not wrong

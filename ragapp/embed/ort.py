"""The question encoder's transformer layers as an ONNX graph run by onnxruntime, once a process asks
more than one question: about a third of numpy's time, within 0.0002 of its vectors.

numpy runs a question's layers as separate BLAS calls and elementwise passes (40 ms per SciFact question
here); onnxruntime fuses them (its layer-norm and GELU kernels). The weights of the linear layers are
stored as int8 in blocks of 32 along each output row, one float scale per block (`MatMulNBits`, 8 bits,
accuracy level 4: int8 products with the activations quantised per block), because float32 weights are
85 MB for e5-small, more than a 32 MB L3 cache: each question streamed them from memory (12.1 ms a
question on the AMD machine against torch int8's 9.5; 7.5 ms with int8 blocks, cosine to float32 at
least 0.9998 on every SciFact query, nDCG@10 unchanged). Opening a session costs about 0.35 s (import
and graph load), which a one-question command should not pay, so `light.py` starts in numpy and the
embedder switches a process to this graph from its second question on (or at `warm_up`). The graph is
written once from the same safetensors into the model cache (onnx's own helpers; ~1 s, 24 MB for
e5-small) and verified there like every converted model. Figures: docs/benchmarks.md, "Cold start".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

GRAPH = "question-layers.onnx"
_OPSET = 18  # LayerNormalization (17) and the reductions' axes as an input (18)
_BLOCK = 32  # weights per int8 block and scale


class _Graph:
    """Nodes and initialisers of the graph being written, with fresh names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}{self._n}"

    def const(self, array: np.ndarray, stem: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, kind: str, inputs: list[str], **attrs: Any) -> str:
        from onnx import helper

        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray) -> str:
        """x · weightᵀ + bias, the weight (out, in) as int8 blocks (see the module's docstring)."""
        from onnx import helper

        n, k = weight.shape
        blocks, scales = _int8_blocks(weight)
        out = self.name("matmul")
        self.nodes.append(helper.make_node("MatMulNBits", [x, self.const(blocks, "w"), self.const(scales, "s")], [out],
                                           domain="com.microsoft", K=k, N=n, bits=8, block_size=_BLOCK, accuracy_level=4))
        return self.op("Add", [out, self.const(bias, "b")])

    def layer_norm(self, x: str, weight: np.ndarray, bias: np.ndarray, eps: float) -> str:
        return self.op("LayerNormalization", [x, self.const(weight), self.const(bias)], axis=-1, epsilon=eps)


def _int8_blocks(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A weight (out, in) as MatMulNBits stores it with 8 bits: per output row, blocks of 32 inputs
    (zero-padded), each value + 128 as uint8 (the default zero point) and one float32 scale per block."""
    n, k = weight.shape
    padded = np.zeros((n, -(-k // _BLOCK) * _BLOCK), np.float32)
    padded[:, :k] = weight
    blocks = padded.reshape(n, -1, _BLOCK)
    scales = np.abs(blocks).max(axis=2) / 127.0
    scales[scales == 0] = 1.0
    values = np.clip(np.rint(blocks / scales[..., None]), -127, 127) + 128
    return values.astype(np.uint8), scales.astype(np.float32).reshape(-1)


def _attention(g: _Graph, x: str, get, prefix: str, heads: int, width: int) -> str:
    """Multi-head self-attention of one BERT layer over a batch of one unpadded question."""
    d = width // heads
    split = g.const(np.array([0, -1, heads, d], np.int64))
    q, k, v = (g.linear(x, get(f"{prefix}attention.self.{n}.weight"), get(f"{prefix}attention.self.{n}.bias"))
               for n in ("query", "key", "value"))
    q, v = (g.op("Transpose", [g.op("Reshape", [t, split])], perm=[0, 2, 1, 3]) for t in (q, v))
    k = g.op("Transpose", [g.op("Reshape", [k, split])], perm=[0, 2, 3, 1])
    scores = g.op("Mul", [g.op("MatMul", [q, k]), g.const(np.array(1 / np.sqrt(d), np.float32))])
    context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
    merged = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), g.const(np.array([0, -1, width], np.int64))])
    return g.linear(merged, get(f"{prefix}attention.output.dense.weight"), get(f"{prefix}attention.output.dense.bias"))


def _gelu(g: _Graph, x: str) -> str:
    half, one = g.const(np.array(0.5, np.float32)), g.const(np.array(1.0, np.float32))
    inner = g.op("Erf", [g.op("Mul", [x, g.const(np.array(0.7071067811865476, np.float32))])])
    return g.op("Mul", [g.op("Mul", [x, half]), g.op("Add", [inner, one])])


def write_graph(folder: str | Path, out: Path) -> None:
    """The encoder layers and the mean pooling of a supported folder (see `light.unsupported`) as ONNX:
    input `embedded` (1, tokens, hidden), the embedding layer's output; output `pooled` (1, hidden)."""
    import onnx
    from onnx import TensorProto, helper
    from safetensors import safe_open

    root = Path(folder)
    config = json.loads((root / "config.json").read_text(encoding="utf-8"))
    width, heads, eps = int(config["hidden_size"]), int(config["num_attention_heads"]), float(config.get("layer_norm_eps", 1e-12))
    with safe_open(str(root / "model.safetensors"), framework="numpy") as weights:
        lead = "bert." if "bert.embeddings.word_embeddings.weight" in weights.keys() else ""
        get = lambda name: weights.get_tensor(lead + name).astype(np.float32)  # noqa: E731
        g, x = _Graph(), "embedded"
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            x = g.layer_norm(g.op("Add", [_attention(g, x, get, p, heads, width), x]),
                             get(p + "attention.output.LayerNorm.weight"), get(p + "attention.output.LayerNorm.bias"), eps)
            hidden = _gelu(g, g.linear(x, get(p + "intermediate.dense.weight"), get(p + "intermediate.dense.bias")))
            x = g.layer_norm(g.op("Add", [g.linear(hidden, get(p + "output.dense.weight"), get(p + "output.dense.bias")), x]),
                             get(p + "output.LayerNorm.weight"), get(p + "output.LayerNorm.bias"), eps)
    g.nodes.append(helper.make_node("ReduceMean", [x, g.const(np.array([1], np.int64))], ["pooled"], keepdims=0))
    graph = helper.make_graph(g.nodes, "question-layers", [helper.make_tensor_value_info("embedded", TensorProto.FLOAT, [1, None, width])],
                              [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, width])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8  # read by every onnxruntime ragapp allows (>= 1.22)
    onnx.checker.check_model(model)
    onnx.save(model, str(out / GRAPH))


class OnnxLayers:
    """The written graph in an onnxruntime session: embedded tokens → the mean of the last layer."""

    def __init__(self, graph: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting between questions
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    def __call__(self, embedded: np.ndarray) -> np.ndarray:
        """Mean over the tokens of the last layer, for one question's embedded tokens (tokens, hidden)."""
        return self._session.run(["pooled"], {"embedded": embedded[None].astype(np.float32, copy=False)})[0][0]

"""The embedder on this CPU, side by side in one run: torch float32 and bfloat16, ONNX Runtime float32
and dynamically quantised int8, at 1 and 2 threads (the measurement issue 15 starts from).

    python bench/embedders.py            # 128 SciFact abstracts, length-sorted batches of 16
    python bench/embedders.py --docs 64

Prints passages/s and the lowest cosine of each runtime's vectors to torch float32's. The ONNX
files are exported once into bench/out/onnx (torch.onnx's TorchScript exporter; quantisation by
onnxruntime.quantization, which needs the `onnx` package). Needs ../shared/eval/scifact.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EVAL, OUT, jsonl, machine  # noqa: E402

BATCH = 16


def _pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean pooling over real tokens, then unit length (what the e5 sentence-transformers folder does)."""
    m = mask[..., None].astype(np.float32)
    v = (hidden * m).sum(1) / m.sum(1)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _batches(tok, texts: list[str], tensors: str):
    order = np.argsort([len(t) for t in texts])
    for i in range(0, len(texts), BATCH):
        idx = order[i : i + BATCH]
        yield idx, tok([texts[j] for j in idx], padding=True, truncation=True, max_length=512, return_tensors=tensors)


def _torch_runner(model, tok, dtype):
    import torch

    def run(texts: list[str], threads: int) -> np.ndarray:
        torch.set_num_threads(threads)
        m = model.to(dtype)
        out = np.zeros((len(texts), m.config.hidden_size), np.float32)
        with torch.inference_mode():
            for idx, enc in _batches(tok, texts, "pt"):
                out[idx] = _pool(m(**enc).last_hidden_state.float().numpy(), enc["attention_mask"].numpy())
        return out

    return run


def _export(model, tok, folder: Path) -> tuple[Path, Path]:
    """float32 and int8 ONNX files of the encoder, exported once into `folder`."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    fp32, int8 = folder / "e5.onnx", folder / "e5.int8.onnx"
    if not fp32.exists():
        class Encoder(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask):
                return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        enc = tok(["passage: a", "passage: two words"], padding=True, return_tensors="pt")
        torch.onnx.export(Encoder(model.float()).eval(), (enc["input_ids"], enc["attention_mask"]), str(fp32),
                          input_names=["input_ids", "attention_mask"], output_names=["hidden"], opset_version=17,
                          dynamic_axes={n: {0: "batch", 1: "tokens"} for n in ("input_ids", "attention_mask", "hidden")},
                          dynamo=False)
    if not int8.exists():
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return fp32, int8


def _ort_runner(file: Path, tok, dim: int):
    import onnxruntime as ort

    def run(texts: list[str], threads: int) -> np.ndarray:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        out = np.zeros((len(texts), dim), np.float32)
        for idx, enc in _batches(tok, texts, "np"):
            feed = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
            out[idx] = _pool(session.run(None, feed)[0], enc["attention_mask"])
        return out

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=128)
    args = parser.parse_args()
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ragapp.config import Config
    from ragapp.embed import SentenceTransformerEmbedder

    spec = SentenceTransformerEmbedder(Config().embed, Config().cache_dir).spec
    tok = AutoTokenizer.from_pretrained(spec.path, local_files_only=True)
    model = AutoModel.from_pretrained(spec.path, local_files_only=True).eval()
    texts = [spec.passage_prefix + r["title"] + ". " + r["text"] for r in jsonl(EVAL / "scifact" / "corpus.jsonl")[: args.docs]]
    fp32, int8 = _export(model, tok, OUT / "onnx")  # before any timing: the exporter changes the model's state
    model = AutoModel.from_pretrained(spec.path, local_files_only=True).eval()
    dim = model.config.hidden_size
    runners = [("torch float32", _torch_runner(model, tok, torch.float32)),
               ("torch bfloat16", _torch_runner(model, tok, torch.bfloat16)),
               ("onnxruntime float32", _ort_runner(fp32, tok, dim)), ("onnxruntime int8", _ort_runner(int8, tok, dim))]
    print(f"\n{spec.name}: {len(texts)} SciFact abstracts, batches of {BATCH} sorted by length; {machine()}")
    print("| runtime | threads | passages/s | lowest cosine to torch float32 |\n|---|---|---|---|")
    reference = None
    for name, run in runners:
        for threads in (1, 2):
            t0 = time.perf_counter()
            vectors = run(texts, threads)
            secs = time.perf_counter() - t0
            reference = vectors if reference is None else reference
            print(f"| {name} | {threads} | {len(texts) / secs:.1f} | {float((vectors * reference).sum(1).min()):.4f} |",
                  flush=True)


if __name__ == "__main__":
    main()

"""In-process sentence-transformers backend of the embed stage."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragapp.config import EmbedConfig, ModelsConfig
from ragapp.embed.base import Embedder, PrefixesFromSpec
from ragapp.embed.light import QueryEncoder, hidden_size, load_tokenizer, unsupported
from ragapp.embed.ort import GRAPH, OnnxLayers, write_graph
from ragapp.embed.pieces import UnigramPieces, cached_pieces
from ragapp.errors import ModelNotAvailableError
from ragapp.lazy import LoadsOnce
from ragapp.models import EmbedderSpec, cached, resolve_embedder
from ragapp.models.cache import remembered_sha256
from ragapp.runtime import torch_threads

if TYPE_CHECKING:  # torch: imported when passages are encoded, never for a question
    from ragapp.embed.packed import PassageEncoder

Spans = Sequence[Sequence[tuple[int, int]]]
_COUNT_CACHE = 1 << 16  # token counts kept (emptied when full) ...
_COUNT_CACHE_CHARS = 2000  # ... of texts up to this long
_PIECES_CHARS = 50_000  # counted in Python up to this much text (a prompt's passages), by the Rust tokenizer beyond


def sentence_vectors(encode, texts: Sequence[str], sentences: Spans) -> np.ndarray:
    """One vector per sentence span, each distinct sentence encoded once (chunk overlap repeats them)."""
    unique: dict[str, int] = {}
    refs = [unique.setdefault(text[a:b], len(unique)) for text, spans in zip(texts, sentences) for a, b in spans]
    return encode(list(unique))[np.asarray(refs, dtype=np.int64)]


def span_vectors(tokens: np.ndarray, starts: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Mean of the token embeddings whose first character falls inside each span, unit length; a row of
    zeros for a span no token starts in (cut off by the model's length limit)."""
    sums = np.concatenate([np.zeros((1, tokens.shape[1]), np.float32), np.cumsum(tokens, axis=0, dtype=np.float32)])
    bounds = np.searchsorted(starts, np.asarray(spans, dtype=np.int64).reshape(-1, 2), side="left")
    counts = (bounds[:, 1] - bounds[:, 0])[:, None]
    means = (sums[bounds[:, 1]] - sums[bounds[:, 0]]) / np.maximum(counts, 1)
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return np.where(counts > 0, means / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


class SentenceTransformerEmbedder(LoadsOnce, PrefixesFromSpec, Embedder):
    """Any sentence-transformers model: a packaged name, a local folder or a hub id.

    Light to construct; the model loads on first use. Questions are encoded without torch
    (`ragapp.embed.light`, then `ragapp.embed.ort`) unless `[embed] query_runtime = "torch"`, when the model
    is BERT-shaped with mean pooling (the packaged ones are); passages always through sentence-transformers.
    """

    def __init__(self, config: EmbedConfig | None = None, cache_dir: str = "", threads: int = 1,
                 spec: EmbedderSpec | None = None, ingest_threads: int | None = None,
                 policy: ModelsConfig | None = None) -> None:
        super().__init__()
        self.config = config or EmbedConfig()
        self._policy = policy or ModelsConfig()
        self._cache_dir = cache_dir
        self._threads = threads
        self._ingest_threads = ingest_threads or threads
        self._spec = spec
        self._tokenizer: Any = None
        self._light: QueryEncoder | None = None
        self._packed: PassageEncoder | None = None
        self._packed_decided = False  # and None: passages go through sentence-transformers
        self._light_why: str | None = None  # why questions go through torch (None: not decided yet)
        self._questions = 0  # questions encoded without torch: from the second on, through onnxruntime
        self._fast_failed = False
        self._light_lock = threading.RLock()  # the question encoder and the tokenizer it shares
        self._counted: dict[str, int] = {}  # token counts of short texts seen recently
        self.name = spec.name if spec else self.config.model
        self.backend = "sentence-transformers"
        self.sentence_mode = self.config.sentence_vectors

    @property
    def spec(self) -> EmbedderSpec:
        """The resolved model location and prefixes (converting a packaged model on first call)."""
        if self._spec is None:
            self._spec = resolve_embedder(self.config.model, self._cache_dir, self._policy)
            self.name = self._spec.name
        return self._spec

    def _load(self):
        import torch
        from sentence_transformers import SentenceTransformer

        dtype = torch.bfloat16 if self.config.dtype == "bfloat16" else torch.float32
        try:
            model = SentenceTransformer(self.spec.path, device="cpu", model_kwargs={"dtype": dtype},
                                        local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ModelNotAvailableError(
                f"cannot load embedding model {self.config.model!r} offline ({exc}); use a packaged name "
                "(multilingual-e5-small, all-MiniLM-L6-v2) or a local sentence-transformers folder") from exc
        model.max_seq_length = min(self.config.max_seq_length, model.max_seq_length or self.config.max_seq_length)
        if self.config.dtype == "int8":
            from ragapp.embed.int8 import int8_supported, quantize_encoder

            if int8_supported():
                inner = model[0].auto_model
                quantize_encoder(getattr(inner, "encoder", inner))  # type: ignore[arg-type]
            else:  # the same vectors to within 0.002 in float32, only slower
                warnings.warn("embed.dtype int8: this machine's torch has no int8 matrix product; embedding in float32",
                              RuntimeWarning, stacklevel=2)
        return model

    def _light_reason(self) -> str:
        """Why questions cannot skip torch ("" when they can); decided once, from configuration files."""
        if self._light_why is None:
            if self.config.query_runtime == "torch":
                self._light_why = f"query_runtime = {self.config.query_runtime!r}"
            elif self.config.dtype == "bfloat16":
                self._light_why = "dtype = 'bfloat16'"
            else:
                self._light_why = unsupported(self.spec.path) or ""
        return self._light_why

    def _query_encoder(self) -> QueryEncoder | None:
        """The torch-free question encoder, loaded once; None when questions go through torch."""
        if self._light is None and not self._light_reason():
            with self._light_lock:
                if self._light is None:
                    self._light = QueryEncoder(self.spec.path, self.config.max_seq_length, self._counting_tokenizer,
                                               self._compact_pieces())
        return self._light

    def _compact_pieces(self) -> UnigramPieces | None:
        """The tokenizer's compact Unigram copy in the cache (None: another kind, or it cannot be made)."""
        try:
            return cached_pieces(Path(self.spec.path) / "tokenizer.json", self._cache_dir)
        except (OSError, ValueError) as exc:
            warnings.warn(f"questions tokenised by the full tokenizer ({exc})", RuntimeWarning, stacklevel=2)
            return None

    def _torch_model(self):
        """The sentence-transformers model (loaded once, under LoadsOnce's lock)."""
        LoadsOnce.warm_up(self)
        return self._model

    @property
    def loaded(self) -> bool:
        """True once a question can be encoded without loading anything."""
        return self._light is not None or self._model is not None

    def warm_up(self) -> None:
        """Load what encoding a question needs now: the torch-free encoder (and its onnxruntime layers,
        for a process that will ask many), or else the model."""
        light = self._query_encoder()
        if light is None:
            self._torch_model()
        else:
            self._speed_up(light)

    def _speed_up(self, light: QueryEncoder) -> None:
        """Run the question encoder's layers through onnxruntime from now on (int8 weights: a third of the
        time, cosine ≥ 0.9998 to numpy's vectors); the graph is made once per model into the cache. Without
        onnx or onnxruntime, numpy goes on (one warning)."""
        with self._light_lock:
            if light.fast_layers is not None or self._fast_failed or self.config.query_runtime != "auto":
                return
            try:
                light.fast_layers = OnnxLayers(self._question_graph(), self._threads)
            except (ImportError, OSError, ValueError, RuntimeError) as exc:  # onnxruntime's errors are RuntimeErrors
                self._fast_failed = True
                warnings.warn(f"questions stay in numpy: onnxruntime cannot run their layers ({exc})", RuntimeWarning, stacklevel=2)

    def _question_graph(self) -> Path:
        digest = remembered_sha256(self._cache_dir, Path(self.spec.path) / "model.safetensors")
        return cached(self._cache_dir, f"question-layers-int8-{digest[:24]}", lambda out: write_graph(self.spec.path, out)) / GRAPH

    @property
    def dimension(self) -> int:
        """Vector size."""
        if not self._light_reason():
            return hidden_size(self.spec.path)
        return int(self._torch_model().get_embedding_dimension())

    def _passage_encoder(self) -> PassageEncoder | None:
        """The int8 encoder of packed passages (`ragapp.embed.packed`), loaded once; None when passages
        go through sentence-transformers (another dtype, pooled sentence vectors, another model shape, or
        no int8 product on this machine)."""
        with self._light_lock:
            if not self._packed_decided:
                from ragapp.embed.int8 import int8_supported
                from ragapp.embed.packed import PassageEncoder

                if self.config.dtype == "int8" and self.config.sentence_vectors == "separate" and \
                        unsupported(self.spec.path) is None and int8_supported():
                    self._packed = PassageEncoder(self.spec.path, self.config.max_seq_length, self._counting_tokenizer())
                self._packed_decided = True
            return self._packed

    def _encode(self, texts: Sequence[str], prefix: str, threads: int | None = None) -> np.ndarray:
        packed = self._passage_encoder()
        if packed is None:
            self._torch_model()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with torch_threads(threads or self._threads):
            if packed is not None:
                return packed.encode([prefix + t for t in texts])
            vectors = self._model.encode([prefix + t for t in texts], batch_size=self.config.batch_size,
                                         normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for questions (with the model's query prefix)."""
        light = self._query_encoder()
        if light is not None:
            if self._questions and light.fast_layers is None:
                self._speed_up(light)
            self._questions += len(texts)
            return light.encode([self.spec.query_prefix + t for t in texts])
        if not 0 < len(texts) <= self.config.batch_size:
            return self._encode(texts, self.spec.query_prefix)
        import torch

        # One batch: the model's own modules called directly, the same numbers as `encode` without
        # its batching and bookkeeping, a tenth of a query's time (docs/benchmarks.md, "Speed").
        self._torch_model()
        with torch_threads(self._threads), torch.inference_mode():
            features = self._model.preprocess([self.spec.query_prefix + t for t in texts])
            vectors = self._model.forward(dict(features))["sentence_embedding"].float()
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return np.ascontiguousarray(vectors.numpy(), dtype=np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for chunks or sentences (with the model's passage prefix)."""
        return self._encode(texts, self.spec.passage_prefix)

    def embed_chunks(self, texts: Sequence[str], sentences: Spans) -> tuple[np.ndarray, np.ndarray]:
        """Chunk vectors, and one vector per sentence span (for sentence-level reranking and quotes).

        `sentence_vectors = "pooled"`: each sentence's vector is the mean of its tokens' embeddings in
        the chunk's own forward pass (one pass); "separate": each distinct sentence is encoded on its
        own (a second pass; a sentence repeated by chunk overlap is encoded once).
        """
        encode = lambda batch: self._encode(batch, self.spec.passage_prefix, self._ingest_threads)  # noqa: E731
        if self.config.sentence_vectors == "separate":
            return encode(texts), sentence_vectors(encode, texts, sentences)
        self._torch_model()
        chunk_vecs = np.zeros((len(texts), self.dimension), np.float32)
        per_chunk: list[np.ndarray] = [np.zeros((0, self.dimension), np.float32)] * len(texts)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        with torch_threads(self._ingest_threads):
            for a in range(0, len(texts), self.config.batch_size):
                rows = order[a : a + self.config.batch_size]
                vecs, pooled = self._pooled_batch([texts[i] for i in rows], [sentences[i] for i in rows])
                chunk_vecs[rows] = vecs
                for i, v in zip(rows, pooled):
                    per_chunk[i] = v
        sent_vecs = np.concatenate(per_chunk) if per_chunk else np.zeros((0, self.dimension), np.float32)
        missing = np.flatnonzero(~sent_vecs.any(axis=1))
        if len(missing):  # spans past the model's length limit: encoded on their own
            spans = [(t, s) for t, ss in zip(texts, sentences) for s in ss]
            sent_vecs[missing] = encode([spans[i][0][spans[i][1][0] : spans[i][1][1]] for i in missing])
        return chunk_vecs, sent_vecs

    def _pooled_batch(self, texts: list[str], sentences: Spans) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward pass over a batch: chunk vectors (the model's own pooling) and sentence span means."""
        import torch

        prefix = self.spec.passage_prefix
        prefixed = [prefix + t for t in texts]
        features = self._model.preprocess(prefixed)
        offsets = self._model.tokenizer(prefixed, return_offsets_mapping=True, padding=True, truncation=True,
                                        max_length=self._model.max_seq_length)["offset_mapping"]
        with torch.inference_mode():
            out = self._model.forward(dict(features))
        tokens = out["token_embeddings"].float().numpy()
        mask = features["attention_mask"].numpy().astype(bool)
        pooled = []
        for i, spans in enumerate(sentences):
            marks = np.asarray(offsets[i], dtype=np.int64)[: mask.shape[1]]
            real = mask[i] & (marks[:, 1] > marks[:, 0])  # special and padding tokens start nowhere
            shifted = [(a + len(prefix), b + len(prefix)) for a, b in spans]
            pooled.append(span_vectors(tokens[i][real], marks[real, 0], shifted))
        return out["sentence_embedding"].float().numpy(), pooled

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text takes in this model (no special tokens). Short texts seen recently are not
        counted again (a document that repeats its sentences, or a re-ingest, splits without the
        tokenizer); the others are counted by a tokenizer of this embedder's own (the model's changes
        its truncation as it encodes), through the Rust `encode_batch_fast` where there is one (1.4x
        faster on 3 MB of SciFact sentences, the same counts)."""
        counts = {t: self._counted.get(t) for t in texts}
        missing = [t for t, n in counts.items() if n is None]
        if missing:
            fresh = dict(zip(missing, self._count(missing)))
            counts.update(fresh)
            if len(self._counted) > _COUNT_CACHE:
                self._counted = {}
            self._counted.update((t, n) for t, n in fresh.items() if len(t) <= _COUNT_CACHE_CHARS)
        return [int(counts[t] or 0) for t in texts]

    def _counting_tokenizer(self) -> Any:
        """The model's tokenizer without truncation, loaded once: its `tokenizer.json` read by the Rust
        `tokenizers` library (no transformers import; the same counts, tested), else transformers'."""
        with self._light_lock:
            if self._tokenizer is None:
                if (Path(self.spec.path) / "tokenizer.json").is_file():
                    self._tokenizer = load_tokenizer(self.spec.path)
                else:
                    from transformers import AutoTokenizer

                    self._tokenizer = AutoTokenizer.from_pretrained(self.spec.path, local_files_only=True,
                                                                    trust_remote_code=False)
                    self._tokenizer.backend_tokenizer.no_truncation()
            return self._tokenizer

    def _count(self, texts: list[str]) -> list[int]:
        pieces = self._light.pieces if self._light is not None else None
        if pieces is not None and sum(map(len, texts)) <= _PIECES_CHARS and all(map(pieces.handles, texts)):
            return [len(pieces.encode(t)) for t in texts]  # a prompt's passages: no 1 s vocabulary load
        tokenizer = self._counting_tokenizer()
        fast = getattr(tokenizer, "encode_batch_fast", None) or getattr(getattr(tokenizer, "backend_tokenizer", None),
                                                                       "encode_batch_fast", None)
        if fast is not None:
            return [len(e) for e in fast(texts, add_special_tokens=False)]
        return [len(x) for x in tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]]

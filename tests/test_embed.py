"""The in-process embedder's runtimes: int8 weights, sentence vectors pooled in the chunk's own pass, questions without torch."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ragapp.config import Config
from ragapp.embed import SentenceTransformerEmbedder
from ragapp.embed.sentence_transformers import span_vectors

pytestmark = pytest.mark.integration

CHUNKS = ["The Normans settled in Normandy. Their language was French. Rollo signed a treaty with the king.",
          "长城是中国古代的军事防御工程。它东起山海关，西至嘉峪关。每年有很多游客参观。"]


def _spans(text: str, ends: str) -> tuple[tuple[int, int], ...]:
    spans, a = [], 0
    for i, ch in enumerate(text):
        if ch in ends:
            spans.append((a, i + 1))
            a = i + 1 + (text[i + 1 : i + 2] == " ")
    return tuple(spans)


@pytest.fixture(scope="module")
def embedders():
    config = Config()
    make = lambda **kw: SentenceTransformerEmbedder(replace(config.embed, **kw), config.cache_dir)  # noqa: E731
    return {"float32": make(dtype="float32", sentence_vectors="separate"), "int8": make(dtype="int8", sentence_vectors="pooled")}


def test_span_vectors_mean_the_tokens_starting_inside_each_span():
    tokens = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]], dtype=np.float32)
    out = span_vectors(tokens, np.array([0, 5, 10]), [(0, 9), (10, 12), (20, 30)])
    assert np.allclose(out[0], [2 ** -0.5, 2 ** -0.5]) and np.allclose(out[1], [0.6, 0.8])
    assert not out[2].any()  # no token starts there: left for a separate encode


def test_int8_stays_close_to_float32(embedders):
    ours, exact = embedders["int8"].embed_passages(CHUNKS), embedders["float32"].embed_passages(CHUNKS)
    assert (ours * exact).sum(axis=1).min() > 0.998  # measured 0.9984 at the lowest over 1,114 SciFact sentences
    layer = embedders["int8"]._model[0].auto_model.encoder.layer[0]
    assert type(layer.intermediate).__name__ == "GeluInt8" and type(layer.output.dense).__name__ == "Int8Linear"


def test_pooled_sentence_vectors_come_from_one_pass_and_stay_each_sentences_own(embedders):
    spans = [_spans(CHUNKS[0], "."), _spans(CHUNKS[1], "。")]
    pooled_chunks, pooled = embedders["int8"].embed_chunks(CHUNKS, spans)
    assert len(pooled) == sum(map(len, spans)) == 6
    assert np.allclose((pooled_chunks * embedders["int8"].embed_passages(CHUNKS)).sum(axis=1), 1, atol=1e-5)
    _, separate = embedders["float32"].embed_chunks(CHUNKS, spans)
    own = (pooled * separate).sum(axis=1)
    assert own.min() > 0.8  # each pooled vector is close to its sentence encoded alone (measured mean 0.93) ...
    unrelated = pooled[:3] @ separate[3:].T
    assert own.min() > unrelated.max()  # ... and closer than to the other chunk's sentences
    assert np.allclose(np.linalg.norm(pooled, axis=1), 1, atol=1e-5)


def test_a_sentence_past_the_length_limit_is_encoded_on_its_own():
    config = Config()
    short = SentenceTransformerEmbedder(replace(config.embed, max_seq_length=16, dtype="float32"), config.cache_dir)
    first = "A first sentence that runs on well past the limit of sixteen tokens of this model. "
    text = first + "The second one."
    spans = ((0, len(first) - 1), (len(first), len(text)))
    _, vectors = short.embed_chunks([text], [spans])
    alone = short.embed_passages(["The second one."])[0]
    assert float(vectors[1] @ alone) > 0.999  # none of its tokens fit in the chunk's pass: encoded on its own
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_sentence_vector_mode_is_recorded_and_checked_on_ingest_not_on_query(tmp_path, docs, config, echo_generator):
    from ragapp import RAG
    from ragapp.errors import IndexMismatchError

    pooled = config.with_(embed=replace(config.embed, sentence_vectors="pooled"))
    RAG(tmp_path / "index", config, generator=echo_generator()).ingest([docs / "en"])  # separate, the default
    rag = RAG(tmp_path / "index", pooled, generator=echo_generator())
    assert rag.manifest().embedding["sentence_vectors"] == "separate"
    assert rag.search("How long does Mars take to orbit the Sun?")  # a query reads whatever the index holds
    with pytest.raises(IndexMismatchError, match="embedding.sentence_vectors 'separate' \\(asked: 'pooled'\\)"):
        rag.ingest([docs / "zh"])


def test_token_counts_are_not_cut_at_the_model_limit_after_an_encode(embedders):
    embedder = embedders["float32"]
    long_text = "word " * 700 + "长城" * 300
    first = embedder.count_tokens([long_text])[0]
    embedder.embed_passages([long_text])  # encoding truncates to 512 inside the model's own tokenizer
    assert embedder.count_tokens([long_text, "two words"]) == [first, 2] and first > 900


def test_cached_token_counts_equal_fresh_ones(embedders):
    embedder = embedders["float32"]
    texts = ["A sentence.", "长城很长。", "A sentence.", "x" * 5000, "A sentence."]
    assert embedder.count_tokens(texts) == embedder._count(texts) == embedder.count_tokens(texts)
    assert "A sentence." in embedder._counted and "x" * 5000 not in embedder._counted  # long texts are not kept


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_queries_encoded_by_the_modules_directly_equal_sentence_transformers_encode(dtype):
    """A query batch skips `encode`'s bookkeeping; the vectors must be the same numbers (mixed lengths:
    the padding is masked out of the mean)."""
    config = Config()
    embedder = SentenceTransformerEmbedder(replace(config.embed, dtype=dtype, query_runtime="torch"), config.cache_dir)
    questions = ["Who signed a treaty with the king?", "长城东起哪里？", "x" * 3000]  # the last is cut at the model limit
    ours = embedder.embed_queries(questions)
    reference = embedder._torch_model().encode([embedder.spec.query_prefix + q for q in questions],
                                               normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == (3, 384) and np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(ours, reference, atol=2e-6)


QUESTIONS = ["Who signed a treaty with the king?", "长城东起哪里？", "x" * 3000, "ATP synthase 在线粒体内膜上吗?", "a",
             "  spaces\tand\nnew lines  ", "Ünïcödé ＦＵＬＬＷＩＤＴＨ ①②③ e\u0301"]


@pytest.mark.parametrize("model", ["multilingual-e5-small", "all-MiniLM-L6-v2"])
def test_questions_without_torch_are_the_float32_model_vectors(model):
    """The numpy question encoder (no torch, no transformers) reproduces sentence-transformers in float32:
    Chinese, English, Unicode folding, a question cut at the model's length limit, a lower-casing model."""
    config = Config()
    light = SentenceTransformerEmbedder(replace(config.embed, model=model, dtype="float32"), config.cache_dir)
    reference = SentenceTransformerEmbedder(replace(config.embed, model=model, dtype="float32"), config.cache_dir)
    ours = light.embed_queries(QUESTIONS)
    assert light._light is not None and light._model is None  # answered without loading the torch model
    expected = reference._encode(QUESTIONS, reference.spec.query_prefix)
    np.testing.assert_allclose(ours, expected, atol=2e-6)
    assert light.dimension == reference._torch_model().get_embedding_dimension()


def test_questions_without_torch_match_an_int8_index_within_int8_rounding(embedders):
    """An index embedded in int8 is asked with float32 question vectors: within the rounding int8 itself
    brings (0.9988 at the lowest over 300 SciFact questions, docs/benchmarks.md "Cold start")."""
    config = Config()
    torch_int8 = SentenceTransformerEmbedder(replace(config.embed, query_runtime="torch"), config.cache_dir)
    cos = (embedders["int8"].embed_queries(QUESTIONS) * torch_int8.embed_queries(QUESTIONS)).sum(axis=1)
    assert np.delete(cos, 2).min() > 0.998, cos
    assert cos[2] > 0.995, cos  # 3,000 x's cut at 512 tokens: 0.9968 on the AMD machine, 0.997+ on the Intel one


def test_a_model_of_another_shape_keeps_the_torch_path(tmp_path):
    from ragapp.embed.light import unsupported

    config = Config()
    folder = Path(SentenceTransformerEmbedder(config.embed, config.cache_dir).spec.path)
    assert unsupported(folder) is None
    copy = tmp_path / "model"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("model.safetensors"))
    assert unsupported(copy) == "no model.safetensors"
    pooling = json.loads((copy / "1_Pooling" / "config.json").read_text())
    (copy / "1_Pooling" / "config.json").write_text(json.dumps({**pooling, "pooling_mode": "cls"}))
    assert unsupported(copy) == "pooling is not a mean of the token embeddings"


SHARED_EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"


def test_the_compact_unigram_segments_as_the_rust_tokenizer(tmp_path):
    """`pieces.py` (the vocabulary copied once, segmented in Python) gives the ids of `tokenizers`: Chinese,
    English, Unicode folding, unknown characters, and SciFact and CMRC texts where ../shared is present."""
    import itertools

    from ragapp.embed.light import load_tokenizer
    from ragapp.embed.pieces import cached_pieces

    config = Config()
    folder = Path(SentenceTransformerEmbedder(config.embed, config.cache_dir).spec.path)
    pieces = cached_pieces(folder / "tokenizer.json", tmp_path)
    assert pieces is not None and (tmp_path / "models").is_dir()
    rust = load_tokenizer(folder)
    texts = [*QUESTIONS, *CHUNKS, "", "ＡＢＣ①②㍿ ﬁ", "🙂🤖 \u200b zero\u200dwidth", "\x00\x07ctl", "한국어 日本語 العربية"]
    for name in ("scifact/corpus.jsonl", "cmrc2018_dev/corpus.jsonl"):
        if (SHARED_EVAL / name).is_file():  # the shared data sits beside the clone in CI
            with open(SHARED_EVAL / name, encoding="utf-8") as f:
                texts += [json.loads(line)["text"] for line in itertools.islice(f, 300)]
    assert all(pieces.encode(t) == rust.encode(t, add_special_tokens=False).ids for t in texts if pieces.handles(t))
    assert pieces.model_ids("x" * 3000, 512) == rust.post_process(_cut(rust.encode("x" * 3000, add_special_tokens=False), 510)).ids
    assert not pieces.handles("a <mask> here")  # added tokens are left to the Rust tokenizer


def _cut(encoding, n):
    encoding.truncate(n)
    return encoding


def test_from_the_second_question_onnxruntime_runs_the_layers_within_int8_rounding():
    """A one-question command stays in numpy (no 0.35 s session to open); a process asking more switches
    to the ONNX graph written from the same weights (int8 in blocks of 32), and the vectors move by no
    more than that rounding (cosine to numpy's float32 ≥ 0.9995; ≥ 0.9998 on every SciFact query)."""
    config = Config()
    embedder = SentenceTransformerEmbedder(config.embed, config.cache_dir)
    embedder.embed_queries(QUESTIONS[:1])
    light = embedder._light
    assert light is not None and light.fast_layers is None
    through_onnx = embedder.embed_queries(QUESTIONS)
    assert light.fast_layers is not None and embedder._model is None
    light.fast_layers, embedder._fast_failed = None, True  # back to numpy for the comparison
    in_numpy = embedder.embed_queries(QUESTIONS)
    cosines = (through_onnx * in_numpy).sum(axis=1)
    assert cosines.min() >= 0.9995 and not np.array_equal(through_onnx, in_numpy), cosines

"""Passages encoded in int8 over packed rows (ragapp/embed/packed.py) against sentence-transformers' int8 model."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from ragapp.config import Config
from ragapp.embed import SentenceTransformerEmbedder
from ragapp.embed.packed import PassageEncoder

pytestmark = pytest.mark.integration

TEXTS = ["The Normans settled in Normandy. Their language was French. Rollo signed a treaty with the king.",
         "长城是中国古代的军事防御工程。它东起山海关，西至嘉峪关。每年有很多游客参观。",
         "A short one.", "Ünïcödé ＦＵＬＬＷＩＤＴＨ ①②③ e\u0301 MIXED Case", "x" * 3000,  # cut at the model limit
         " ".join(f"Sentence {i} of a long passage about mitochondria and ATP synthase." for i in range(40))]


def _embedder(model: str) -> SentenceTransformerEmbedder:
    config = Config()
    return SentenceTransformerEmbedder(replace(config.embed, model=model, dtype="int8", sentence_vectors="separate"),
                                       config.cache_dir)


@pytest.mark.parametrize("model", ["multilingual-e5-small", "all-MiniLM-L6-v2"])
def test_packed_passages_are_the_int8_model_vectors(model):
    """Same ids as sentence-transformers' tokenizer call (truncation, special tokens, a lower-casing model),
    and the same int8 vectors to within int8's own noise (a rounding flipped by float32 summation order:
    the same text alone or in another batch moves as much), as close to the float32 model's as theirs."""
    embedder = _embedder(model)
    packed = embedder._passage_encoder()
    assert isinstance(packed, PassageEncoder)
    st = embedder._torch_model()
    texts = [embedder.spec.passage_prefix + t for t in TEXTS]
    features = st.preprocess(texts)
    for row, ids in enumerate(packed.token_ids(texts)):
        assert int(features["attention_mask"][row].sum()) == len(ids)
        assert features["input_ids"][row][: len(ids)].tolist() == ids
    ours = embedder.embed_passages(TEXTS)
    theirs = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == (len(TEXTS), 384) and np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    assert (ours * theirs).sum(axis=1).min() > 0.999
    alone = np.concatenate([embedder.embed_passages([t]) for t in TEXTS])
    alone_st = np.concatenate([st.encode([t], normalize_embeddings=True) for t in texts])
    assert (alone * alone_st).sum(axis=1).min() > 0.999
    exact = SentenceTransformerEmbedder(replace(embedder.config, dtype="float32"), Config().cache_dir).embed_passages(TEXTS)
    # As close to the float32 model as sentence-transformers' int8 (which is 0.990 for MiniLM on the x's).
    assert ((ours * exact).sum(axis=1) - (theirs * exact).sum(axis=1)).min() > -0.001


def test_other_settings_keep_sentence_transformers():
    config = Config()
    for kw in ({"dtype": "float32"}, {"dtype": "bfloat16"}, {"sentence_vectors": "pooled"}):
        embedder = SentenceTransformerEmbedder(replace(config.embed, **kw), config.cache_dir)
        assert embedder._passage_encoder() is None, kw


def test_an_ingest_with_the_default_embedder_imports_no_sentence_transformers(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Mars\n\nMars takes 687 Earth days to orbit the Sun.\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "ragapp.cli", "ingest", str(tmp_path / "docs"),
                          "--index", str(tmp_path / "index")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" in imported  # the int8 products
    assert not {"sentence_transformers", "transformers"} & imported

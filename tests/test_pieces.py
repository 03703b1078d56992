"""The compact Unigram segmenter on small vocabularies built here: ties, unknown runs, and the guard
against a crafted vocabulary whose long pieces would make the search slow."""

import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from ragapp.embed.pieces import UnigramPieces, write_compact

pytestmark = pytest.mark.unit


def _tokenizer(vocab: list[tuple[str, float]]) -> Tokenizer:
    tokenizer = Tokenizer(models.Unigram(vocab, 0, False))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    return tokenizer


def _compact(tokenizer: Tokenizer, folder) -> UnigramPieces:
    write_compact(json.loads(tokenizer.to_str()), folder)
    return UnigramPieces(folder)


VOCAB = [("<unk>", 0.0), ("▁", -2.0), ("a", -3.0), ("b", -3.0), ("ab", -5.5), ("▁ab", -4.0), ("▁a", -3.5),
         ("c", -4.0), ("abc", -6.0), ("长", -3.0), ("城", -3.0), ("长城", -4.5)]


@pytest.mark.parametrize("text", ["ab", "abc abcab", "a b c", "zzz ab qq", "长城 长长城城", "ab长城zz", "", "  "])
def test_the_ids_of_the_rust_unigram(tmp_path, text):
    rust = _tokenizer(VOCAB)
    assert _compact(rust, tmp_path).encode(text) == rust.encode(text, add_special_tokens=False).ids


def test_a_vocabulary_with_overlong_pieces_is_left_to_the_rust_tokenizer(tmp_path):
    pieces = _compact(_tokenizer([*VOCAB, ("x" * 5000, -9.0)]), tmp_path)
    assert not pieces.handles("ab")

"""Tokenisation for BM25: lower-cased English words (optionally stemmed), Chinese by jieba words or character bigrams."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# Runs of Chinese characters, or runs of letters/digits (ASCII and other alphabets).
_TOKEN = re.compile(r"(?P<han>[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)|[^\W_]+", re.UNICODE)

# A short, standard English stop list (the one Lucene's EnglishAnalyzer uses).
ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split()
)
CHINESE_STOPWORDS = frozenset(("的 了 是 在 和 与 及 或 也 都 而 就 被 把 之 其 这 那 个 为 于 对 中 上 下 "
                               "吗 呢 吧 啊 什么 哪 哪些 哪个 谁 多少 怎么 如何 为什么 几").split())


class Tokenizer:
    """Turns text into BM25 terms. Construct once; `__call__` is cheap and thread-safe."""

    def __init__(self, chinese: str = "bigram", stem: bool = True) -> None:
        if chinese not in ("bigram", "jieba"):
            raise ValueError(f"chinese must be 'bigram' or 'jieba', not {chinese!r}")
        self.chinese = chinese
        self.stem = stem
        self._stemmer = None
        self._jieba = None
        if stem:
            import Stemmer  # PyStemmer: the C Snowball stemmer, far faster than a pure-Python one

            self._stemmer = Stemmer.Stemmer("english")
        if chinese == "jieba":
            import logging

            import jieba

            jieba.setLogLevel(logging.WARNING)
            self._jieba = jieba.Tokenizer()
            self._jieba.initialize()

    def settings(self) -> dict:
        """What the manifest records, so queries are tokenised like the index."""
        return {"chinese": self.chinese, "stem": self.stem, "stopwords": "lucene-english+zh-function-words"}

    def _chinese(self, run: str) -> list[str]:
        if self._jieba is not None:
            return [w for w in self._jieba.lcut(run) if w.strip() and w not in CHINESE_STOPWORDS]
        if len(run) == 1:
            return [run]
        return [run[i : i + 2] for i in range(len(run) - 1)]

    def __call__(self, text: str) -> list[str]:
        """Terms of one text."""
        text = unicodedata.normalize("NFKC", text).lower()
        out: list[str] = []
        english: list[int] = []  # where the English words are in `out` (they are stemmed in one call)
        for m in _TOKEN.finditer(text):
            tok = m.group()
            if m.lastgroup == "han":
                out.extend(self._chinese(tok))
            elif tok not in ENGLISH_STOPWORDS:
                english.append(len(out))
                out.append(tok)
        if self._stemmer is not None and english:
            for i, stem in zip(english, self._stemmer.stemWords([out[i] for i in english])):
                out[i] = stem
        return out

    def batch(self, texts: Sequence[str]) -> list[list[str]]:
        """Terms of many texts."""
        return [self(t) for t in texts]

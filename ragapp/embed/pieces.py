"""SentencePiece Unigram segmentation (XLM-R, e5) in Python, for the few texts of a question.

The Rust `tokenizers` library takes about 1 s to read the 250,000-piece vocabulary of the packaged
embedder's `tokenizer.json` (building its trie), more than everything else a cold `ragapp search` does.
A question needs a few hundred dictionary lookups. So the vocabulary is copied once into a compact form
(`write_compact`: the pieces as text, their scores as .npy, the rest of `tokenizer.json` without the
vocabulary) that loads in a few hundredths of a second, and segmented here with the same Viterbi search
as `tokenizers`' Unigram model (its unknown-piece penalty, its ties, unknown runs fused). Normalisation
and pre-tokenisation are `tokenizers`' own objects, built from the same JSON without the vocabulary.
A text holding an added token ("<s>", "<mask>"...) is left to the caller's real tokenizer.
Tested to give the ids of `tokenizers` on SciFact, CMRC and SQuAD texts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ragapp.models.cache import cached, remembered_sha256

_UNK_PENALTY = 10.0  # tokenizers' K_UNK_PENALTY: an unknown character scores the rarest piece minus this
_PIECES, _SCORES, _REST = "pieces.txt", "scores.npy", "tokenizer-rest.json"
_MAX_TOKENIZER_BYTES = 256 << 20
_LONGEST_PIECE = 64  # characters; a vocabulary with longer pieces (XLM-R's longest: 16) is left to the Rust tokenizer,
# which keeps the Viterbi search linear in the text (a crafted piece of 10,000 characters would not)


def cached_pieces(tokenizer_json: Path, cache_dir: str | Path) -> UnigramPieces | None:
    """The compact copy of a Unigram `tokenizer.json`, made once into the model cache under the file's
    sha256 (None for another kind of tokenizer: the caller keeps the Rust one)."""
    digest = remembered_sha256(cache_dir, tokenizer_json)

    def build(out: Path) -> None:
        if tokenizer_json.stat().st_size > _MAX_TOKENIZER_BYTES:
            raise ValueError(f"{tokenizer_json}: over {_MAX_TOKENIZER_BYTES >> 20} MB")
        data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        if isinstance(data, dict) and is_unigram(data):
            write_compact(data, out)

    folder = cached(cache_dir, f"tokenizer-{digest[:24]}", build)
    return UnigramPieces(folder) if (folder / _PIECES).is_file() else None


def is_unigram(tokenizer_json: dict) -> bool:
    """Whether a parsed tokenizer.json is a Unigram model this module segments (no byte fallback)."""
    model = tokenizer_json.get("model") or {}
    return model.get("type") == "Unigram" and not model.get("byte_fallback") and \
        isinstance(model.get("unk_id"), int) and isinstance(model.get("vocab"), list)


def write_compact(tokenizer_json: dict, out: Path) -> None:
    """The vocabulary of a Unigram tokenizer.json as pieces (one per line) and scores, and the rest of the file."""
    vocab = tokenizer_json["model"]["vocab"]
    pieces = [str(p) for p, _ in vocab]
    if any("\n" in p for p in pieces):
        raise ValueError("a vocabulary piece holds a line break")
    (out / _PIECES).write_text("\n".join(pieces), encoding="utf-8")
    np.save(out / _SCORES, np.asarray([float(s) for _, s in vocab], dtype=np.float64), allow_pickle=False)
    rest = dict(tokenizer_json, model={k: v for k, v in tokenizer_json["model"].items() if k != "vocab"})
    (out / _REST).write_text(json.dumps(rest), encoding="utf-8")


class UnigramPieces:
    """Token ids of texts from a compact copy of a Unigram tokenizer (see `write_compact`)."""

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer

        root = Path(folder)
        pieces = (root / _PIECES).read_text(encoding="utf-8").split("\n")
        self.scores = np.load(root / _SCORES, allow_pickle=False).tolist()
        if len(self.scores) != len(pieces):
            raise ValueError(f"{root}: {len(pieces)} pieces but {len(self.scores)} scores")
        self.ids = {p: i for i, p in enumerate(pieces)}
        self.longest = max(map(len, pieces))
        rest = json.loads((root / _REST).read_text(encoding="utf-8"))
        self.unk_id = int(rest["model"]["unk_id"])
        self.unk_score = min(self.scores) - _UNK_PENALTY
        self.added = [t["content"] for t in rest.get("added_tokens", [])]
        marker = 1 << 30  # a word's id in the shell: the special tokens around it are the post-processor's
        shell = dict(rest, model={"type": "WordLevel", "vocab": {"<unk>": marker}, "unk_token": "<unk>"}, added_tokens=[])
        self._shell = Tokenizer.from_str(json.dumps(shell))  # the normaliser, pre-tokeniser and post-processor
        around = self._shell.encode("x").ids
        if around.count(marker) != 1:
            raise ValueError(f"{root}: a post-processor this module does not follow")
        self.prefix, self.suffix = around[: around.index(marker)], around[around.index(marker) + 1 :]

    def handles(self, text: str) -> bool:
        """False when the text holds an added token, or the vocabulary has overlong pieces (the real
        tokenizer segments it instead)."""
        return self.longest <= _LONGEST_PIECE and not any(token in text for token in self.added)

    def model_ids(self, text: str, limit: int) -> list[int]:
        """The model's input: the ids cut to fit `limit` with the special tokens around them, as a
        tokenizer truncating at `limit` gives them (for a text it `handles`)."""
        room = max(limit - len(self.prefix) - len(self.suffix), 0)
        return [*self.prefix, *self.encode(text)[:room], *self.suffix]

    def encode(self, text: str) -> list[int]:
        """The ids of `text` without special tokens."""
        normal = self._shell.normalizer.normalize_str(text) if self._shell.normalizer else text
        words = self._shell.pre_tokenizer.pre_tokenize_str(normal) if self._shell.pre_tokenizer else [(normal, None)]
        return [i for word, _ in words for i in self._viterbi(word)]

    def _viterbi(self, word: str) -> list[int]:
        n = len(word)
        score: list[float | None] = [0.0] + [None] * n
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)
        for start in range(n):
            here = score[start]
            if here is None:
                continue
            single = False
            for end in range(start + 1, min(n, start + self.longest) + 1):
                piece = self.ids.get(word[start:end])
                if piece is None:
                    continue
                candidate = here + self.scores[piece]
                best = score[end]
                if best is None or candidate > best:
                    score[end], back[end] = candidate, (start, piece)
                single = single or end == start + 1
            if not single:
                candidate, best = here + self.unk_score, score[start + 1]
                if best is None or candidate > best:
                    score[start + 1], back[start + 1] = candidate, (start, self.unk_id)
        ids: list[int] = []
        end = n
        while end > 0:
            start, piece = back[end]
            if not (piece == self.unk_id and ids and ids[-1] == self.unk_id):  # unknown runs fused into one
                ids.append(piece)
            end = start
        return ids[::-1]

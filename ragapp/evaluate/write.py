"""Writing a test set from a knowledge base: passages drawn across its documents and formats, a sentence
of each handed to the chat model with the passage around it, and a question whose answer is in that
sentence asked back. What a writer model botched is dropped by stated rules (DROP_RULES), counted."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import replace
from pathlib import PurePath

from ragapp.config import Config
from ragapp.evaluate.scoring import answer_tokens, normalise_answer
from ragapp.evaluate.testset import TestItem
from ragapp.generate import Generator, build_generator
from ragapp.index import IndexReader
from ragapp.models.names import QWEN15_NAME, QWEN_NAME, parts_installed
from ragapp.records import Chunk
from ragapp.text import detect_language

# Why a written question is dropped, in the order the rules are tried.
DROP_RULES = {
    "unreadable": "the reply has no 'Question:' and 'Answer:' line",
    "wrong language": "the question is not in its passage's language",
    "not a question": "too short or too long to be a question (3 to 40 words; 6 to 80 Chinese characters)",
    "answer not in its sentence": "the answer (at most 12 words or 30 characters) is in no sentence of its chunk",
    "answer in the question": "the question already holds its answer",
    "copy of the sentence": "the question repeats 80 % or more of the sentence's words besides the answer's",
    "duplicate": "the same question was written before",
    "copied the example": "the question names the worked example's subject, which its passage does not",
}
_SYSTEM = {
    "en": "You write exam questions about a text. Reply with the question line and the answer line only.",
    "zh": "你为一段文字出考题。只回复问题一行和答案一行。",
}
# One worked example per language, given as an earlier turn: a small model copies the form it is shown.
_EXAMPLE = {  # text, sentence, answer, the reply
    "en": ("The Eiffel Tower is a wrought-iron tower in Paris. It was completed in 1889 as the entrance to the World's Fair.",
           "It was completed in 1889 as the entrance to the World's Fair.", "1889",
           "Question: In which year was the Eiffel Tower completed?\nAnswer: 1889"),
    "zh": ("故宫位于北京中轴线的中心。它始建于明朝永乐四年，是明清两代的皇家宫殿。", "它始建于明朝永乐四年，是明清两代的皇家宫殿。",
           "明朝永乐四年", "问题：故宫始建于什么时候？\n答案：明朝永乐四年"),
}
_EXAMPLE_SUBJECT = {"en": "eiffel", "zh": "故宫"}
_QUESTION = re.compile(r"^\s*\**(?:question|问题|问)\**\s*[:：]\s*(.+)$", re.IGNORECASE | re.MULTILINE)
# Answers worth a question: figures (with a scale or unit), titles, names (proper nouns, places, times).
_EN_SPAN = re.compile(r"\b\d[\d,.]*(?:\s?(?:%|percent|thousand|million|billion|km|kg|years?))?\b|"
                      r"(?<=[a-z,;] )[A-Z][a-zA-Z-]+(?: (?:of |de |von |van )?[A-Z][a-zA-Z-]+)*")
_ZH_SPAN = re.compile(r"《[^》]{1,20}》|\d[\d,.]*\s?[年月日号岁个种人次米元度倍%％亿万千]*")
_ZH_NAMES = ("nr", "ns", "nt", "nz", "t")
_ANSWER = re.compile(r"^\s*(?:answer|答案|答)\s*[:：]\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_MIN_SENTENCE = {"en": 40, "zh": 12}
# Chunks read to draw from: on a larger knowledge base the set is drawn from its first this many rows.
MAX_SCANNED = 200_000
_MAX_SENTENCE = 400


def best_writer(generator: Generator, config: Config) -> Generator:
    """The chat model that writes the test set: the packaged 1.5B where it is installed and the 0.5B answers
    in this process (the 0.5B botches more of what it writes: docs/benchmarks.md, "Answer confidence"),
    else the model that answers."""
    if generator.name != QWEN_NAME or generator.url or not parts_installed(QWEN15_NAME):
        return generator
    return build_generator(replace(config.generate, model=QWEN15_NAME), config.cache_dir, config.models)


def doc_type(source: str) -> str:
    """A document's type as the report groups them: its suffix (".pdf"), "(none)" without one."""
    return PurePath(source).suffix.lower() or "(none)"


def drawn_chunks(index: IndexReader, rng: random.Random, sources: Sequence[str] | None, limit: int = 4000,
                 passes: int = 3) -> Iterator[Chunk]:
    """Chunks of `sources` (None: any) in an order that goes round the document types, and round the
    documents within a type, so a set covers every format and document the knowledge base holds; a
    small knowledge base is gone round again (`passes` times: another sentence of each chunk is drawn)."""
    for _ in range(passes):
        yield from _one_pass(index, rng, sources, limit)


def sampled(index: IndexReader, rng: random.Random, sources: Sequence[str] | None, limit: int) -> list[Chunk]:
    """Up to `limit` chunks of `sources` drawn evenly (reservoir sampling over the first MAX_SCANNED rows,
    the same on every backend: row ids are not 0..n-1 on all of them)."""
    wanted = None if sources is None else set(sources)
    sample: list[Chunk] = []
    seen = 0
    for n, (_, chunk, _) in enumerate(index.rows()):
        if n >= MAX_SCANNED:
            break
        if wanted is not None and chunk.source not in wanted:
            continue
        seen += 1
        if len(sample) < limit:
            sample.append(chunk)
        elif (j := rng.randrange(seen)) < limit:
            sample[j] = chunk
    rng.shuffle(sample)
    return sample


def _one_pass(index: IndexReader, rng: random.Random, sources: Sequence[str] | None, limit: int) -> Iterator[Chunk]:
    by_type: dict[str, dict[str, list[Chunk]]] = {}
    for chunk in sampled(index, rng, sources, limit):
        by_type.setdefault(doc_type(chunk.source), {}).setdefault(chunk.source, []).append(chunk)
    queues = {t: list(docs.values()) for t, docs in sorted(by_type.items())}
    while queues:
        for kind in list(queues):
            docs = queues[kind]
            chunks = docs.pop(0)
            yield chunks.pop()
            if chunks:
                docs.append(chunks)
            if not docs:
                del queues[kind]


def answer_sentence(chunk: Chunk, rng: random.Random, used: Collection[str] = ()) -> str:
    """A sentence of the chunk long enough to hold a fact, not one in `used` ("" when it has none)."""
    lang = detect_language(chunk.text)
    spans = chunk.sentences or ((0, len(chunk.text)),)
    fit = [chunk.text[a:b].strip() for a, b in spans if _MIN_SENTENCE[lang] <= len(chunk.text[a:b].strip()) <= _MAX_SENTENCE]
    fit = [s for s in fit if sum(c.isalpha() for c in s) >= len(s) / 2 and s not in used]  # not a row of figures
    return rng.choice(fit) if fit else ""


def answer_span(sentence: str, lang: str, rng: random.Random) -> str:
    """A figure, title or name in the sentence to ask about ("" when it has none)."""
    found = [m.group(0).strip() for m in (_ZH_SPAN if lang == "zh" else _EN_SPAN).finditer(sentence)]
    if lang == "zh":
        import logging

        import jieba
        import jieba.posseg

        jieba.setLogLevel(logging.WARNING)  # its "Building prefix dict …" lines are no user's business
        found += [w.word for w in jieba.posseg.cut(sentence) if w.flag in _ZH_NAMES and len(w.word) >= 2]
    found = [f for f in found if 2 <= len(f) <= 30 and not f.replace(",", "").replace(".", "").isdigit() or len(f) == 4]
    return rng.choice(sorted(set(found))) if found else ""


def context_of(chunk: Chunk, sentence: str) -> str:
    """The sentence and the one before it (what a pronoun in it points to), not the whole chunk: a
    shorter prompt is most of a small model's time."""
    at = chunk.text.find(sentence)
    spans = [(a, b) for a, b in chunk.sentences if b <= at] if at >= 0 else []
    before = chunk.text[spans[-1][0] : spans[-1][1]].strip() if spans else ""
    return (before + " " + sentence).strip() if before else sentence


def two_lines(stream: Iterator[str]) -> str:
    """A reply read up to its second line (the question and the answer), the rest not generated."""
    text = ""
    for piece in stream:
        text += piece
        if len([line for line in text.split("\n")[:-1] if line.strip()]) >= 2:  # two finished lines
            break
    return text


def _asking(text: str, sentence: str, lang: str, answer: str) -> str:
    if lang == "zh":
        return f"文字：\n{text}\n\n句子：{sentence}" + (f"\n\n答案：{answer}" if answer else "")
    return f"Text:\n{text}\n\nSentence: {sentence}" + (f"\n\nAnswer: {answer}" if answer else "")


def writer_messages(chunk: Chunk, sentence: str, lang: str, answer: str = "") -> list[dict[str, str]]:
    """The chat messages that ask for one question the sentence answers (whose answer is `answer`, if
    given), after a worked example."""
    text, example_sentence, example_answer, reply = _EXAMPLE[lang]
    return [{"role": "system", "content": _SYSTEM[lang]},
            {"role": "user", "content": _asking(text, example_sentence, lang, example_answer if answer else "")},
            {"role": "assistant", "content": reply},
            {"role": "user", "content": _asking(context_of(chunk, sentence), sentence, lang, answer)}]


def _too_long_answer(answer: str, lang: str) -> bool:
    return len(answer) > 30 if lang == "zh" else len(answer.split()) > 12


_MARKDOWN = re.compile(r"(^|\n)\s*(#{1,6}\s|[-*>]\s|\d+[.)]\s)|\*\*|__")
_ASKS = re.compile(r"\b(what|who|whom|whose|when|where|which|why|how)\b"
                   r"|^(is|are|was|were|do|does|did|can|could|should|would|will|has|have|had|in|on|at|by|from|for)\b"
                   r"|多少|什么|哪|谁|几|吗|呢|怎么|怎样|为什么|为何|是否|如何", re.IGNORECASE)


def is_question(text: str) -> bool:
    """A question as a person writes one: ends in a question mark or asks with a question word, and is no
    Markdown (a heading, a list item or bold text is a copied passage, not a question)."""
    text = text.strip()
    return not _MARKDOWN.search(text) and (text.endswith(("?", "？")) or bool(_ASKS.search(text)))


def check_written(reply: str, sentence: str, lang: str, seen: set[str], answer: str = "", passage: str = "") -> tuple[str, str, str]:
    """(question, answer, "") for a usable reply (to a prompt that gave `answer`, if any), or ("", "", the rule it breaks)."""
    q, a = _QUESTION.search(reply), _ANSWER.search(reply)
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    if q is None and answer and len(lines) == 1 and lines[0].endswith(("?", "？")):
        q = re.match(r"(.+)", lines[0])  # the bare question line asked for
    if not q or not (a or answer):
        return "", "", "unreadable"
    question = q.group(1).strip()
    if a:  # the model's own answer is what its question asks for, even where it was given another
        answer = a.group(1).strip().strip("。.\"'“”")
    if detect_language(question) != lang:
        return "", "", "wrong language"
    size = len(question) if lang == "zh" else len(question.split())
    if not ((6 <= size <= 80) if lang == "zh" else (3 <= size <= 40)) or not is_question(question):
        return "", "", "not a question"
    norm_answer = normalise_answer(answer)
    if not norm_answer or _too_long_answer(answer, lang) or norm_answer not in normalise_answer(sentence):
        return "", "", "answer not in its sentence"
    if norm_answer in normalise_answer(question):
        return "", "", "answer in the question"
    words = set(answer_tokens(sentence)) - set(answer_tokens(answer))
    if words and len(words & set(answer_tokens(question))) >= 0.8 * len(words):
        return "", "", "copy of the sentence"
    if normalise_answer(question) in seen:
        return "", "", "duplicate"
    if _EXAMPLE_SUBJECT[lang] in question.lower() and _EXAMPLE_SUBJECT[lang] not in (passage or sentence).lower():
        return "", "", "copied the example"
    seen.add(normalise_answer(question))
    return question, answer, ""


def sentence_holding(chunk: Chunk, reply: str, lang: str) -> str:
    """The chunk's sentence holding the reply's answer ("" when none does)."""
    found = _ANSWER.search(reply)
    wanted = normalise_answer(found.group(1)) if found else ""
    if not wanted:
        return ""
    for a, b in chunk.sentences:
        if wanted in normalise_answer(chunk.text[a:b]):
            return chunk.text[a:b].strip()
    return ""


def write_items(chunks: Iterator[Chunk], count: int, generate: Callable[[list[dict[str, str]]], str], expect: str,
                rng: random.Random, dropped: dict[str, int], progress: Callable[[int], None] = lambda n: None,
                max_tries: int | None = None) -> list[TestItem]:
    """Up to `count` items written from `chunks`, at most `max_tries` (default 3 x count) model calls;
    each dropped reply counted in `dropped` under the rule it broke."""
    items: list[TestItem] = []
    seen: set[str] = set()
    used: set[str] = set()
    tries = 0
    for chunk in chunks:
        if len(items) >= count or tries >= (max_tries or 3 * count):
            break
        sentence = answer_sentence(chunk, rng, used)
        if not sentence:
            continue
        used.add(sentence)
        lang = detect_language(chunk.text)
        span = answer_span(sentence, lang, rng)
        tries += 1
        progress(len(items))  # before each model call: a cancelled job stops here
        reply = generate(writer_messages(chunk, sentence, lang, span))
        question, answer, rule = check_written(reply, sentence, lang, seen, span, chunk.text)
        if rule == "answer not in its sentence" and (holding := sentence_holding(chunk, reply, lang)):
            sentence = holding  # the answer is in another sentence of its chunk: that one is the gold
            question, answer, rule = check_written(reply, sentence, lang, seen, span, chunk.text)
        if rule:
            dropped[rule] = dropped.get(rule, 0) + 1
            continue
        items.append(TestItem(question=question, expect=expect, answers=(answer,), language=lang, source=chunk.source,
                              page=chunk.page, sentence=sentence, origin="written"))
        progress(len(items))
    return items

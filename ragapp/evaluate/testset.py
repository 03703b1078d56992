"""A knowledge base's test set: the one owner of `<index>/eval/testset.jsonl` (and of any set a user
hands to `ragapp eval --set`). One JSON object per line; a first line `{"ragapp_test_set": 1, ...}`
says which documents the written questions were asked with hidden. A hand-written line needs only
`question`, and `answer` (or `answers`) or `"expect": "refuse"`. Read within size limits; a line that
is not a test item is reported with its number, never run."""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ragapp.text import detect_language
from ragapp.threshold import EVAL_FOLDER

SET_FILE = "testset.jsonl"
MAX_SET_BYTES = 20_000_000
MAX_ITEMS = 10_000
MAX_QUESTION_CHARS = 2_000
VERDICTS = ("good", "bad", "should_refuse")


@dataclass(frozen=True)
class TestItem:
    """One question and what a right reply to it is."""

    question: str
    expect: str = "answer"  # "answer" | "refuse"
    answers: tuple[str, ...] = ()  # gold answers (an answer holding one is right); () when not known
    language: str = ""
    source: str = ""  # the document the question was written from ("" when not known)
    page: int | None = None
    sentence: str = ""  # the sentence that answers it
    # "written": for the set's hidden split, asked with its hidden documents left out (ragapp eval's own
    # questions, or a benchmark's) | "user" (hand-written) | "feedback" (the chat app, the HTTP API)
    origin: str = "user"
    verdict: str = ""  # feedback: "good" | "bad" | "should_refuse"
    reference: str = ""  # feedback: the answer the verdict was given on
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        if not self.question.strip() or len(self.question) > MAX_QUESTION_CHARS:
            raise ValueError(f"a question must have 1 to {MAX_QUESTION_CHARS} characters")
        if self.expect not in ("answer", "refuse"):
            raise ValueError(f"expect must be 'answer' or 'refuse', not {self.expect!r}")
        if self.verdict not in ("", *VERDICTS):
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {self.verdict!r}")
        if not self.language:
            object.__setattr__(self, "language", detect_language(self.question))

    @property
    def hidden_run(self) -> bool:
        """True when the question is asked with the set's hidden documents left out (written ones)."""
        return self.origin == "written"

    @classmethod
    def from_dict(cls, data: dict) -> TestItem:
        """An item from a line of a set; ValueError saying what is wrong with it."""
        if not isinstance(data, dict) or not isinstance(data.get("question"), str):
            raise ValueError("not an object with a 'question' string")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        answers = data.get("answers", [data["answer"]] if isinstance(data.get("answer"), str) else [])
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise ValueError("'answers' must be a list of strings")
        values["answers"] = tuple(a for a in answers if a.strip())
        if values.get("page") is not None and not isinstance(values["page"], int):
            raise ValueError("'page' must be a number")
        for key in ("expect", "language", "source", "sentence", "origin", "verdict", "reference", "id"):
            if key in values and not isinstance(values[key], str):
                raise ValueError(f"{key!r} must be a string")
        return cls(**values)


@dataclass
class TestSet:
    """The items, and the documents hidden from retrieval while the written ones are asked."""

    items: list[TestItem]
    hidden: tuple[str, ...] = ()
    writer: str = ""
    created_at: float = field(default_factory=time.time)

    def save(self, path: str | Path) -> Path:
        """Write the set (through a temporary file renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        header = {"ragapp_test_set": 1, "hidden": list(self.hidden), "writer": self.writer, "created_at": self.created_at}
        with open(tmp, "w", encoding="utf-8") as out:
            for row in [header] + [asdict(i) for i in self.items]:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
        return path


def set_path(folder: str | Path) -> Path:
    """Where an index folder keeps its test set."""
    return Path(folder) / EVAL_FOLDER / SET_FILE


def read_set(path: str | Path) -> TestSet:
    """A saved or hand-written set; ValueError naming the file and line of anything that is not an item."""
    path = Path(path)
    if path.stat().st_size > MAX_SET_BYTES:
        raise ValueError(f"{path}: a test set may be at most {MAX_SET_BYTES // 1_000_000} MB")
    found = TestSet(items=[])
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if isinstance(data, dict) and "ragapp_test_set" in data:
                    found.hidden = tuple(str(s) for s in data.get("hidden", []))
                    found.writer, found.created_at = str(data.get("writer", "")), float(data.get("created_at", 0))
                    continue
                found.items.append(TestItem.from_dict(data))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}, line {number}: {exc}") from None
            if len(found.items) > MAX_ITEMS:
                raise ValueError(f"{path}: a test set may hold at most {MAX_ITEMS} questions")
    return found


def add_feedback(folder: str | Path, question: str, answer: str, verdict: str, sources: tuple[str, ...] = ()) -> TestItem:
    """Keep a verdict on an answer as a test case of the knowledge base in `folder`: "good" (the answer is
    the reference a later answer is held to), "bad" (it must not come back), "should_refuse"."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    item = TestItem(question=question, expect="refuse" if verdict == "should_refuse" else "answer", origin="feedback",
                    verdict=verdict, reference=answer[:MAX_QUESTION_CHARS], source=sources[0] if sources else "")
    path = set_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".testset.lock", "a") as lock:  # two clicks at once both land
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = read_set(path) if path.exists() else TestSet(items=[])
        current.items.append(item)
        current.save(path)
    return item

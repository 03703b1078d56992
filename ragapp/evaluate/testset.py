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

from ragapp.errors import TestSetFullError, write_failure
from ragapp.jsonfile import write_replacing
from ragapp.query.threshold import EVAL_FOLDER
from ragapp.text import detect_language

SET_FILE = "testset.jsonl"
MAX_SET_BYTES = 20_000_000
MAX_ITEMS = 10_000
MAX_QUESTION_CHARS = 2_000
MAX_FIELD_CHARS = 2_000  # an answer kept as a reference, a source's name, a sentence
# Verdicts kept per knowledge base: past it the oldest go, so clicks can never fill the set.
MAX_FEEDBACK = 1_000
# On an answer: "good", "bad", "should_refuse"; on a refusal: "right_refusal", "should_answer".
VERDICTS = ("good", "bad", "should_refuse", "right_refusal", "should_answer")
REFUSE_VERDICTS = ("should_refuse", "right_refusal")


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
    verdict: str = ""  # feedback: one of VERDICTS
    reference: str = ""  # feedback: the answer the verdict was given on
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        if not self.question.strip() or len(self.question) > MAX_QUESTION_CHARS:
            raise ValueError(f"a question must have 1 to {MAX_QUESTION_CHARS} characters")
        for name in ("source", "sentence", "reference"):
            if len(getattr(self, name)) > MAX_FIELD_CHARS:
                raise ValueError(f"{name!r} may have at most {MAX_FIELD_CHARS} characters")
        if len(self.answers) > 50 or any(len(a) > MAX_FIELD_CHARS for a in self.answers):
            raise ValueError(f"at most 50 answers of at most {MAX_FIELD_CHARS} characters each")
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
        header = {"ragapp_test_set": 1, "hidden": list(self.hidden), "writer": self.writer, "created_at": self.created_at}
        rows = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in [header] + [asdict(i) for i in self.items])
        try:
            write_replacing(path, rows.encode("utf-8"))
        except OSError as exc:
            raise write_failure("the test set", path.parent, exc, "the previous test set") from exc
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
    """Keep a verdict on a reply as a test case of the knowledge base in `folder`. On an answer: "good" (the
    answer is the reference a later answer is held to), "bad" (it must not come back), "should_refuse";
    on a refusal: "right_refusal" (it must be refused again), "should_answer" (the documents hold it). Appended
    to the set; past MAX_FEEDBACK verdicts (or the set's own limits) the oldest verdicts go, so the set
    never grows into one its reader refuses. TestSetFullError when it holds no verdict to let go."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    reference = answer[:MAX_FIELD_CHARS] if verdict in ("good", "bad") else ""  # a refusal is no reference answer
    item = TestItem(question=question, expect="refuse" if verdict in REFUSE_VERDICTS else "answer", origin="feedback",
                    verdict=verdict, reference=reference, source=(sources[0] if sources else "")[:MAX_FIELD_CHARS])
    line = (json.dumps(asdict(item), ensure_ascii=False) + "\n").encode("utf-8")
    path = set_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".testset.lock", "a") as lock:  # two clicks at once both land
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = _readable_set(path)
        feedback = [i for i in current.items if i.origin == "feedback"]
        size = path.stat().st_size if path.exists() else 0
        if len(feedback) < MAX_FEEDBACK and len(current.items) < MAX_ITEMS and size + len(line) + 1 <= MAX_SET_BYTES:
            _append(path, line)
            return item
        _make_room(current, feedback, len(line), path)
        current.items.append(item)
        current.save(path)
    return item


def _readable_set(path: Path) -> TestSet:
    if not path.exists():
        return TestSet(items=[])
    try:
        return read_set(path)
    except ValueError as exc:
        raise TestSetFullError(f"{exc}; edit or remove {path.name} to keep feedback again") from None


def _append(path: Path, line: bytes) -> None:
    with open(path, "ab+") as out:
        if out.tell() == 0:  # a new set: its header first
            out.write((json.dumps({"ragapp_test_set": 1, "hidden": [], "writer": "", "created_at": time.time()}) + "\n").encode())
        else:
            out.seek(-1, os.SEEK_END)
            if out.read(1) != b"\n":  # a hand-edited last line without its newline
                out.write(b"\n")
        out.write(line)


def _make_room(current: TestSet, feedback: list[TestItem], incoming: int, path: Path) -> None:
    """Drop the oldest verdicts until one more fits within MAX_FEEDBACK, MAX_ITEMS and MAX_SET_BYTES."""
    sizes = {i.id: len(json.dumps(asdict(i), ensure_ascii=False).encode("utf-8")) + 1 for i in current.items}
    total = sum(sizes.values()) + 200 + incoming  # 200: the header line
    dropped: set[str] = set()
    for old in feedback:
        kept = len(feedback) - len(dropped)
        if kept < MAX_FEEDBACK and len(current.items) - len(dropped) < MAX_ITEMS and total <= MAX_SET_BYTES:
            break
        dropped.add(old.id)
        total -= sizes[old.id]
    if len(current.items) - len(dropped) >= MAX_ITEMS or total > MAX_SET_BYTES:
        raise TestSetFullError(f"{path.name} is full ({len(current.items)} questions, the limit {MAX_ITEMS}, "
                               f"{MAX_SET_BYTES // 1_000_000} MB) and holds no feedback to let go; remove some of its questions")
    current.items = [i for i in current.items if i.id not in dropped]

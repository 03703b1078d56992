"""A watched folder under a stream of changes, and a running `ragapp serve --watch` checked against it
(tests/test_watch.py in seconds, bench/watch.py `long` over 15 minutes).

Every note carries a code word of its own (a made-up word no other note has), so a search hit shows
which version of which file it came from: a hit from a file deleted or renamed away, or holding a code
word its file was edited away from, after a sync that began later than that change, is a stale answer.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SYLLABLES = ("ka", "lo", "mi", "ren", "tu", "vex", "zor", "pal", "qui", "bra", "nod", "fes", "gul", "hin", "jot", "wem")
KINDS = ("create", "edit", "rename", "delete")
WEIGHTS = (35, 30, 15, 20)


def _word(rng: random.Random, taken: set[str]) -> str:
    """A code word nobody used before in this run."""
    while True:
        word = "".join(rng.choice(SYLLABLES) for _ in range(4))
        if word not in taken:
            taken.add(word)
            return word


@dataclass
class Churn:
    """A folder of notes changed at random, one change per `step()`; what the folder holds is known."""

    folder: Path
    seed: int = 7
    files: dict[str, str] = field(default_factory=dict)  # relative path -> its code word now
    gone: list[tuple[str, str, float]] = field(default_factory=list)  # (path, code word, when) no longer so
    counts: dict[str, int] = field(default_factory=dict)
    current: tuple[str, ...] = ()  # the code words now, replaced whole after each change (read by other threads)
    last_change: float = 0.0  # time.time() of the last change

    def __post_init__(self) -> None:
        self.rng, self._taken, self._n = random.Random(self.seed), set(), 0
        for sub in ("a", "b"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)

    def _write(self, rel: str) -> None:
        word = _word(self.rng, self._taken)
        text = (f"# Note {self._n}\n\nThe code word of this note is {word}. It was written for the churn test "
                f"and names the {self.rng.choice(['harbour', 'orchard', 'quarry', 'lighthouse'])} of {word}.\n")
        path = self.folder / rel
        tmp = path.with_name("." + path.name + ".part")  # hidden: the watcher ignores it until the rename
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        self.files[rel] = word

    def seed_files(self, n: int) -> None:
        """Write `n` notes before anything watches."""
        for _ in range(n):
            self._create()
        self.current = tuple(self.files.values())

    def _create(self) -> None:
        self._n += 1
        self._write(f"{self.rng.choice('ab')}/note_{self._n}.md")

    def step(self) -> str:
        """Make one change (create, edit, rename or delete; a create when the folder is nearly empty)."""
        kind = self.rng.choices(KINDS, WEIGHTS)[0] if len(self.files) > 5 else "create"
        now = time.time()
        if kind == "create":
            self._create()
        else:
            rel = self.rng.choice(sorted(self.files))
            word = self.files.pop(rel)
            if kind == "edit":
                self._n += 1
                self._write(rel)
                self.gone.append(("", word, now))  # the file stays; its old words must go
            elif kind == "rename":
                self._n += 1
                new = f"{self.rng.choice('ab')}/note_{self._n}.md"
                (self.folder / rel).replace(self.folder / new)
                self.files[new] = word
                self.gone.append((rel, "", now))
            else:
                (self.folder / rel).unlink()
                self.gone.append((rel, word, now))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.last_change = time.time()
        self.current = tuple(self.files.values())
        return kind

    def digests(self) -> dict[str, str]:
        """sha256 of every note in the folder now, by relative path."""
        return {rel: hashlib.sha256((self.folder / rel).read_bytes()).hexdigest() for rel in self.files}


def relative(source: str) -> str:
    """A served source as a path inside the watched folder ("a/note_3.md")."""
    return "/".join(source.replace("\\", "/").split("/")[-2:])


@dataclass
class StaleCheck:
    """Searches a served knowledge base again and again and records every hit that a finished sync should
    have removed. A change counts as synced once two syncs have ended since it was made (the second
    began after the first ended, so after the change)."""

    client: httpx.Client
    kb: str
    churn: Churn
    stale: list[str] = field(default_factory=list)
    searches: int = 0
    answers: int = 0
    errors: list[str] = field(default_factory=list)  # replies other than 200, with their message
    synced: int = 0  # the most changes a search was checked against (0: the check never bit)
    _marks: list[tuple[int, int]] = field(default_factory=list)  # (index into churn.gone, syncs seen after it)
    _last: int = 0  # syncs ended when the last change had been made

    def syncs(self) -> int:
        return int(self.client.get(f"/v1/knowledge_bases/{self.kb}/watch").json()["watch"]["batches"])

    def settled(self) -> bool:
        """True once every change is in: a sync ended after the last change, which is old enough for its
        event to have reached the watcher (a sync that began before it would leave it pending), and
        nothing is pending."""
        if time.time() - self.churn.last_change < 2.0:
            return False
        state = self.client.get(f"/v1/knowledge_bases/{self.kb}/watch").json()["watch"]
        return state["batches"] > self._last and state["state"] == "idle" and state["pending"] == 0

    def changed(self) -> None:
        """Call right after each `churn.step()`: notes how many syncs had ended by then."""
        done = self._last = self.syncs()
        while len(self._marks) < len(self.churn.gone):
            self._marks.append((len(self._marks), done))

    def search(self, query: str) -> None:
        """One search; any hit from a change that has been synced is recorded as stale."""
        done = self.syncs()
        hits = self.client.post("/v1/search", json={"knowledge_base": self.kb, "query": query, "top_k": 8}).json()["data"]
        self.searches += 1
        self._check(query, done, [(h["source"], h["text"]) for h in hits])

    def ask(self, question: str) -> None:
        """One chat completion; any citation of a change that has been synced is recorded as stale."""
        done = self.syncs()
        body = {"model": self.kb, "messages": [{"role": "user", "content": question}]}
        reply = self.client.post("/v1/chat/completions", json=body)
        if reply.status_code != 200:
            self.errors.append(f"{question!r}: {reply.status_code} {reply.text[:300]}")
            return
        self.answers += 1
        self._check(question, done, [(c["source"], c["quote"]) for c in reply.json()["citations"]])

    def _check(self, query: str, done: int, found: list[tuple[str, str]]) -> None:
        synced = [self.churn.gone[i] for i, seen in self._marks if done >= seen + 2]
        self.synced = max(self.synced, len(synced))
        old_paths = {p for p, _, _ in synced if p}  # deleted or renamed away: names are never used again
        old_words = {w for _, w, _ in synced if w}  # deleted or edited away
        for source, text in found:
            where = relative(source)
            if where in old_paths or any(w in text for w in old_words):
                self.stale.append(f"{query!r} -> {where}: {text[:80]!r}")

    def question(self) -> str:
        """A question about a note: half the time one whose code word went away, else a current one."""
        rng = random.Random()
        gone = [w for _, w, _ in self.churn.gone[-50:] if w]
        words = gone if gone and rng.random() < 0.5 else list(self.churn.current)
        return f"Which note names the harbour of {rng.choice(words)}?" if words else "Which note names the harbour?"


def run_in_thread(target, stop: threading.Event) -> threading.Thread:
    """`target()` again and again in a daemon thread until `stop` is set."""

    def loop() -> None:
        while not stop.is_set():
            target()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread

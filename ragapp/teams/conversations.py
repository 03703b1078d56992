"""Each person's saved conversations (the only reader and writer of `.ragapp/conversations.db` under
the knowledge root): listed, reopened, deleted, exported as Markdown or JSON. Every query names the
user, so nobody reads another's; each person keeps at most `max_conversations` (the oldest go) of at
most `max_turns` turns."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from pathlib import Path

from ragapp.teams.sqlite import opened

STORE = Path(".ragapp") / "conversations.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, user TEXT NOT NULL, kb TEXT NOT NULL, title TEXT NOT NULL,
                                          created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS by_user ON conversations (user, updated);
CREATE TABLE IF NOT EXISTS turns (conversation TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
                                  n INTEGER NOT NULL, at REAL NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL,
                                  answered INTEGER NOT NULL, citations TEXT NOT NULL, PRIMARY KEY (conversation, n));
"""


class Conversations:
    """Saved conversations under one knowledge root."""

    def __init__(self, root: str | Path, max_conversations: int = 200, max_turns: int = 100) -> None:
        self.path = Path(root) / STORE
        self.max_conversations, self.max_turns = max_conversations, max_turns

    def _db(self):
        return opened(self.path, _SCHEMA)

    def add_turn(self, user: str, kb: str, conversation: str, question: str, answer: str, answered: bool,
                 citations: list[dict]) -> str:
        """Save one turn into `conversation` of `user` (a new one when empty or not theirs); its id."""
        now = time.time()
        with self._db() as db:
            if not conversation or not self._owned(db, user, conversation):
                conversation = secrets.token_hex(8)
                db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?)", (conversation, user, kb, question[:120], now, now))
                self._trim_conversations(db, user)
            n = db.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM turns WHERE conversation = ?", (conversation,)).fetchone()[0]
            db.execute("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?)", (conversation, n, now, question, answer, int(answered),
                                                                         json.dumps(citations, ensure_ascii=False)))
            db.execute("DELETE FROM turns WHERE conversation = ? AND n <= ?", (conversation, n - self.max_turns))
            db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation))
        return conversation

    def list(self, user: str) -> list[dict]:
        """`user`'s conversations, the latest first: id, knowledge base, title, turns, times."""
        with self._db() as db:
            rows = db.execute("SELECT c.id, c.kb, c.title, c.created, c.updated, COUNT(t.n) FROM conversations c "
                              "LEFT JOIN turns t ON t.conversation = c.id WHERE c.user = ? GROUP BY c.id "
                              "ORDER BY c.updated DESC", (user,)).fetchall()
        return [{"id": i, "knowledge_base": kb, "title": t, "created": c, "updated": u, "turns": n} for i, kb, t, c, u, n in rows]

    def get(self, user: str, conversation: str) -> dict | None:
        """One of `user`'s conversations with its turns (None: no such conversation of theirs)."""
        with self._db() as db:
            row = db.execute("SELECT id, kb, title, created, updated FROM conversations WHERE id = ? AND user = ?",
                             (conversation, user)).fetchone()
            if row is None:
                return None
            turns = db.execute("SELECT at, question, answer, answered, citations FROM turns WHERE conversation = ? ORDER BY n",
                               (conversation,)).fetchall()
        return {"id": row[0], "knowledge_base": row[1], "title": row[2], "created": row[3], "updated": row[4],
                "turns": [{"at": at, "question": q, "answer": a, "answered": bool(ok), "citations": json.loads(c)}
                          for at, q, a, ok, c in turns]}

    def delete(self, user: str, conversation: str) -> bool:
        with self._db() as db:
            return db.execute("DELETE FROM conversations WHERE id = ? AND user = ?", (conversation, user)).rowcount > 0

    @staticmethod
    def _owned(db: sqlite3.Connection, user: str, conversation: str) -> bool:
        return db.execute("SELECT 1 FROM conversations WHERE id = ? AND user = ?", (conversation, user)).fetchone() is not None

    def _trim_conversations(self, db: sqlite3.Connection, user: str) -> None:
        db.execute("DELETE FROM conversations WHERE id IN (SELECT id FROM conversations WHERE user = ? "
                   "ORDER BY updated DESC LIMIT -1 OFFSET ?)", (user, self.max_conversations))


def markdown(conversation: dict) -> str:
    """A conversation as Markdown: each question, its answer, and its numbered citations (file, page, quote)."""
    lines = [f"# {conversation['title']}", "", f"Knowledge base: {conversation['knowledge_base']}", ""]
    for turn in conversation["turns"]:
        lines += [f"## {turn['question']}", "", turn["answer"], ""]
        for n, c in enumerate(turn["citations"], start=1):
            page = f", page {c['page']}" if c.get("page") is not None else ""
            quote = " ".join(str(c.get("quote", "")).split())
            lines.append(f"{n}. {c.get('file') or c.get('source', '')}{page}: \"{quote}\"")
        lines.append("")
    return "\n".join(lines)

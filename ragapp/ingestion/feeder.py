"""Chunks to index rows in batches: each distinct text embedded once, then written through."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from ragapp.embed import Embedder
from ragapp.index import IndexReader, IndexWriter, text_hash
from ragapp.records import Chunk
from ragapp.terms import Tokenizer

# progress(stage, item, done, total): stage is "scan", "read", "embed" or "commit".
Progress = Callable[[str, str, int, int], None]


class Feeder:
    """Turns chunks into index rows in batches: each distinct text is embedded once (or its vectors
    reused from the old index, or shared with a row already written), then written through.

    Batches run across file boundaries (many small files still embed 64 chunks at a time); a file
    that fails loses only its own chunks: those still queued are dropped, those written are rolled
    back to the writer mark taken just before its first chunk.
    """

    def __init__(self, writer: IndexWriter, embedder: Embedder, tokenizer: Tokenizer, old: IndexReader | None,
                 batch: int, stage: dict[str, float], tell: Progress) -> None:
        self.writer, self.embedder, self.tokenizer, self.old = writer, embedder, tokenizer, old
        self.batch, self.stage, self.tell = batch, stage, tell
        self.pending: list[Chunk] = []
        self.embedded = 0
        self.queued = 0  # chunks ever queued
        self.written = 0  # chunks ever written
        self.file_start = 0  # number of the current file's first chunk
        self.file_mark: Hashable | None = None

    def begin_file(self) -> None:
        """The chunks added from now on are one file's, until the next begin_file."""
        self.file_start = self.queued
        self.file_mark = None if self.pending else self.writer.mark()

    def file_chunks(self) -> int:
        """Chunks of the current file so far."""
        return self.queued - self.file_start

    def drop_file(self) -> None:
        """Forget the current file's chunks, queued or written."""
        unwritten = self.queued - max(self.written, self.file_start)
        del self.pending[len(self.pending) - unwritten :]
        if self.written > self.file_start:
            self.writer.rollback(self.file_mark)
            self.written = self.file_start
        self.queued = self.file_start

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Queue chunks; full batches are written at once."""
        self.pending.extend(chunks)
        self.queued += len(chunks)
        while len(self.pending) >= self.batch:
            part, self.pending = self.pending[: self.batch], self.pending[self.batch :]
            self._write(part)

    def flush(self) -> None:
        """Write what is queued."""
        part, self.pending = self.pending, []
        if part:
            self._write(part)

    def _old_row(self, h: str, chunk: Chunk) -> int | None:
        """A row of the previous index with this text cut into the same sentences (vectors reused)."""
        return self.old.row_of_text(h, chunk.sentences) if self.old is not None else None

    def _embed(self, chunks: list[Chunk], hashes: list[str]) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
        """Vectors for each text neither written already nor in the previous index, embedded once."""
        todo: dict[tuple[str, int], Chunk] = {}
        for h, c in zip(hashes, chunks):
            if not self.writer.has(h, c.sentences) and self._old_row(h, c) is None:
                todo.setdefault((h, hash(c.sentences)), c)
        if not todo:
            return {}
        t0 = time.perf_counter()
        texts = list(todo.values())
        vecs, sents = self.embedder.embed_chunks([c.text for c in texts], [c.sentences for c in texts])
        offsets = np.concatenate([[0], np.cumsum([len(c.sentences) for c in texts])])
        self.stage["embed"] += time.perf_counter() - t0
        self.embedded += len(texts)
        self.tell("embed", chunks[0].source, self.embedded, 0)
        return {key: (vecs[k], sents[offsets[k] : offsets[k + 1]]) for k, key in enumerate(todo)}

    def _write(self, chunks: list[Chunk]) -> None:
        t0 = time.perf_counter()
        embed_before = self.stage["embed"]
        hashes = [text_hash(c.text) for c in chunks]
        fresh = self._embed(chunks, hashes)
        tokens = self.tokenizer.batch([c.text for c in chunks])
        for chunk, h, toks in zip(chunks, hashes, tokens):
            if self.written == self.file_start and self.file_mark is None:
                self.file_mark = self.writer.mark()
            self.written += 1
            vectors = fresh.get((h, hash(chunk.sentences)))
            if self.writer.has(h, chunk.sentences):
                self.writer.add(chunk, h, toks)
            elif vectors is not None:
                self.writer.add(chunk, h, toks, *vectors)
            else:
                row = self._old_row(h, chunk)
                assert self.old is not None and row is not None  # a text neither new nor embedded now is an old row's
                self.writer.add(chunk, h, toks, self.old.vector(row), self.old.chunk_sentence_vectors(row))
        self.stage["index"] += time.perf_counter() - t0 - (self.stage["embed"] - embed_before)

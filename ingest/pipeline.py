"""The ingestion pipeline: scan folders → load → split → embed → index, incrementally and atomically.

Only files whose content hash changed are re-read; chunks whose text is already in the index
reuse their vectors; files that vanished from the given folders leave the index; everything
else stays as it was. Files are streamed a batch of chunks at a time into a new generation
(ragapp.index.GenerationWriter), so memory does not grow with their size; the new state becomes
visible in one atomic commit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ragapp.config import Config
from ragapp.embed import Embedder, embedding_record
from ragapp.errors import DocumentError, NoDocumentsError
from ragapp.index import (
    FileRecord,
    GenerationWriter,
    Index,
    Manifest,
    check_compatible,
    file_sha256,
    text_hash,
    write_lock,
)
from ragapp.load import SUPPORTED_SUFFIXES, iter_pages
from ragapp.sandbox import Limits
from ragapp.split import split_text
from ragapp.tokenize import Tokenizer
from ragapp.types import Chunk, FileFailure, IngestReport

# progress(stage, item, done, total): stage is "scan", "read", "embed" or "commit".
Progress = Callable[[str, str, int, int], None]

_SKIPPED_NAMES = (".DS_Store", "Thumbs.db")


def is_skipped(name: str) -> bool:
    """Hidden files, editor swap/backup files and OS litter are skipped by default."""
    return (name.startswith(".") or name.startswith("~$") or name.endswith("~") or name.endswith((".swp", ".swo", ".tmp"))
            or name in _SKIPPED_NAMES)


@dataclass
class Scan:
    """What a walk of the given paths found."""

    files: list[Path]  # supported documents, each once
    roots: list[Path]  # the given paths, resolved
    problems: list[FileFailure]  # what could not be walked or was not followed, with the reason
    unreadable: list[Path]  # folders and files that could not be listed or stat'ed: their documents stay indexed


def scan(paths: Sequence[str | Path], follow_symlinks: bool = False) -> Scan:
    """Supported files under the given paths, recursively. Symlinked folders are not followed; a
    symlinked file is followed only when its target lies under the same given path, or with
    `follow_symlinks`."""
    found = Scan([], [], [], [])
    files: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise NoDocumentsError(f"{raw}: no such file or directory")
        root = path.resolve()
        found.roots.append(root)
        if path.is_file():
            files[root] = None
            continue

        def on_error(exc: OSError) -> None:
            found.problems.append(FileFailure(str(exc.filename), f"cannot list folder ({exc.strerror}); "
                                                                 "its documents stay in the index"))
            found.unreadable.append(Path(exc.filename))

        for folder, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not is_skipped(d))
            for name in sorted(filenames):
                if is_skipped(name) or not name.lower().endswith(SUPPORTED_SUFFIXES):
                    continue
                file = Path(folder) / name
                try:
                    if not file.is_file():
                        continue
                    if file.is_symlink():
                        target = file.resolve()
                        if not (follow_symlinks or target.is_relative_to(root)):
                            found.problems.append(FileFailure(str(file), f"symlink to {target}, outside {root}; not "
                                                                         "followed (use --follow-symlinks)"))
                            continue
                        file = target
                    files[file] = None
                except OSError as exc:
                    found.problems.append(FileFailure(str(file), f"cannot stat ({exc.strerror})"))
                    found.unreadable.append(file)
    found.files = list(files)
    return found


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError:  # gone since it was read
        return 0


def _under(source: str, roots: Iterable[Path]) -> bool:
    p = Path(source)
    return any(p == r or r in p.parents for r in roots)


class _Feeder:
    """Turns chunks into index rows in batches: each distinct text is embedded once (or its vectors
    reused from the old index, or shared with a row already written), then written through.

    Batches run across file boundaries (many small files still embed 64 chunks at a time); a file
    that fails loses only its own chunks: those still queued are dropped, those written are rolled
    back to the writer mark taken just before its first chunk.
    """

    def __init__(self, writer: GenerationWriter, embedder: Embedder, tokenizer: Tokenizer, old: Index | None,
                 batch: int, stage: dict[str, float], tell: Progress) -> None:
        self.writer, self.embedder, self.tokenizer, self.old = writer, embedder, tokenizer, old
        self.batch, self.stage, self.tell = batch, stage, tell
        # Vectors are reused for the same text cut into the same sentences.
        self.old_rows: dict[tuple[str, int], int] = {}
        if old is not None:
            for row, (h, chunk) in enumerate(zip(old.hashes, old.chunks)):
                self.old_rows.setdefault((h, hash(chunk.sentences)), row)
        self.pending: list[Chunk] = []
        self.embedded = 0
        self.queued = 0  # chunks ever queued
        self.written = 0  # chunks ever written
        self.file_start = 0  # number of the current file's first chunk
        self.file_mark: tuple[int, int, int] | None = None

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

    def _write(self, chunks: list[Chunk]) -> None:
        t0 = time.perf_counter()
        writer = self.writer
        hashes = [text_hash(c.text) for c in chunks]
        keys = [(h, hash(c.sentences)) for h, c in zip(hashes, chunks)]
        todo: dict[tuple[str, int], int] = {}
        for i, (h, key) in enumerate(zip(hashes, keys)):
            if not writer.has(h, chunks[i].sentences) and key not in self.old_rows:
                todo.setdefault(key, i)
        fresh: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        embed_seconds = 0.0
        if todo:
            t1 = time.perf_counter()
            rows = list(todo.values())
            vecs, sents = self.embedder.embed_chunks([chunks[i].text for i in rows], [chunks[i].sentences for i in rows])
            offsets = np.concatenate([[0], np.cumsum([len(chunks[i].sentences) for i in rows])])
            for k, i in enumerate(rows):
                fresh[keys[i]] = (vecs[k], sents[offsets[k] : offsets[k + 1]])
            embed_seconds = time.perf_counter() - t1
            self.embedded += len(rows)
            self.tell("embed", chunks[0].source, self.embedded, 0)
        tokens = self.tokenizer.batch([c.text for c in chunks])
        for chunk, h, key, toks in zip(chunks, hashes, keys, tokens):
            if self.written == self.file_start and self.file_mark is None:
                self.file_mark = writer.mark()
            self.written += 1
            terms = writer.term_row(toks)
            if writer.has(h, chunk.sentences):
                writer.add(chunk, h, terms)
            elif key in fresh:
                writer.add(chunk, h, terms, *fresh[key])
            else:
                row = self.old_rows[key]
                writer.add(chunk, h, terms, self.old.vector(row), self.old.chunk_sentence_vectors(row))
        self.stage["embed"] += embed_seconds
        self.stage["index"] += time.perf_counter() - t0 - embed_seconds


def _limits(config: Config) -> Limits:
    ic = config.ingest
    return Limits(ic.pdf_timeout_s, ic.pdf_memory_mb, ic.pdf_max_pages, ic.pdf_max_chars)


def _chunks_of(file: Path, source: str, config: Config, count_tokens, stage: dict[str, float],
               warn: Callable[[str], None]) -> Iterator[list[Chunk]]:
    """The chunks of one file, a page (or streamed text segment) at a time. Every failure to read or
    split the file comes out as a DocumentError naming it; a lost part of it goes to `warn`."""
    split_cfg = config.split
    pages = iter_pages(file, source, int(config.ingest.max_file_mb * 1e6), limits=_limits(config), on_warning=warn)
    while True:
        try:
            t0 = time.perf_counter()
            page = next(pages, None)
            t1 = time.perf_counter()
            if page is None:
                return
            chunks = split_text(page.text, page.source, page.page, split_cfg.chunk_size, split_cfg.chunk_overlap,
                                count_tokens, page.offset)
        except (DocumentError, MemoryError):  # out of memory is the process's trouble, not one file's: never skipped
            raise
        except Exception as exc:  # a parser bug on one file must not stop the folder
            raise DocumentError(f"{source}: {type(exc).__name__}: {exc}") from exc
        stage["parse"] += t1 - t0
        stage["split"] += time.perf_counter() - t1
        yield chunks


def run(index_path: str | Path, paths: Sequence[str | Path], embedder: Embedder, tokenizer: Tokenizer, config: Config,
        rebuild: bool = False, wait: bool = True, progress: Progress | None = None,
        on_message: Callable[[str], None] | None = None, remove: Sequence[str] = ()) -> IngestReport:
    """Bring the index at `index_path` up to date with the files under `paths`, and drop the
    documents named in `remove` (sources as the index records them)."""
    started = time.perf_counter()
    report = IngestReport()
    stage = {"parse": 0.0, "split": 0.0, "embed": 0.0, "index": 0.0}
    report.stage_seconds = stage
    tell = progress or (lambda *a: None)
    index_path = Path(index_path)
    found = scan(paths, config.ingest.follow_symlinks)
    files, roots = found.files, found.roots
    report.failed.extend(found.problems)

    with write_lock(index_path, wait=wait, on_wait=on_message):
        old = None
        if not rebuild and (index_path / "manifest.json").exists():
            old = Index.open(index_path)
        if old is not None:
            check_compatible(old.manifest, embedding_record(embedder), index_path)
        known = old.manifest.files if old else {}
        unknown = [s for s in remove if s not in known]
        if unknown:
            raise NoDocumentsError(f"not in the index at {index_path}: {', '.join(unknown)}")
        if not files and not remove and not any(_under(s, roots) for s in known):
            raise NoDocumentsError(f"no supported documents ({', '.join(SUPPORTED_SUFFIXES)}) under {', '.join(map(str, paths))}")

        # 1. Which files changed.
        changed: list[tuple[Path, str, str]] = []  # (path, source, sha256)
        current: set[str] = set()
        for n, file in enumerate(files, start=1):
            source = str(file)
            current.add(source)
            tell("scan", source, n, len(files))
            try:
                digest = file_sha256(file)
            except OSError as exc:
                report.failed.append(FileFailure(source, f"cannot read ({exc.strerror or exc})"))
                continue
            if source in known and known[source].sha256 == digest:
                report.unchanged.append(source)
            else:
                changed.append((file, source, digest))
        # A document under a folder that could not be listed is not gone: it stays.
        removed = [s for s in known if s not in current and (s in remove or (_under(s, roots)
                                                                          and not _under(s, found.unreadable)))]
        report.chunks = len(old) if old else 0
        if not changed and not removed and old is not None:
            report.seconds = time.perf_counter() - started
            return report

        # 2. Stream each changed file through load → split → embed → the new generation's files.
        #    A file that fails half way is rolled back; the rest of the folder goes on.
        with GenerationWriter(index_path, embedder.dimension, old.bm25.vocab if old else None) as writer:
            feeder = _Feeder(writer, embedder, tokenizer, old, max(1, config.embed.batch_size * 4), stage, tell)
            records: dict[str, FileRecord] = {}
            for n, (file, source, digest) in enumerate(changed, start=1):
                tell("read", source, n, len(changed))
                feeder.begin_file()
                warnings: list[FileFailure] = []
                try:
                    for chunks in _chunks_of(file, source, config, embedder.count_tokens, stage,
                                             lambda m, s=source: warnings.append(FileFailure(s, m))):
                        feeder.add(chunks)
                except DocumentError as exc:
                    feeder.drop_file()
                    report.failed.append(FileFailure(source, str(exc).removeprefix(f"{source}: ")))
                    continue
                report.warnings.extend(warnings)
                (report.updated if source in known else report.added).append(source)
                records[source] = FileRecord(sha256=digest, size=_size(file), chunks=feeder.file_chunks(),
                                             ingested_at=time.time())
            feeder.flush()
            report.chunks_added = feeder.embedded
            if not records and not removed and old is not None:
                report.seconds = time.perf_counter() - started
                return report

            # 3. Carry over the old index's rows for files that stay.
            t0 = time.perf_counter()
            tell("commit", str(index_path), 0, 1)
            drop = set(removed) | set(records)
            if old is not None:
                counts = old.bm25.counts
                for row, (chunk, h) in enumerate(zip(old.chunks, old.hashes)):
                    if chunk.source in drop:
                        continue
                    a, b = counts.indptr[row], counts.indptr[row + 1]
                    terms = (counts.indices[a:b], counts.data[a:b])
                    if writer.has(h, chunk.sentences):
                        writer.add(chunk, h, terms)
                    else:
                        writer.add(chunk, h, terms, old.vector(row), old.chunk_sentence_vectors(row))

            # 4. Commit: the new generation becomes current in one rename.
            if old is not None:
                manifest = old.manifest
            else:
                manifest = Manifest(
                    embedding=embedding_record(embedder),
                    split=asdict(config.split),
                    bm25={"k1": config.bm25.k1, "b": config.bm25.b, "epsilon": config.bm25.epsilon, **tokenizer.settings()},
                )
            files_state = {s: r for s, r in manifest.files.items() if s not in drop}
            files_state.update(records)
            manifest.files = dict(sorted(files_state.items()))
            writer.commit(manifest)
            stage["index"] += time.perf_counter() - t0
            tell("commit", str(index_path), 1, 1)

    report.removed = removed
    report.chunks = writer.rows
    report.seconds = time.perf_counter() - started
    return report

"""The ingestion pipeline: scan folders → load → split → embed → index, incrementally and atomically.

Only files whose content hash changed are re-read; chunks whose text is already in the index
reuse their vectors; files that vanished from the given folders leave the index; everything
else stays as it was. Files are streamed a batch of chunks at a time into the index backend's
writer, so memory does not grow with their size; the new state becomes visible in one atomic
commit. Every setting that shapes the index is checked against the index first: an index is
never extended with chunks cut, embedded or tokenised differently.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ragapp.config import BM25Config, Config
from ragapp.digest import file_sha256
from ragapp.embed import Embedder, embedding_record
from ragapp.errors import DocumentError, IndexWriteError, NoDocumentsError
from ragapp.index import FileRecord, IndexBackend, IndexReader, IndexWriter, Manifest, check_settings, index_settings
from ragapp.ingestion.beside import Beside
from ragapp.ingestion.feeder import Feeder, Progress
from ragapp.ingestion.scan import Scan, file_size, is_under, scan
from ragapp.load import SUPPORTED_SUFFIXES, iter_pages
from ragapp.records import Chunk, FileFailure, IngestReport
from ragapp.split import split_page
from ragapp.terms import Tokenizer
from ragapp.text import shown

Changed = list[tuple[Path, str, str, dict[str, int]]]  # (path, source, sha256, stat mark)
_RACY_NS = 1_000_000_000


@dataclass(frozen=True)
class _Request:
    """What one run was asked beyond its paths: documents to drop, files to leave as they are this time
    (still being written), files to hash even when their stat is as recorded (a watcher saw them change)."""

    remove: frozenset[str] = frozenset()
    hold: frozenset[str] = frozenset()
    rehash: frozenset[str] = frozenset()


def bm25_settings(config: BM25Config, tokenizer: Tokenizer) -> dict:
    """What the manifest records about BM25: its parameters and how text was tokenised."""
    return {"k1": config.k1, "b": config.b, "epsilon": config.epsilon, **tokenizer.settings()}


def _chunks_of(file: Path, source: str, config: Config, count_tokens, stage: dict[str, float],
               warn: Callable[[str], None], beside: Beside) -> Iterator[list[Chunk]]:
    """The chunks of one file, a page (or streamed text segment) at a time; the pages' tables and
    geometry go to `beside`. Every failure to read or split the file comes out as a DocumentError naming it; a lost
    part of it goes to `warn`."""
    split_cfg = config.split
    pages = iter_pages(file, source, int(config.ingest.max_file_mb * 1e6), limits=config.ingest, on_warning=warn)
    while True:
        try:
            t0 = time.perf_counter()
            page = next(pages, None)
            t1 = time.perf_counter()
            if page is None:
                return
            chunks = split_page(page, split_cfg.chunk_size, split_cfg.chunk_overlap, count_tokens)
            beside.add(page)
        except (DocumentError, IndexWriteError, MemoryError):  # a full disk or memory is the run's trouble, not one file's
            raise
        except Exception as exc:  # a parser bug on one file must not stop the folder
            raise DocumentError(f"{source}: {type(exc).__name__}: {exc}") from exc
        stage["parse"] += t1 - t0
        stage["split"] += time.perf_counter() - t1
        yield chunks


def _check_request(found: Scan, known: Mapping[str, FileRecord], remove: Sequence[str], paths: Sequence, where: str) -> None:
    unknown = [s for s in remove if s not in known]
    if unknown:
        raise NoDocumentsError(f"not in the index at {where}: {', '.join(unknown)}")
    if not found.files and not remove and not any(is_under(s, found.roots) for s in known):
        raise NoDocumentsError(_nothing_to_read(found, paths))


def _nothing_to_read(found: Scan, paths: Sequence) -> str:
    """Why a request holds no document, naming the files of other formats it does hold."""
    where = ", ".join(map(str, paths))
    if not found.unsupported:
        return f"no supported documents ({', '.join(SUPPORTED_SUFFIXES)}) under {where}"
    names = ", ".join(shown(p.name) for p in found.unsupported[:10]) + (", …" if len(found.unsupported) > 10 else "")
    return (f"no supported documents under {where}: {len(found.unsupported)} file(s) of formats ragapp does not read "
            f"({names}); it reads {', '.join(SUPPORTED_SUFFIXES)}")


def _stat_mark(st: os.stat_result) -> dict[str, int]:  # FileRecord's mtime_ns, ctime_ns and inode
    """The stat kept with a file's hash, so the next ingest can skip hashing it; nothing for a file
    written in the last second, whose next change could carry the same coarse timestamps (git's
    "racy clean" rule): it is hashed again next time."""
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_NS:
        return {}
    return {"mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def _plan(found: Scan, known: Mapping[str, FileRecord], request: _Request, report: IngestReport,
          tell: Progress) -> tuple[Changed, list[str], dict[str, FileRecord]]:
    """Which files changed (by content hash; a file whose size, mtime, ctime and inode are as recorded
    is not read), which indexed documents leave the index, and which unchanged files' records get
    their current stat."""
    changed: Changed = []
    refreshed: dict[str, FileRecord] = {}
    for n, file in enumerate(found.files, start=1):
        source = str(file)
        tell("scan", source, n, len(found.files))
        if source in request.hold:
            continue
        record = known.get(source)
        try:
            st = file.stat()
            if record is not None and source not in request.rehash and record.same_stat(st):
                report.unchanged.append(source)
                continue
            digest = file_sha256(file)
        except OSError as exc:
            report.failed.append(FileFailure(source, f"cannot read ({exc.strerror or exc})"))
            continue
        report.hashed += 1
        mark = _stat_mark(st)
        if record is not None and record.sha256 == digest:
            report.unchanged.append(source)
            if mark and not record.same_stat(st):
                refreshed[source] = replace(record, size=st.st_size, mtime_ns=mark["mtime_ns"], ctime_ns=mark["ctime_ns"],
                                            inode=mark["inode"])
        else:
            changed.append((file, source, digest, mark))
    current = {str(f) for f in found.files}
    # A document under a folder that could not be listed is not gone: it stays; so does a held one.
    removed = [s for s in known if s not in current and s not in request.hold and (
        s in request.remove or (is_under(s, found.roots) and not is_under(s, found.unreadable)))]
    return changed, removed, refreshed


def _stream(changed: Changed, feeder: Feeder, config: Config, count_tokens, known: Mapping[str, FileRecord],
            report: IngestReport, tell: Progress, beside: Beside) -> dict[str, FileRecord]:
    """Each changed file through load → split → embed → the writer (its tables and pages → `beside`); a file
    that fails half way is rolled back and the rest of the folder goes on; one another writer holds
    is left to it."""
    records: dict[str, FileRecord] = {}
    for n, (file, source, digest, mark) in enumerate(changed, start=1):
        tell("read", source, n, len(changed))
        if not feeder.writer.claim(source, digest):
            report.taken.append(source)
            continue
        feeder.begin_file()
        beside.begin_file(source, digest)
        warnings: list[FileFailure] = []
        ocr_pages: set[int | None] = set()
        try:
            def warn(message: str, source: str = source) -> None:
                warnings.append(FileFailure(source, message))

            for chunks in _chunks_of(file, source, config, count_tokens, report.stage_seconds, warn, beside):
                ocr_pages.update(c.page for c in chunks if c.ocr)
                feeder.add(chunks)
            beside.end_file()
        except IndexWriteError:  # the disk is full: the run stops; this file's rows beside the index go first
            beside.drop_file()
            raise
        except DocumentError as exc:
            feeder.drop_file()
            beside.drop_file()
            report.failed.append(FileFailure(source, str(exc).removeprefix(f"{source}: ")))
            continue
        report.warnings.extend(warnings)
        (report.updated if source in known else report.added).append(source)
        records[source] = FileRecord(sha256=digest, size=file_size(file), chunks=feeder.file_chunks(), ingested_at=time.time(),
                                     ocr_pages=len(ocr_pages), **mark)
    feeder.flush()
    return records


def _commit(writer: IndexWriter, old: IndexReader | None, settings: dict[str, dict], records: dict[str, FileRecord],
            removed: list[str], refreshed: dict[str, FileRecord], beside: Beside) -> list[str]:
    """The new state becomes current in one commit: old rows of files that stay are carried over. Then
    the tables and pages of files this run replaced or removed go. Returns the files of `records` that
    another writer committed instead (a shared Milvus collection)."""
    manifest = old.manifest if old is not None else Manifest(**settings)  # type: ignore[arg-type]
    drop = set(removed) | set(records)
    files = {s: r for s, r in manifest.files.items() if s not in drop}
    files.update(refreshed)
    files.update(records)
    manifest.files = dict(sorted(files.items()))
    committed = writer.commit(manifest, drop)
    beside.after_commit(removed, {s: r.sha256 for s, r in committed.files.items()})
    return [s for s in records if s not in committed.files]


def run(index: IndexBackend, paths: Sequence[str | Path], embedder: Embedder, tokenizer: Tokenizer, config: Config,
        rebuild: bool = False, wait: bool = True, progress: Progress | None = None,
        on_message: Callable[[str], None] | None = None, remove: Sequence[str] = (), hold: Collection[str] = (),
        rehash: Collection[str] = (), tables: Path | None = None, pages: Path | None = None) -> IngestReport:
    """Bring `index` up to date with the files under `paths`, and drop the documents named in
    `remove` (sources as the index records them). Files in `hold` (still being written) are neither
    read nor removed this time; files in `rehash` are hashed even when their stat is as recorded.
    With `tables` (a folder), the documents' tables are kept there too (ragapp.tables); with `pages`, where
    their pages' characters sit (ragapp.show)."""
    started = time.perf_counter()
    report = IngestReport(stage_seconds={"parse": 0.0, "split": 0.0, "embed": 0.0, "index": 0.0})
    tell = progress or (lambda *a: None)
    found = scan(paths, config.ingest.follow_symlinks)
    report.failed.extend(found.problems)
    if not found.files and not remove and not index.exists():  # before the lock: no empty index folder is made
        raise NoDocumentsError(_nothing_to_read(found, paths))
    with index.lock(wait, on_message):  # first: a waiting writer says so at once, before loading models
        settings = index_settings(embedding_record(embedder), asdict(config.split), bm25_settings(config.bm25, tokenizer))
        old = index.open() if not rebuild and index.exists() else None
        if old is not None:
            check_settings(old.manifest, settings, index.location)
        known = old.manifest.files if old is not None else {}
        _check_request(found, known, remove, paths, index.location)
        request = _Request(frozenset(remove), frozenset(map(str, hold)), frozenset(map(str, rehash)))
        changed, removed, refreshed = _plan(found, known, request, report, tell)
        report.chunks = len(old) if old is not None else 0
        if old is not None and not changed and not removed:
            return _finished(report, started)
        def problem(source: str, reason: str) -> None:
            report.warnings.append(FileFailure(source, reason))

        with index.writer(embedder.dimension, settings["bm25"], old, rebuild) as writer, _beside(tables, pages, problem) as beside:
            feeder = Feeder(writer, embedder, tokenizer, old, max(1, config.embed.batch_size * 4), report.stage_seconds, tell)
            records = _stream(changed, feeder, config, embedder.count_tokens, known, report, tell, beside)
            report.chunks_added = feeder.embedded
            if old is not None and not records and not removed:
                return _finished(report, started)
            t0 = time.perf_counter()
            tell("commit", index.location, 0, 1)
            for source in _commit(writer, old, settings, records, removed, refreshed, beside):
                (report.updated if source in report.updated else report.added).remove(source)
                report.taken.append(source)
            report.stage_seconds["index"] += time.perf_counter() - t0
            tell("commit", index.location, 1, 1)
    report.removed = removed
    report.chunks = writer.rows
    return _finished(report, started)


@contextmanager
def _beside(tables: Path | None, pages: Path | None, on_problem: Callable[[str, str], None]) -> Iterator[Beside]:
    """The run's stores beside the index, closed at the end."""
    beside = Beside(tables, pages, on_problem)
    try:
        yield beside
    finally:
        beside.close()


def _finished(report: IngestReport, started: float) -> IngestReport:
    report.seconds = time.perf_counter() - started
    return report

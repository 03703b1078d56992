"""The ingestion pipeline: scan folders → load → split → embed → index, incrementally and atomically.

Only files whose content hash changed are re-read; chunks whose text is already in the index
reuse their vectors; files that vanished from the given folders leave the index; everything
else stays as it was. The new state becomes visible in one atomic commit (ragapp.index.commit).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from scipy import sparse

from ragapp.bm25 import BM25Index, term_counts
from ragapp.config import Config
from ragapp.embed import Embedder
from ragapp.errors import DocumentError, NoDocumentsError
from ragapp.index import FileRecord, Index, Manifest, check_compatible, commit, file_sha256, text_hash, write_lock
from ragapp.load import SUPPORTED_SUFFIXES, load_file
from ragapp.split import split_pages
from ragapp.tokenize import Tokenizer
from ragapp.types import Chunk, FileFailure, IngestReport

# progress(stage, item, done, total): stage is "scan", "read", "embed" or "commit".
Progress = Callable[[str, str, int, int], None]

_SKIPPED_NAMES = (".DS_Store", "Thumbs.db")


def is_skipped(name: str) -> bool:
    """Hidden files, editor swap/backup files and OS litter are skipped by default."""
    return (name.startswith(".") or name.startswith("~$") or name.endswith("~") or name.endswith((".swp", ".swo", ".tmp"))
            or name in _SKIPPED_NAMES)


def scan(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path], list[FileFailure]]:
    """Supported files under the given paths (recursively; symlinked folders are not followed),
    the resolved roots, and the paths that could not be walked."""
    files: dict[Path, None] = {}
    roots: list[Path] = []
    problems: list[FileFailure] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise NoDocumentsError(f"{raw}: no such file or directory")
        root = path.resolve()
        roots.append(root)
        if path.is_file():
            files[root] = None
            continue

        def on_error(exc: OSError) -> None:
            problems.append(FileFailure(str(exc.filename), f"cannot list folder ({exc.strerror})"))

        for folder, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not is_skipped(d))
            for name in sorted(filenames):
                if is_skipped(name) or not name.lower().endswith(SUPPORTED_SUFFIXES):
                    continue
                file = Path(folder) / name
                try:
                    if file.is_file():
                        files[file.resolve() if file.is_symlink() else file] = None
                except OSError as exc:
                    problems.append(FileFailure(str(file), f"cannot stat ({exc.strerror})"))
    return list(files), roots, problems


def _under(source: str, roots: Iterable[Path]) -> bool:
    p = Path(source)
    return any(p == r or r in p.parents for r in roots)


def run(index_path: str | Path, paths: Sequence[str | Path], embedder: Embedder, tokenizer: Tokenizer, config: Config,
        rebuild: bool = False, wait: bool = True, progress: Progress | None = None,
        on_message: Callable[[str], None] | None = None, remove: Sequence[str] = ()) -> IngestReport:
    """Bring the index at `index_path` up to date with the files under `paths`, and drop the
    documents named in `remove` (sources as the index records them)."""
    started = time.perf_counter()
    report = IngestReport()
    stage = {"parse": 0.0, "split": 0.0, "embed": 0.0, "index": 0.0}
    tell = progress or (lambda *a: None)
    index_path = Path(index_path)
    files, roots, problems = scan(paths)
    report.failed.extend(problems)

    with write_lock(index_path, wait=wait, on_wait=on_message):
        old = None
        if not rebuild and (index_path / "manifest.json").exists():
            old = Index.open(index_path)
        if old is not None:
            check_compatible(old.manifest, {"model": embedder.name}, index_path)
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
        removed = [s for s in known if (_under(s, roots) and s not in current) or (s in remove and s not in current)]

        # 2. Read and split the changed files.
        new_chunks: list[Chunk] = []
        records: dict[str, FileRecord] = {}
        split_cfg = config.split
        for n, (file, source, digest) in enumerate(changed, start=1):
            tell("read", source, n, len(changed))
            t0 = time.perf_counter()
            try:
                pages = load_file(file, source, int(config.ingest.max_file_mb * 1e6))
                t1 = time.perf_counter()
                chunks = split_pages(pages, split_cfg.chunk_size, split_cfg.chunk_overlap, embedder.count_tokens)
            except DocumentError as exc:
                report.failed.append(FileFailure(source, str(exc).removeprefix(f"{source}: ")))
                continue
            except Exception as exc:  # a parser bug on one file must not stop the folder
                report.failed.append(FileFailure(source, f"{type(exc).__name__}: {exc}"))
                continue
            stage["parse"] += t1 - t0
            stage["split"] += time.perf_counter() - t1
            (report.updated if source in known else report.added).append(source)
            records[source] = FileRecord(sha256=digest, size=file.stat().st_size, chunks=len(chunks), ingested_at=time.time())
            new_chunks.extend(chunks)

        if not records and not removed and old is not None:
            report.chunks = len(old)
            report.seconds = time.perf_counter() - started
            report.stage_seconds = stage
            return report

        # 3. Embed what the index does not hold yet (equal texts share a vector).
        t0 = time.perf_counter()
        drop = set(removed) | set(records)
        keep_rows = np.array([i for i, c in enumerate(old.chunks) if c.source not in drop], dtype=np.int64) if old else np.zeros(0, np.int64)
        reuse: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if old is not None and len(old):
            old_vectors = old.vectors()
            for i, h in enumerate(old.hashes):
                reuse.setdefault(h, (old_vectors[i], old.chunk_sentence_vectors(i)))
        new_hashes = [text_hash(c.text) for c in new_chunks]
        first_of: dict[str, int] = {}
        for i, h in enumerate(new_hashes):
            if h not in reuse:
                first_of.setdefault(h, i)
        todo = list(first_of.values())  # each distinct new text is embedded once, however many files hold it
        dim = embedder.dimension
        batch = max(1, config.embed.batch_size * 4)
        for b in range(0, len(todo), batch):
            part = todo[b : b + batch]
            tell("embed", new_chunks[part[0]].source, b + len(part), len(todo))
            vecs, sents = embedder.embed_chunks([new_chunks[i].text for i in part], [new_chunks[i].sentences for i in part])
            offsets = np.concatenate([[0], np.cumsum([len(new_chunks[i].sentences) for i in part])])
            for k, i in enumerate(part):
                reuse[new_hashes[i]] = (vecs[k], sents[offsets[k] : offsets[k + 1]])
        stage["embed"] += time.perf_counter() - t0
        report.chunks_added = len(todo)

        # 4. Assemble and commit the new generation.
        t0 = time.perf_counter()
        tell("commit", str(index_path), 0, 1)
        kept_chunks = [old.chunks[i] for i in keep_rows] if old else []
        all_chunks = kept_chunks + new_chunks
        hashes = ([old.hashes[i] for i in keep_rows] if old else []) + new_hashes
        vectors = np.zeros((len(all_chunks), dim), dtype=np.float32)
        sentence_parts: list[np.ndarray] = []
        for i, h in enumerate(hashes):
            vectors[i], sv = reuse[h]
            sentence_parts.append(sv.astype(np.float32))
        sentence_vectors = np.concatenate(sentence_parts) if sentence_parts else np.zeros((0, dim), np.float32)
        if old is not None:
            counts, vocab = old.bm25.subset(keep_rows)
        else:
            counts, vocab = sparse.csr_matrix((0, 0), dtype=np.int32), {}
        added_counts = term_counts(tokenizer.batch([c.text for c in new_chunks]), vocab)
        counts.resize((counts.shape[0], len(vocab)))
        bm25 = BM25Index(sparse.vstack([counts, added_counts]).tocsr(), vocab, config.bm25.k1, config.bm25.b, config.bm25.epsilon)

        if old is not None:
            manifest = old.manifest
        else:
            spec = getattr(embedder, "spec", None)
            manifest = Manifest(
                embedding={"model": embedder.name, "dimension": dim,
                           "query_prefix": getattr(spec, "query_prefix", ""), "passage_prefix": getattr(spec, "passage_prefix", "")},
                split=asdict(config.split),
                bm25={"k1": config.bm25.k1, "b": config.bm25.b, "epsilon": config.bm25.epsilon, **tokenizer.settings()},
            )
        files_state = {s: r for s, r in manifest.files.items() if s not in drop}
        files_state.update(records)
        manifest.files = dict(sorted(files_state.items()))
        commit(index_path, manifest, all_chunks, hashes, vectors, sentence_vectors, bm25)
        stage["index"] += time.perf_counter() - t0
        tell("commit", str(index_path), 1, 1)

    report.removed = removed
    report.chunks = len(all_chunks)
    report.seconds = time.perf_counter() - started
    report.stage_seconds = stage
    return report


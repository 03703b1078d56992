"""Finding the documents under the given paths: what is read, what is skipped, and why."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragapp.errors import NoDocumentsError
from ragapp.load import SUPPORTED_SUFFIXES
from ragapp.records import FileFailure
from ragapp.text import shown

_SKIPPED_NAMES = (".DS_Store", "Thumbs.db")


def _bad_name(path: Path) -> FileFailure | None:
    """A file whose path is not valid UTF-8 is reported, not indexed: every store and reply of ragapp
    is UTF-8, and a guessed decoding could name another file."""
    text = str(path)
    if text == shown(text):
        return None
    return FileFailure(shown(text), "the file name is not valid UTF-8 (from an archive or disk of another encoding); "
                                    "rename it, e.g. `convmv -f gbk -t utf-8 --notest FILE`, and ingest again")


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
    unsupported: list[Path] = field(default_factory=list)  # files of a format ragapp does not read (not hidden ones)


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
            bad = _bad_name(root)
            if bad is not None:
                found.problems.append(bad)
            elif not root.name.lower().endswith(SUPPORTED_SUFFIXES):
                found.unsupported.append(root)
            else:
                files[root] = None
            continue

        def on_error(exc: OSError) -> None:
            found.problems.append(FileFailure(shown(exc.filename), f"cannot list folder ({exc.strerror}); "
                                                                 "its documents stay in the index"))
            found.unreadable.append(Path(exc.filename))

        for folder, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not is_skipped(d))
            for name in sorted(filenames):
                if is_skipped(name):
                    continue
                if not name.lower().endswith(SUPPORTED_SUFFIXES):
                    found.unsupported.append(Path(folder) / name)
                    continue
                file = Path(folder) / name
                bad = _bad_name(file)
                if bad is not None:
                    found.problems.append(bad)
                    continue
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


def file_size(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError:  # gone since it was read
        return 0


def is_under(source: str, roots: Iterable[Path]) -> bool:
    p = Path(source)
    return any(p == r or r in p.parents for r in roots)



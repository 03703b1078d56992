"""Content hashes of files (index parts, cached models): one streamed sha256 for every owner, and a memo
that spares hashing a file again while it is unchanged."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import BinaryIO

from ragapp.jsonfile import replace_json


def file_sha256(path: str | Path | BinaryIO) -> str:
    """sha256 of a file (a path, or a file opened for reading), streamed in 4 MB blocks."""
    digest = hashlib.sha256()
    with (open(path, "rb") if isinstance(path, (str, Path)) else path) as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


class DigestMemo:
    """sha256 of files remembered with what `stat` says of them (size, mtime, ctime, inode), kept in one
    JSON file: a file is hashed again only when one of those changed. ctime cannot be set back by a
    program (`touch` sets mtime, never ctime), so an edited file is always hashed again."""

    def __init__(self, memo_file: str | Path) -> None:
        self.file = Path(memo_file)
        self._changed = False
        try:
            loaded = json.loads(self.file.read_text(encoding="utf-8"))
            self._seen: dict[str, list] = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self._seen = {}

    def sha256(self, path: str | Path) -> str:
        """The file's sha256: from the memo when its stat is the one recorded with it, else computed."""
        where = str(Path(path).resolve())
        st = os.stat(where)
        mark = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        seen = self._seen.get(where)
        if isinstance(seen, list) and len(seen) == 5 and seen[:4] == mark and isinstance(seen[4], str):
            return seen[4]
        digest = file_sha256(where)
        if os.stat(where).st_ctime_ns == st.st_ctime_ns:  # not changed while it was read
            self._seen[where], self._changed = [*mark, digest], True
        return digest

    def save(self) -> None:
        """Write the memo aside and rename it into place; a read-only cache just hashes again next time."""
        if self._changed and replace_json(self.file, self._seen):
            self._changed = False

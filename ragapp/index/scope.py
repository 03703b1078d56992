"""What every index writer does as a context manager: leaving `with` without a commit aborts."""

from __future__ import annotations

from typing import Self


class AbortUnlessCommitted:
    """Mixin for writers: `with writer:` calls `abort()` on the way out unless `_done` (set by commit
    and abort) is true, so an exception never leaves a half-written state behind."""

    _done: bool = False

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if not self._done:
            self.abort()

"""How paths are shown to people (command line, progress bars, the chat app)."""

from __future__ import annotations

import os


def shown_path(path: str, width: int | None = None) -> str:
    """A path as the command line shows it: relative to here when that is shorter, cut to `width`."""
    try:
        rel = os.path.relpath(path)
        path = rel if len(rel) < len(path) else path
    except ValueError:
        pass
    return path if width is None or len(path) <= width else "…" + path[-(width - 1):]

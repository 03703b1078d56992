"""Server paths as API clients see them: a document by its name in the knowledge base, never the
server's folders (an absolute path tells a caller where the user keeps things and who they are)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ragapp.knowledge import DOCUMENTS

# An absolute path inside a message: a slash after a start, a space, a quote or "=" / ":" / "(",
# then path characters (spaces end it; the known folders are replaced whole first). Two slashes
# begin a URL's address (http://127.0.0.1:19530), which a client may see.
_ABSOLUTE = re.compile(r"(?:(?<=^)|(?<=[\s'\"(=:]))/(?!/)[^\s'\"()<>,;]+")


class PublicPaths:
    """Maps the server's paths to the names a client may see."""

    def __init__(self, root: Path, private: tuple[Path, ...] = (), watched: tuple[Path, ...] = ()) -> None:
        self.root = root.resolve()
        # A watched folder's files keep their place inside it ("notes/2024/minutes.md"): two files of one
        # name in different subfolders are two documents, and a page link must name the one cited.
        self._watched = sorted((w.resolve() for w in watched), key=lambda w: -len(w.parts))
        # Folders replaced whole (names with spaces included), longest first: "ROOT/" → "", "HOME/" → "~/",
        # "WATCHED/" → "its name/".
        spellings = {str(root): "", str(self.root): "", **{str(p): "~" for p in private},
                     **{str(w): w.name for w in self._watched}}
        self._prefixes = sorted(((k + "/", v + "/" if v else v) for k, v in spellings.items()), key=lambda kv: -len(kv[0]))

    def name(self, path: str) -> str:
        """A document's name relative to its knowledge base's documents/ folder; another file under the
        knowledge root relative to the root; a watched folder's file elsewhere as FOLDER/its path inside;
        anything else by its last name."""
        p = Path(path)
        try:
            rel = p.resolve().relative_to(self.root).parts if p.is_absolute() else None
        except (ValueError, OSError):
            rel = None
        if not rel:
            inside = next((w for w in self._watched if p.is_relative_to(w)), None) if p.is_absolute() else None
            return "/".join((inside.name, *p.relative_to(inside).parts)) if inside is not None else p.name
        if len(rel) > 2 and rel[1] == DOCUMENTS:
            return "/".join(rel[2:])
        return "/".join(rel)

    def text(self, message: str) -> str:
        """A message with every absolute path made public."""
        for prefix, replacement in self._prefixes:
            message = message.replace(prefix, replacement)
        return _ABSOLUTE.sub(lambda m: self.name(m.group(0)), message)

    def record(self, data: dict[str, Any]) -> dict[str, Any]:
        """A hit, citation or document dict with its `source` made public."""
        return {**data, "source": self.name(data["source"])} if "source" in data else data

    def report(self, data: dict[str, Any]) -> dict[str, Any]:
        """An ingest report with its paths and reasons made public."""
        out = dict(data)
        for key in ("added", "updated", "unchanged", "removed"):
            if isinstance(out.get(key), list):
                out[key] = [self.name(p) for p in out[key]]
        for key in ("failed", "warnings"):
            if isinstance(out.get(key), list):
                out[key] = [{"path": self.name(f["path"]), "reason": self.text(f["reason"])} for f in out[key]]
        return out

    def everywhere(self, data: Any) -> Any:
        """Any JSON-ready value with every path in its strings made public (an eval report's sources,
        passages and reasons)."""
        if isinstance(data, str):
            return self.name(data) if data.startswith("/") and "\n" not in data and " " not in data else self.text(data)
        if isinstance(data, dict):
            return {k: self.everywhere(v) for k, v in data.items()}
        if isinstance(data, list):
            return [self.everywhere(v) for v in data]
        return data

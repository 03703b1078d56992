"""The head every prompt shares (the chat template's opening and the system prompt), kept as llama.cpp's
state in the model cache, so a new process restores it instead of prefilling it: about 80 of the ~300
tokens a cold question prefills (docs/benchmarks.md, "Cold start").

Owns `<cache>/models/llama-head-*.bin`: one line of JSON (the head's token ids, the state's size and
sha256), then the state bytes of sequence 0. The name is a digest of everything the state depends on
(the model file's identity, llama-cpp-python's version, the context size, the system prompt), so a
changed model or prompt finds no file. A file that is damaged, too large or malformed reads as none.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ragapp.jsonfile import replace_bytes

MAGIC = b"ragapp-llama-head 1\n"
# A 7B model's head is ~15-50 MB; more is not a head this module wrote.
MAX_BYTES = 128 << 20
# Fewer tokens than this are not worth a file.
MIN_TOKENS = 8


@dataclass(frozen=True)
class SavedHead:
    """The token ids of a prompt's head and llama.cpp's state of sequence 0 after them."""

    tokens: list[int]
    state: bytes


def head_file(cache_dir: str | Path, model_file: Path, n_ctx: int, system: str, version: str) -> Path:
    """Where the head for this model file, context size, system prompt and llama-cpp-python version lives."""
    st = model_file.stat()
    key = json.dumps([str(model_file.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, n_ctx, version, system])
    return Path(cache_dir) / "models" / f"llama-head-{hashlib.sha256(key.encode()).hexdigest()[:32]}.bin"


def read_head(path: Path) -> SavedHead | None:
    """The saved head, or None when there is none or it is not whole."""
    try:
        if path.stat().st_size > MAX_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(MAGIC) or b"\n" not in data[len(MAGIC):]:
        return None
    line, _, state = data[len(MAGIC):].partition(b"\n")
    try:
        header = json.loads(line)
        tokens = [int(t) for t in header["tokens"]]
        whole = header["bytes"] == len(state) and header["sha256"] == hashlib.sha256(state).hexdigest()
    except (ValueError, KeyError, TypeError):
        return None
    return SavedHead(tokens, state) if whole and len(tokens) >= MIN_TOKENS else None


def write_head(path: Path, head: SavedHead) -> bool:
    """Save a head (written aside and renamed into place); False when it is too small or large, or the
    cache cannot be written."""
    if len(head.tokens) < MIN_TOKENS or len(head.state) > MAX_BYTES:
        return False
    header = {"tokens": head.tokens, "bytes": len(head.state), "sha256": hashlib.sha256(head.state).hexdigest()}
    return replace_bytes(path, MAGIC + json.dumps(header).encode() + b"\n" + head.state)


def head_length(pieces: list[bytes], system: str) -> int:
    """How many of a prompt's tokens (given as their bytes) lie wholly before the end of the system
    prompt; 0 when the prompt does not hold it (a template that drops or rewrites it)."""
    wanted = system.encode("utf-8")
    start = b"".join(pieces).find(wanted) if wanted else -1
    if start < 0:
        return 0
    end, count, offset = start + len(wanted), 0, 0
    for piece in pieces:
        if offset + len(piece) > end:
            break
        offset += len(piece)
        count += 1
    return count

"""Parsers of untrusted files run in a child process with a wall-time limit, an address-space limit
and bounded output, so a hostile document (a decompression bomb, a parser that loops, a crash in
native code) costs one failed file, never the ingest or the machine.

The parent starts `python -m ragapp.sandbox`, lowers the child's address-space limit with
prlimit before the child has read anything, sends one JSON request on stdin and reads one JSON
record per line back. The child imports only the parser it needs.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ragapp.errors import DocumentError


@dataclass(frozen=True)
class Limits:
    """What parsing one file may take."""

    timeout_s: float = 300.0
    memory_mb: int = 2048
    max_pages: int = 10_000
    max_chars: int = 50_000_000

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.memory_mb < 256 or self.max_pages <= 0 or self.max_chars <= 0:
            raise ValueError(f"parse limits must be positive (memory at least 256 MB). Currently, {self}")


def run_parser(kind: str, path: str, source: str, limits: Limits) -> Iterator[dict]:
    """Records from the child parser of `kind` for the file at `path`; raises DocumentError naming
    `source` when the child fails, times out or runs out of memory."""
    proc = subprocess.Popen([sys.executable, "-m", "ragapp.sandbox"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, close_fds=True)
    try:
        limit = limits.memory_mb << 20
        resource.prlimit(proc.pid, resource.RLIMIT_AS, (limit, limit))
        request = {"kind": kind, "path": path, "max_pages": limits.max_pages, "max_chars": limits.max_chars}
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        proc.stdin.close()
        done = False
        for record in _records(proc, time.monotonic() + limits.timeout_s, source, limits):
            if "fatal" in record:
                raise DocumentError(f"{source}: {record['fatal']}")
            done = done or bool(record.get("done"))
            yield record
        if not done:
            proc.wait()
            raise DocumentError(f"{source}: the parser stopped ({_how(proc.returncode, limits)})")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def _how(code: int, limits: Limits) -> str:
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}; over the {limits.memory_mb} MB memory limit (ingest.pdf_memory_mb) or broken"


def _records(proc: subprocess.Popen, deadline: float, source: str, limits: Limits) -> Iterator[dict]:
    """JSON lines from the child until it closes stdout; the child is killed at the deadline."""
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                proc.kill()
                raise DocumentError(f"{source}: parsing took longer than {limits.timeout_s:g} s (ingest.pdf_timeout_s); "
                                    "stopped")
            block = os.read(fd, 1 << 20)
            if not block:
                return
            buf += block
            *lines, buf = buf.split(b"\n")
            for line in lines:
                try:
                    yield json.loads(line)
                except ValueError as exc:  # a child that died in the middle of a line
                    raise DocumentError(f"{source}: the parser's output was cut off ({exc})") from exc


# -- the child -------------------------------------------------------------------------------

def _emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _pdf(path: str, max_pages: int, max_chars: int) -> None:
    """Raw text of every PDF page, one record per page (cleaning happens in the parent)."""
    import logging

    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    return _emit({"fatal": "encrypted PDF (a password is required)"})
            except (NotImplementedError, FileNotDecryptedError):
                return _emit({"fatal": "encrypted PDF (a password is required)"})
        count = len(reader.pages)
        if count > max_pages:
            return _emit({"fatal": f"{count} pages, over the limit of {max_pages} (ingest.pdf_max_pages)"})
        _emit({"pages": count})
        chars = 0
        for number, page in enumerate(reader.pages, start=1):
            try:
                text = page.extract_text() or ""
            except MemoryError:
                raise
            except Exception as exc:  # one bad page must not lose the rest: reported, not hidden
                _emit({"page": number, "error": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            chars += len(text)
            if chars > max_chars:
                return _emit({"fatal": f"over {max_chars} characters of text by page {number} (ingest.pdf_max_chars)"})
            _emit({"page": number, "text": text})
    except MemoryError:
        return _emit({"fatal": "the parser ran out of memory (a decompression bomb?)"})
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError, RecursionError, IndexError,
            AssertionError, ZeroDivisionError) as exc:
        return _emit({"fatal": f"unreadable PDF ({type(exc).__name__}: {exc})"[:500]})
    _emit({"done": True})


def main() -> None:
    """Child entry point: one request on stdin, records on stdout."""
    request = json.loads(sys.stdin.readline())
    if request.get("kind") != "pdf":
        _emit({"fatal": f"unknown parser {request.get('kind')!r}"})
        return
    _pdf(request["path"], int(request["max_pages"]), int(request["max_chars"]))


if __name__ == "__main__":
    main()

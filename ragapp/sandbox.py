"""Parsers of untrusted files run in a child process with a wall-time limit, an address-space limit
and bounded output, so a hostile document (a decompression bomb, a parser that loops, a crash in
native code) costs one failed file, never the ingest or the machine.

The parent starts `python -m ragapp.sandbox`, lowers the child's address-space limit with
prlimit before the child has read anything, sends one JSON request on stdin and reads one JSON
record per line back. The child imports only the parser it needs: a function
`parse(path, limits, emit, start_page, **options)` in a module of ragapp.load, which emits records
  {"page": n | None, "text": str, "label": str | None, "ocr": bool}   a page of text
  {"page": n, "error": str}                                             a page that was skipped
  {"working": n}                                                        OCR of page n begins
(a page's record may carry "boxes", where its characters sit: ragapp.load.geometry; the page drawer
ragapp.load.render emits {"png", "width", "height", "capped"} instead)
and raises ParseError for a file it cannot read.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict

from ragapp.config import IngestConfig
from ragapp.errors import DocumentError, ParseError


class PageTimeout(DocumentError):
    """OCR of one page took longer than its limit; the parser was stopped at that page."""

    def __init__(self, message: str, page: int) -> None:
        super().__init__(message)
        self.page = page


# What the child may see of the parent's environment: where Python and its packages are, the locale,
# temporary files and thread counts. Nothing else (model-server keys, the Milvus token, passwords)
# reaches code that reads untrusted files.
_CHILD_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TMPDIR", "TEMP", "TMP", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV",
              "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TZ")


def child_environment(parent: dict[str, str]) -> dict[str, str]:
    """The allowlisted part of `parent` (plus the locale's LC_* settings) for a sandboxed parser."""
    return {k: v for k, v in parent.items() if k in _CHILD_ENV or k.startswith("LC_")}


def run_parser(parser: str, path: str, source: str, limits: IngestConfig, start_page: int = 1,
               options: dict | None = None) -> Iterator[dict]:
    """Records from the child parser `parser` ("module:function" in ragapp.load) for the file at
    `path` (JSON-ready `options` go to it as keywords); raises DocumentError naming `source` when the
    child fails, times out or runs out of memory, and PageTimeout when OCR of one page overruns."""
    proc = subprocess.Popen([sys.executable, "-m", "ragapp.sandbox"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, close_fds=True, env=child_environment(dict(os.environ)))
    try:
        limit = limits.pdf_memory_mb << 20
        resource.prlimit(proc.pid, resource.RLIMIT_AS, (limit, limit))
        request = {"parser": parser, "path": path, "limits": asdict(limits), "start_page": start_page,
                   "options": options or {}}
        assert proc.stdin is not None and proc.stdout is not None  # both are pipes
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        proc.stdin.close()
        done = False
        for record in _records(proc, source, limits):
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
        if proc.stdout is not None:
            proc.stdout.close()


def _how(code: int, limits: IngestConfig) -> str:
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}; over the {limits.pdf_memory_mb} MB memory limit (ingest.pdf_memory_mb) or broken"


class _Clock:
    """The file's deadline, which OCR time does not use up (each OCR page has its own limit)."""

    def __init__(self, limits: IngestConfig) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.pdf_timeout_s
        self.ocr_page: int | None = None
        self.ocr_since = 0.0

    def left(self) -> float:
        now = time.monotonic()
        if self.ocr_page is not None:
            return self.ocr_since + self.limits.ocr_page_timeout_s - now
        return self.deadline - now

    def saw(self, record: dict) -> None:
        now = time.monotonic()
        if self.ocr_page is not None:
            self.deadline += now - self.ocr_since
            self.ocr_page = None
        if "working" in record:
            self.ocr_page, self.ocr_since = int(record["working"]), now

    def overrun(self, source: str) -> DocumentError:
        if self.ocr_page is not None:
            return PageTimeout(f"OCR took longer than {self.limits.ocr_page_timeout_s:g} s "
                               "(ingest.ocr_page_timeout_s)", self.ocr_page)
        return DocumentError(f"{source}: parsing took longer than {self.limits.pdf_timeout_s:g} s (ingest.pdf_timeout_s); "
                             "stopped")


def _records(proc: subprocess.Popen, source: str, limits: IngestConfig) -> Iterator[dict]:
    """JSON lines from the child until it closes stdout; the child is killed when time runs out."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    buf, clock = b"", _Clock(limits)
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = clock.left()
            if left <= 0 or not sel.select(left):
                proc.kill()
                raise clock.overrun(source)
            block = os.read(fd, 1 << 20)
            if not block:
                return
            buf += block
            *lines, buf = buf.split(b"\n")
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError as exc:  # a child that died in the middle of a line
                    raise DocumentError(f"{source}: the parser's output was cut off ({exc})") from exc
                clock.saw(record)
                yield record


# -- the child -------------------------------------------------------------------------------

def _emit_to(limits: dict) -> Callable[[dict], None]:
    """A record writer that stops the parse once the file's text passes the character limit."""
    chars = 0

    def emit(record: dict) -> None:
        nonlocal chars
        chars += len(record.get("text", ""))
        if chars > limits["pdf_max_chars"]:
            raise ParseError(f"over {limits['pdf_max_chars']} characters of text by page {record.get('page')} "
                             "(ingest.pdf_max_chars)")
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    return emit


def _raw(record: dict) -> None:
    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def main() -> None:
    """Child entry point: one request on stdin, records on stdout."""
    import importlib

    request = json.loads(sys.stdin.readline())
    module, _, name = str(request.get("parser", "")).partition(":")
    if not module.startswith("ragapp.load."):
        return _raw({"fatal": f"unknown parser {request.get('parser')!r}"})
    try:
        parse = getattr(importlib.import_module(module), name)
        parse(request["path"], request["limits"], _emit_to(request["limits"]), int(request.get("start_page", 1)),
              **request.get("options", {}))
    except ParseError as exc:
        return _raw({"fatal": str(exc)[:500]})
    except MemoryError:
        return _raw({"fatal": "the parser ran out of memory (a decompression bomb?)"})
    except RecursionError:
        return _raw({"fatal": "unreadable file (nested too deeply)"})
    except Exception as exc:  # a hostile file may break a parser anywhere: one failed file, named, with the reason
        last = (str(exc).strip().splitlines() or [""])[-1]  # a wrapped traceback ends with the real error
        return _raw({"fatal": f"unreadable file ({type(exc).__name__}: {last})"[:500]})
    _raw({"done": True})


if __name__ == "__main__":
    main()

"""A real `ragapp ui` (Streamlit) on a free loopback port, started in a subprocess for the browser tests."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers.net import free_port


@contextmanager
def ui_server(index: Path, config: Path, cwd: Path) -> Iterator[str]:
    """`ragapp ui --index INDEX --config CONFIG` until the block ends; yields its URL (its log: cwd/ui.log)."""
    port, log = free_port(), open(cwd / "ui.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "ragapp.cli", "ui", "--index", str(index), "--config", str(config),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    url = f"http://localhost:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            proc.kill()
            pytest.fail("the app did not start: " + (cwd / "ui.log").read_text())
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()

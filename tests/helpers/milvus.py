"""A Milvus Lite gRPC server on 127.0.0.1 that a test may kill and start again on the same port and
data folder (a Milvus Lite file is one process's; a server is many's)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

from helpers.net import free_port


class MilvusLite:
    """`python -m milvus_lite server` over `data`; `kill()` is SIGKILL, `start()` brings it back."""

    def __init__(self, data: Path) -> None:
        self.data, self.port = data, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self, timeout: float = 60) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.data),
                                      "--host", "127.0.0.1", "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Milvus Lite server exited with {self.proc.returncode}")
            if self._answers():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the Milvus Lite server did not start within {timeout:g} s")

    def _answers(self) -> bool:
        """True once the server answers a call (its port opens a moment before it serves)."""
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", self.port)) != 0:
                return False
        from pymilvus import MilvusClient

        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
        try:
            client = MilvusClient(uri=self.uri, timeout=5, dedicated=True)  # closed for real by close()
            try:
                client.list_collections()
            finally:
                client.close()
            return True
        except Exception:  # noqa: BLE001 - not serving yet
            return False

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

"""A real `ragapp serve` on a free loopback port, started in a subprocess (tests and bench/serve.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from helpers.net import free_port


def no_server_paths(root: Path):
    """An httpx response hook: no reply may name a folder of the server (checked on every reply)."""
    private = {str(root), str(root.resolve()), str(Path.home()) + "/", "/tmp/"}

    def check(response) -> None:
        body = response.read().decode("utf-8", "replace")
        leaked = [p for p in private if p in body]
        assert not leaked, f"{response.request.method} {response.request.url.path} replied with {leaked}: {body[:300]}"

    return check


def wait_for_job(client, job: str, timeout: float = 600) -> dict:
    """The state of a job once it is done, failed or cancelled (AssertionError after `timeout` seconds)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        reply = client.get(f"/v1/jobs/{job}")
        if reply.status_code == 429:  # a team server's per-user limit: wait as it says
            time.sleep(float(reply.headers["retry-after"]))
            continue
        state = reply.json()
        if state["status"] in ("done", "failed", "cancelled"):
            return state
        time.sleep(0.3)
    raise AssertionError(f"job {job} still running after {timeout} s")


def upload(client, kb: str, paths: list[Path]) -> dict:
    """Upload files into knowledge base `kb` and wait for their ingest job."""
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    r = client.post(f"/v1/knowledge_bases/{kb}/documents", files=files)
    assert r.status_code == 202, r.text
    return wait_for_job(client, r.json()["job"])


class ApiServer:
    """`ragapp serve` over `root`, with API key `key`; stop() kills it (SIGKILL with hard=True)."""

    def __init__(self, root: Path, key: str, log: Path, cache_dir: str, extra_env: dict | None = None,
                 config: Path | None = None, args: tuple[str, ...] = (), index: Path | None = None) -> None:
        self.root, self.key, self.port = root, key, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "RAGAPP_API_KEYS": key, "RAGAPP_CACHE": cache_dir, **(extra_env or {})}
        self._log = open(log, "ab")
        where = ["--index", str(index)] if index is not None else ["--knowledge-root", str(root)]
        self.proc = subprocess.Popen([sys.executable, "-m", "ragapp.cli", "serve", "--port", str(self.port), *where,
                                      *(["--config", str(config)] if config else []), *args],
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ragapp serve exited with {self.proc.returncode}: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.url + "/health", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("ragapp serve did not start in 120 s")

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}

    def stop(self, hard: bool = False) -> None:
        if self.proc.poll() is None:
            (self.proc.kill if hard else self.proc.terminate)()
            self.proc.wait(timeout=30)
        self._log.close()

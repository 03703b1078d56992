"""Issue 25 against a real `ragapp serve` on 127.0.0.1: a web page cannot reach the documents (foreign
Host, foreign Origin, a cross-site upload from real Chromium), uploads are all or nothing and bounded
before their body is read, DELETE never follows a link, and no reply holds a server path."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from helpers.api_server import ApiServer, no_server_paths, wait_for_job
from helpers.browser import needs_chromium
from helpers.net import free_port

pytestmark = pytest.mark.integration

NOTE = "Sea otters hold hands while they sleep so they do not drift apart.\n"


@pytest.fixture(scope="module")
def keyless(tmp_path_factory, cache_dir):
    """`ragapp serve` with no API keys (loopback only), follow_symlinks on, small limits."""
    work = tmp_path_factory.mktemp("keyless")
    root = work / "kbs"
    root.mkdir()
    config = work / "ragapp.toml"
    config.write_text("[ingest]\nfollow_symlinks = true\n[serve]\nmax_upload_files = 3\nmax_request_mb = 300\n"
                      "max_upload_mb = 250\nquota_mb = 250\n", encoding="utf-8")
    server = ApiServer(root, "", work / "serve.log", cache_dir, config=config)
    client = httpx.Client(base_url=server.url, timeout=300, event_hooks={"response": [no_server_paths(root)]})
    assert client.post("/v1/knowledge_bases", json={"name": "notes"}).status_code == 201
    r = client.post("/v1/knowledge_bases/notes/documents", files=[("files", ("otters.md", NOTE.encode()))])
    assert r.status_code == 202, r.text
    assert wait_for_job(client, r.json()["job"])["status"] == "done"
    yield server, client
    client.close()
    server.stop()


def documents(server: ApiServer) -> Path:
    return server.root / "notes" / "documents"


def test_foreign_host_and_origin_are_refused_without_keys(keyless):
    server, client = keyless
    search = {"knowledge_base": "notes", "query": "Why do otters hold hands?"}
    assert client.post("/v1/search", json=search).json()["data"][0]["source"] == "otters.md"
    rebound = {"Host": f"rebind.attacker.example:{server.port}", "Origin": f"http://rebind.attacker.example:{server.port}"}
    evil = {"Origin": "http://evil.example"}
    for headers in (rebound, evil, {"Origin": "null"}):
        r = client.post("/v1/search", json=search, headers=headers)
        assert r.status_code == 403 and "otters" not in r.text, r.text
        upload = client.post("/v1/knowledge_bases/notes/documents", headers=headers,
                             files=[("files", ("otters.md", b"The attacker's text."))])
        assert upload.status_code == 403, upload.text
        assert client.delete("/v1/knowledge_bases/notes/documents/otters.md", headers=headers).status_code == 403
    assert (documents(server) / "otters.md").read_text(encoding="utf-8") == NOTE
    # The server's own names, with its port, and its own pages' Origin are served.
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}"):
        r = client.post("/v1/search", json=search, headers={"Host": host, "Origin": f"http://{host}"})
        assert r.status_code == 200 and r.json()["data"][0]["source"] == "otters.md"


def test_an_upload_never_overwrites_unless_asked(keyless, tmp_path):
    server, client = keyless
    r = client.post("/v1/knowledge_bases/notes/documents", files=[("files", ("otters.md", b"Replaced text."))])
    assert r.status_code == 409 and "replace" in r.json()["error"]["message"]
    assert (documents(server) / "otters.md").read_text(encoding="utf-8") == NOTE
    r = client.post("/v1/knowledge_bases/notes/documents?replace=true", files=[("files", ("otters.md", NOTE.encode()))])
    assert r.status_code == 202 and wait_for_job(client, r.json()["job"])["status"] == "done"


@pytest.mark.parametrize("names, status, why", [
    (["plan.txt", "old/plan.txt"], 400, "both be saved as 'plan.txt'"),
    (["a.txt", "b.txt", ".env"], 400, "not an acceptable file name"),
    (["a.txt", "b.txt", "c.exe"], 400, "can be uploaded"),
    (["a.txt", "b.txt", "c.txt", "d.txt"], 413, "more than 3 files"),
    (["a.txt", "长" * 120 + ".txt"], 400, "bytes long in UTF-8; the limit is 200"),
])
def test_a_bad_upload_saves_nothing(keyless, names, status, why):
    server, client = keyless
    before = sorted(p.name for p in documents(server).iterdir())
    files = [("files", (n, f"file {i}\n".encode())) for i, n in enumerate(names)]
    r = client.post("/v1/knowledge_bases/notes/documents", files=files)
    assert r.status_code == status and why in r.json()["error"]["message"], r.text
    assert sorted(p.name for p in documents(server).iterdir()) == before  # no file, no temporary file


def test_delete_removes_the_link_never_its_target(keyless, tmp_path):
    server, client = keyless
    diary = tmp_path / "diary.txt"
    diary.write_text("Dear diary, the secret garden key is under the blue stone.\n", encoding="utf-8")
    (documents(server) / "diary.txt").symlink_to(diary)
    r = client.post("/v1/knowledge_bases/notes/documents", files=[("files", ("kelp.md", b"Kelp forests shelter otters.\n"))])
    assert wait_for_job(client, r.json()["job"])["status"] == "done"
    names = [d["source"] for d in client.get("/v1/knowledge_bases/notes/documents").json()["data"]]
    assert "diary.txt" in names and "kelp.md" in names
    assert client.delete("/v1/knowledge_bases/notes/documents/diary.txt").json() == {"deleted": "diary.txt"}
    assert diary.read_text(encoding="utf-8").startswith("Dear diary")  # the target outside is untouched
    assert not (documents(server) / "diary.txt").is_symlink()
    assert "diary.txt" not in [d["source"] for d in client.get("/v1/knowledge_bases/notes/documents").json()["data"]]
    assert client.delete("/v1/knowledge_bases/notes/documents/kelp.md").status_code == 200


def _raw_request(port: int, head: str, wait: float = 30) -> tuple[str, float]:
    """Send only the request line and headers (no body); the reply's status line and how soon it came."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        t0 = time.perf_counter()
        s.sendall(head.encode())
        reply = s.recv(65536).decode("latin-1")
        return reply.split("\r\n", 1)[0], time.perf_counter() - t0


def test_uploads_are_refused_before_their_body_is_read(keyless):
    server, _ = keyless
    head = ("POST /v1/knowledge_bases/{kb}/documents HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {n}\r\n\r\n")
    # Over the request limit (300 MB here): 413 with no byte of the body sent.
    status, _ = _raw_request(server.port, head.format(kb="notes", port=server.port, n=5_000_000_000))
    assert " 413 " in status
    # A knowledge base that does not exist: 404 at once, the 100 MB body never sent.
    status, _ = _raw_request(server.port, head.format(kb="nope", port=server.port, n=100_000_000))
    assert " 404 " in status


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_200_mb_upload_streams_to_disk_with_flat_memory(keyless):
    """The file goes to disk as it arrives: the server's memory while 200 MB stream in stays within
    30 MB of where it started (it held every file whole before)."""
    server, client = keyless
    boundary = "ragappboundary"
    start = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.pdf"\r\n\r\n'.encode()
    end = f"\r\n--{boundary}--\r\n".encode()
    block = b"%PDF-1.4 not really a PDF " * 40000  # about 1 MB
    blocks = 200_000_000 // len(block)
    samples = [_rss_mb(server.proc.pid)]

    def body():
        yield start
        for i in range(blocks):
            if i % 20 == 0:
                samples.append(_rss_mb(server.proc.pid))
            yield block
        yield end

    r = client.post("/v1/knowledge_bases/notes/documents", content=body(),
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 202, r.text
    assert (documents(server) / "big.pdf").stat().st_size == blocks * len(block)
    wait_for_job(client, r.json()["job"])
    print(json.dumps({"sent_mb": blocks * len(block) / 1e6, "rss_start_mb": samples[0], "rss_max_mb": max(samples)}))
    assert max(samples) - samples[0] < 30, samples
    assert client.delete("/v1/knowledge_bases/notes/documents/big.pdf").status_code in (200, 404)
    (documents(server) / "big.pdf").unlink(missing_ok=True)


def _multipart(files: list[tuple[str, int]], boundary: str = "b"):
    """A multipart body streamed in 1 MB blocks: (name, size) per file."""
    for name, size in files:
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n\r\n'.encode()
        for left in range(size, 0, -1 << 20):
            yield b"x" * min(left, 1 << 20)
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def test_quota_and_concurrent_uploads(keyless):
    """A knowledge base's quota (250 MB here) is kept, and at most two uploads are received at once."""
    server, client = keyless
    release = threading.Event()
    statuses: list[int] = []

    def slow_body(name: str):
        yield f'--b\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n\r\nslow\n'.encode()
        release.wait(60)
        yield b"\r\n--b--\r\n"

    def slow_upload(name: str) -> None:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            r = c.post("/v1/knowledge_bases/notes/documents", content=slow_body(name),
                       headers={"Content-Type": "multipart/form-data; boundary=b"})
            statuses.append(r.status_code)

    threads = [threading.Thread(target=slow_upload, args=(f"slow{i}.md",)) for i in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60  # both are being received once each has begun its file
    while len(list(documents(server).glob(".upload-*.part"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    third = client.post("/v1/knowledge_bases/notes/documents", files=[("files", ("third.md", b"third\n"))])
    release.set()
    for t in threads:
        t.join(60)
    assert third.status_code == 429 and statuses == [202, 202], (third.text, statuses)
    over = client.post("/v1/knowledge_bases/notes/documents", content=_multipart([("part1.txt", 130 << 20), ("part2.txt", 130 << 20)]),
                       headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert over.status_code == 507 and "quota" in over.json()["error"]["message"]
    assert not any(p.name.startswith(("part", ".upload-")) for p in documents(server).iterdir())
    for name in ("slow0.md", "slow1.md"):
        client.delete(f"/v1/knowledge_bases/notes/documents/{name}")


def test_names_and_listing_fail_one_at_a_time(keyless):
    server, client = keyless
    (server.root / "photos" / "documents").mkdir(parents=True)  # holds documents/ but is no index
    (server.root / "photos" / "holiday.jpg").write_bytes(b"\xff\xd8")
    listed = client.get("/v1/knowledge_bases")
    assert listed.status_code == 200 and "notes" in [kb["name"] for kb in listed.json()["data"]]
    r = client.post("/v1/knowledge_bases", json={"name": "笔" * 100})
    assert r.status_code == 400 and "the limit is 200" in r.json()["error"]["message"]
    r = client.post("/v1/search", json={"knowledge_base": "gone", "query": "x"})
    assert r.status_code == 404


class _OtherSite(http.server.BaseHTTPRequestHandler):
    """A page on another origin (another port), as any site the user visits could serve."""

    def html(self) -> str:
        raise NotImplementedError

    def do_GET(self) -> None:  # noqa: N802
        page = self.html().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args) -> None:
        pass


class _Page(_OtherSite):
    """Another site's page that tries the cross-site upload."""

    target = ""

    def html(self) -> str:
        script = f"""
        const form = new FormData();
        form.append("files", new Blob(["The attacker's text."]), "otters.md");
        fetch("{self.target}/v1/knowledge_bases/notes/documents?replace=true", {{method: "POST", body: form, mode: "no-cors"}})
          .then(() => document.title = "sent").catch(e => document.title = "failed " + e);
        """
        return f"<html><body><script>{script}</script></body></html>"


@needs_chromium
def test_cross_site_upload_from_a_real_browser_writes_nothing(keyless, browser):
    server, client = keyless
    _Page.target = server.url
    page = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Page)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    listed = client.get("/v1/knowledge_bases/notes/documents").json()["data"]
    try:
        browser.get(f"http://127.0.0.1:{page.server_port}/")
        deadline = time.time() + 30
        while browser.title != "sent" and not browser.title.startswith("failed") and time.time() < deadline:
            time.sleep(0.2)
        assert browser.title == "sent"  # the browser did send it (no-cors hides the reply from the page)
    finally:
        page.shutdown()
        page.server_close()
    time.sleep(1)
    assert (documents(server) / "otters.md").read_text(encoding="utf-8") == NOTE
    assert client.get("/v1/knowledge_bases/notes/documents").json()["data"] == listed


def test_an_upload_that_would_fill_the_disk_is_refused_before_its_body(tmp_path, cache_dir):
    """With less free disk than [serve] min_free_disk_mb would leave, 507 from the Content-Length alone."""
    (tmp_path / "kbs").mkdir()
    config = tmp_path / "ragapp.toml"
    free_mb = __import__("shutil").disk_usage(tmp_path).free // 1_000_000
    config.write_text(f"[serve]\nmin_free_disk_mb = {free_mb - 1000}\nmax_request_mb = 5000\n", encoding="utf-8")  # 1 GB of room
    server = ApiServer(tmp_path / "kbs", "", tmp_path / "serve.log", cache_dir, config=config)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.post("/v1/knowledge_bases", json={"name": "notes"}).status_code == 201
            head = (f"POST /v1/knowledge_bases/notes/documents HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                    f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 3000000000\r\n\r\n")
            status, _ = _raw_request(server.port, head)
            assert " 507 " in status
            small = client.post("/v1/knowledge_bases/notes/documents", files=[("files", ("a.md", b"small\n"))])
            assert small.status_code == 202 and wait_for_job(client, small.json()["job"])["status"] == "done"
        assert sorted(p.name for p in (tmp_path / "kbs" / "notes" / "documents").iterdir()) == ["a.md"]
    finally:
        server.stop()


PDF = Path(__file__).resolve().parents[1] / "data" / "samples" / "en" / "photosynthesis.pdf"


@pytest.fixture(scope="module")
def pdfs(keyless):
    """A knowledge base "pdfs" of the keyless server holding the sample PDF; its page link."""
    server, client = keyless
    assert client.post("/v1/knowledge_bases", json={"name": "pdfs"}).status_code == 201
    r = client.post("/v1/knowledge_bases/pdfs/documents", files=[("files", (PDF.name, PDF.read_bytes()))])
    assert r.status_code == 202 and wait_for_job(client, r.json()["job"])["status"] == "done"
    return f"{server.url}/v1/knowledge_bases/pdfs/documents/{PDF.name}/pages/1.png"


class _ImagePage(_OtherSite):
    """Another site's page that shows the server's page image in an <img> (issue 43)."""

    image = ""

    def html(self) -> str:
        return (f'<html><body><img id="x" src="{self.image}" onload="document.title=\'loaded \' + this.naturalWidth" '
                f'onerror="document.title=\'blocked\'"></body></html>')


def _title(browser, timeout: float = 30) -> str:
    deadline = time.time() + timeout
    while not browser.title and time.time() < deadline:
        time.sleep(0.1)
    return browser.title


@needs_chromium
def test_another_sites_img_gets_no_page_image_and_the_servers_own_page_does(keyless, pdfs, browser):
    server, client = keyless
    _ImagePage.image = pdfs + "?width=300"
    page = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _ImagePage)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    try:
        for other in (f"http://localhost:{page.server_port}/", f"http://127.0.0.1:{page.server_port}/"):  # same site, other site
            browser.get(other)
            assert _title(browser) == "blocked"
    finally:
        page.shutdown()
        page.server_close()
    browser.get(server.url + "/health")  # a page of the server's own origin
    browser.execute_script("document.title = ''; const i = new Image(); i.onload = () => document.title = 'loaded ' + i.naturalWidth;"
                           "i.onerror = () => document.title = 'blocked'; i.src = arguments[0];", _ImagePage.image)
    assert _title(browser) == "loaded 480"  # 300 asked, drawn at the next of the fixed widths
    assert client.get(_ImagePage.image.removeprefix(server.url)).status_code == 200  # a program sends no Sec-Fetch-Site
    r = client.get(_ImagePage.image.removeprefix(server.url), headers={"Referer": "http://evil.example/x"})
    assert r.status_code == 403  # an older browser: its Referer names the other page


def _renderers(pid: int) -> int:
    import psutil

    return sum(1 for c in psutil.Process(pid).children(recursive=True) if "ragapp.sandbox" in " ".join(c.cmdline()))


def test_forty_parallel_renders_are_held_to_the_pool_with_429s(keyless, pdfs):
    server, client = keyless
    path = pdfs.removeprefix(server.url)
    most, done = 0, threading.Event()

    def watch() -> None:
        nonlocal most
        while not done.is_set():
            most = max(most, _renderers(server.proc.pid))
            time.sleep(0.02)

    def get(n: int) -> int:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            return c.get(path, params={"width": 3961 + n, "highlight": f"{n}-{n + 5}"}).status_code

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(40) as pool:
            statuses = list(pool.map(get, range(40)))
    finally:
        done.set()
        watcher.join()
    assert set(statuses) <= {200, 429} and statuses.count(200) >= 1 and statuses.count(429) >= 30, statuses
    assert most <= 2, most  # [serve] max_concurrent_renders
    r = client.get(path, params={"width": 3990, "highlight": "0-5"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_a_document_replaced_by_a_fifo_is_answered_at_once(keyless, pdfs):
    import os

    server, client = keyless
    path = pdfs.removeprefix(server.url)
    shown = server.root / "pdfs" / "documents" / PDF.name
    shown.unlink()
    os.mkfifo(shown)
    try:
        started = time.monotonic()
        r = client.get(path, params={"width": 720, "highlight": "0-5"})
        assert time.monotonic() - started < 2.0
        assert r.status_code == 200 and "gone from where it was indexed" in r.headers.get("x-ragapp-notice", "")
    finally:
        shown.unlink()
        shown.write_bytes(PDF.read_bytes())


def test_a_host_header_port_must_be_digits(keyless):
    server, client = keyless
    for host in ("localhost:evil.com", "127.0.0.1:80x", "[::1]:evil"):
        assert client.get("/v1/knowledge_bases", headers={"Host": host}).status_code == 403, host
    assert client.get("/v1/knowledge_bases", headers={"Host": f"localhost:{server.port}"}).status_code == 200

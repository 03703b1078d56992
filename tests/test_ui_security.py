"""The UI's part of issue 10: no remote image or live link from a document or an answer, localhost
binding, a password off loopback, knowledge bases never over someone's folder, and SIGTERM stopping
the server (real Streamlit servers, real headless Chromium)."""

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.browser import chromium, needs_chromium
from helpers.net import free_port

from ui.markdown import plain_markdown, safe_markdown

ROOT = Path(__file__).resolve().parent.parent


def wait_healthy(port: int, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            time.sleep(0.3)
    proc.kill()
    pytest.fail("the server did not start: " + log.read_text())


def listening(port: int) -> set[str]:
    """Local addresses listening on `port` (IPv4 and IPv6), read from /proc/net."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.mark.integration
def test_safe_markdown_keeps_text_but_no_link_image_or_html():
    z = "\u200b"
    out = safe_markdown("**Ada** ![p](http://x.test/p.png) [a](https://x.test) <img src=x> www.x.test a@b.test\n- one")
    assert out == (f"**Ada** !\\[p\\](http:{z}//x.test/p.png) \\[a\\](https:{z}//x.test) \\<img src=x\\> www{z}.x.test "
                   f"a{z}@b.test  \n- one")
    assert plain_markdown("my_notes [v2].md") == "my\\_notes \\[v2\\]\\.md"


@pytest.fixture
def pixel_server():
    """A server on 127.0.0.1 that records every request: the page must never call it."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", hits
    server.shutdown()


@needs_chromium
@pytest.mark.integration
def test_hostile_answer_loads_nothing_and_links_nowhere(tmp_path, pixel_server, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, hits = pixel_server
    port = free_port()
    log = tmp_path / "page.log"
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "tests" / "pages" / "hostile_answer.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], env={**os.environ, "PIXEL_URL": url},
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        wait_healthy(port, proc, log)
        browser.get(f"http://127.0.0.1:{port}")
        wait = WebDriverWait(browser, 120)
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(., 'PAGE-RENDERED')]")))
        browser.find_element(By.CSS_SELECTOR, "div[data-testid='stExpander'] summary").click()
        wait.until(ec.visibility_of_element_located((By.XPATH, "//mark[contains(., 'The keeper was Ada.')]")))
        time.sleep(2)  # time for any image the page asked for to be fetched
        main = browser.find_element(By.CSS_SELECTOR, "[data-testid='stMain']")
        text = main.text.replace("\u200b", "")  # zero-width spaces break URLs and e-mail addresses
        assert "ANSWER-START The keeper was Ada. ![pixel](" in text and f"[click me]({url}/answer-link)" in text
        assert f'<img src="{url}/answer-html.png">' in text and "ANSWER-END" in text
        assert "notes ![n](" in text  # the file name, shown as written
        sources = [e.get_attribute("src") or "" for e in main.find_elements(By.TAG_NAME, "img")]
        links = [e.get_attribute("href") or "" for e in main.find_elements(By.TAG_NAME, "a")]
        assert not [s for s in sources if "127.0.0.1" in s or "example" in s]
        assert not [h for h in links if h.startswith(("http:", "https:", "mailto:", "javascript:"))], links
        assert hits == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.integration
def test_ragapp_ui_stops_on_sigterm(tmp_path):
    port = free_port()
    log = tmp_path / "ui.log"
    proc = subprocess.Popen([sys.executable, "-m", "ragapp.cli", "ui", "--index", str(tmp_path / "kb"), "--port", str(port)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=tmp_path)
    wait_healthy(port, proc, log)
    assert listening(port) == {"0100007F"}  # 127.0.0.1 only
    proc.send_signal(signal.SIGTERM)  # what a service manager sends
    assert proc.wait(timeout=30) is not None
    deadline = time.monotonic() + 10  # the kernel drops a dead process's listening socket a moment after
    while listening(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listening(port) == set()  # no server left behind with the port bound
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the health checks' closed connections linger
        s.bind(("127.0.0.1", port))


@pytest.mark.integration
def test_streamlit_run_directly_binds_localhost(tmp_path):
    port = free_port()
    log = tmp_path / "direct.log"
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "ui" / "app.py"), "--server.port", str(port)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=tmp_path)  # another folder
    try:
        wait_healthy(port, proc, log)
        assert listening(port) == {"0100007F"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.integration
def test_ui_off_loopback_needs_a_password(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAGAPP_UI_PASSWORD"}
    result = subprocess.run([sys.executable, "-m", "ragapp.cli", "ui", "--host", "0.0.0.0", "--index", str(tmp_path / "kb")],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode != 0
    assert "--host 0.0.0.0 makes the app reachable from other machines: set a password in RAGAPP_UI_PASSWORD" in result.stderr
    assert not (tmp_path / "kb").exists()


@pytest.mark.integration
def test_password_gate(tmp_path, monkeypatch, cache_dir):
    from streamlit.testing.v1 import AppTest

    cfg = tmp_path / "ragapp.toml"
    cfg.write_text(f'cache_dir = "{cache_dir}"\n[ui]\nknowledge_root = "{tmp_path}"\n', encoding="utf-8")
    monkeypatch.setenv("RAGAPP_INDEX", str(tmp_path / "kb"))
    monkeypatch.setenv("RAGAPP_CONFIG", str(cfg))
    monkeypatch.setenv("RAGAPP_UI_PASSWORD", "correct horse")
    at = AppTest.from_file(str(ROOT / "ui" / "app.py"), default_timeout=120)
    at.run()
    assert [t.label for t in at.text_input] == ["Password"] and not at.chat_input and not at.sidebar.button
    at.text_input[0].set_value("wrong").run()
    assert [e.value for e in at.error] == ["Wrong password."] and not at.chat_input
    at.text_input[0].set_value("correct horse").run()
    assert at.chat_input and not at.error


@pytest.mark.integration
def test_knowledge_base_never_over_someone_elses_folder(tmp_path):
    from ragapp.knowledge import create_knowledge_base, save_upload

    root = tmp_path / "data"
    (root / "photos").mkdir(parents=True)
    (root / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ValueError, match="photos already exists under .* and is not a knowledge base"):
        create_knowledge_base(root, "photos")
    assert sorted(p.name for p in (root / "photos").iterdir()) == ["cat.jpg"]
    kb = create_knowledge_base(root, "work")
    assert create_knowledge_base(root, "work") == kb  # an existing knowledge base is opened again

    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    (kb / "documents" / ".a.txt.part").symlink_to(victim)  # the fixed temp name uploads used to write through
    assert save_upload(kb, "a.txt", b"uploaded", 1000).read_bytes() == b"uploaded"
    assert victim.read_text(encoding="utf-8") == "precious"
    assert sorted(p.name for p in (kb / "documents").iterdir()) == [".a.txt.part", "a.txt"]


@needs_chromium
@pytest.mark.integration
def test_a_rebound_or_foreign_page_cannot_drive_the_app(tmp_path, cache_dir):
    """DNS rebinding, simulated in real Chromium by mapping rebind.attacker.example to 127.0.0.1: the
    page loads (Streamlit checks no Host) but the app refuses the session; through localhost it works.
    Streamlit refuses a websocket from another site's page and a cross-site upload (XSRF)."""
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    port = free_port()
    log = tmp_path / "ui.log"
    cfg = tmp_path / "ragapp.toml"
    cfg.write_text(f'cache_dir = "{cache_dir}"\n[ui]\nknowledge_root = "{tmp_path / "kbs"}"\n', encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "ragapp.cli", "ui", "--index", str(tmp_path / "kbs" / "notes"),
                             "--config", str(cfg), "--port", str(port)], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            cwd=tmp_path)
    driver = chromium(tmp_path / "profile", "--host-resolver-rules=MAP rebind.attacker.example 127.0.0.1")
    try:
        wait_healthy(port, proc, log)
        wait = WebDriverWait(driver, 120)
        driver.get(f"http://rebind.attacker.example:{port}/")
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(., 'ragapp refuses this session')]")))
        assert "rebind.attacker.example" in driver.find_element(By.CSS_SELECTOR, "[data-testid='stMain']").text
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stChatInput']")
        driver.get(f"http://localhost:{port}/")
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid='stChatInput']")))
        stream = f"ws://127.0.0.1:{port}/_stcore/stream"
        with pytest.raises(InvalidStatus, match="403"), connect(stream, origin="http://evil.example", open_timeout=30):
            pass
        with connect(stream, origin=f"http://127.0.0.1:{port}", open_timeout=30) as own:  # its own page: opened
            assert own.protocol.state.name == "OPEN"
        upload = httpx.put(f"http://127.0.0.1:{port}/_stcore/upload_file/session/file", timeout=10,
                           headers={"Origin": "http://evil.example"}, files={"file": ("a.txt", b"attacker")})
        assert upload.status_code == 403
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.unit
def test_the_app_refuses_a_session_opened_from_elsewhere():
    """What the page checks itself: Streamlit admits any page on localhost (any port) to its socket."""
    from ui.app import foreign_page

    own = {"Host": "localhost:8501", "Origin": "http://localhost:8501"}
    assert foreign_page(own, "127.0.0.1") == "" and foreign_page({}, "127.0.0.1") == ""
    assert "rebind.example" in foreign_page({"Host": "rebind.example:8501", "Origin": "http://rebind.example:8501"}, "127.0.0.1")
    assert "http://localhost:3000" in foreign_page({**own, "Origin": "http://localhost:3000"}, "127.0.0.1")
    assert foreign_page({"Host": "notes.example.org", "Origin": "https://notes.example.org"}, "0.0.0.0") == ""

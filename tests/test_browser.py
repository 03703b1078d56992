"""End to end in a real headless Chromium: `ragapp ui` served on localhost, a user uploads, asks, reads citations.

Screenshots go to this test's output folder (and to $RAGAPP_SCREENSHOTS when set; the README's comes from here).
"""

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.browser import needs_chromium
from helpers.net import free_port

from ragapp.prompt import FALLBACK

pytestmark = [pytest.mark.integration, needs_chromium]


@pytest.fixture
def server(tmp_path, cache_dir):
    port = free_port()
    cfg = tmp_path / "ragapp.toml"
    cfg.write_text(f'cache_dir = "{cache_dir}"\n[ui]\nknowledge_root = "{tmp_path / "kbs"}"\n', encoding="utf-8")
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "ragapp.cli", "ui", "--index", str(tmp_path / "kbs" / "notes"),
                             "--config", str(cfg), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://localhost:{port}"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the app did not start: " + (tmp_path / "server.log").read_text())
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def shoot(driver, tmp_path, name):
    driver.save_screenshot(str(tmp_path / name))
    if os.environ.get("RAGAPP_SCREENSHOTS"):
        Path(os.environ["RAGAPP_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, Path(os.environ["RAGAPP_SCREENSHOTS"]) / name)


def test_upload_ask_cite_refuse_in_chromium(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 300)
    doc = tmp_path / "lighthouse.md"
    doc.write_text("# The Kestrel Point lighthouse\n\nThe Kestrel Point lighthouse was built in 1874 by the engineer "
                   "Mary Alden. Its light can be seen from 31 kilometres away.\n\nThe lighthouse keeper's cottage now "
                   "houses a small museum about shipwrecks on the northern coast.\n", encoding="utf-8")
    browser.get(server)
    wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(., 'has no documents yet')]")))

    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid='stSidebar'] input[type='file']"))).send_keys(str(doc))
    wait.until(ec.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Ingest']]"))).click()
    wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(., 'Added:') and contains(., '1')]")))
    wait.until(ec.presence_of_element_located((By.XPATH, "//*[@data-testid='stSidebar']//td[contains(., 'lighthouse.md')]")))

    def ask(question):
        box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "textarea[data-testid='stChatInputTextArea']")))
        box.send_keys(question)
        box.send_keys(Keys.ENTER)

    ask("Who built the Kestrel Point lighthouse?")
    citation = wait.until(ec.presence_of_element_located(
        (By.XPATH, "//div[@data-testid='stExpander']//summary[contains(., '[1] lighthouse.md')]")))
    messages = browser.find_elements(By.CSS_SELECTOR, "div[data-testid='stChatMessage']")
    assert "Mary Alden" in messages[-1].text
    citation.click()
    wait.until(ec.visibility_of_element_located((By.XPATH, "//mark[contains(., 'Mary Alden')]")))
    shoot(browser, tmp_path, "ui-answer-with-citations.png")

    ask("What is the boiling point of mercury?")
    notice = wait.until(ec.presence_of_element_located(
        (By.XPATH, f"//div[@data-testid='stAlertContentInfo' and contains(., '{FALLBACK['en']}')]")))
    assert notice.is_displayed()
    assert not browser.find_elements(By.CSS_SELECTOR, "div[data-testid='stException']")
    shoot(browser, tmp_path, "ui-refusal.png")

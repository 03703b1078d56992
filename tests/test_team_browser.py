"""The chat app for a team, in headless Chromium: alice and bob sign in from two browser profiles, each
sees only their own knowledge bases and, after a reload (still signed in), their own saved conversation;
a wrong password is refused and slowed; the export downloads a Markdown file with the citations; a
sign-out holds across a reload."""

from __future__ import annotations

import time

import pytest
from helpers.browser import chromium, needs_chromium
from helpers.ui_server import ui_server

from ragapp import RAG
from ragapp.teams import UserStore

pytestmark = [pytest.mark.integration, needs_chromium]

PASSWORDS = {"alice": "alice-correct-horse", "bob": "bob-battery-staple"}
DOCS = {"finance": "The finance team's travel budget for 2025 is 48,000 euros, approved in March.\n",
        "hr": "New staff get 27 days of paid leave a year, plus public holidays.\n"}


@pytest.fixture
def app(tmp_path, cache_dir, config, embedder):
    root = tmp_path / "kbs"
    for kb, text in DOCS.items():
        (tmp_path / "in" / kb).mkdir(parents=True)
        (tmp_path / "in" / kb / f"{kb}.txt").write_text(text, encoding="utf-8")
        RAG(root / kb, config, embedder=embedder).ingest([tmp_path / "in" / kb])
    store = UserStore(root)
    for name, kb, role in (("alice", "finance", "editor"), ("bob", "hr", "reader")):
        store.add(name)
        store.grant(name, kb, role)
        store.set_password(name, PASSWORDS[name])
    cfg = tmp_path / "ragapp.toml"
    cfg.write_text(f'cache_dir = "{cache_dir}"\n[ui]\nknowledge_root = "{root}"\n', encoding="utf-8")
    with ui_server(root / "finance", cfg, tmp_path) as url:
        yield url


def _sign_in(driver, wait, name: str, password: str) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    for selector, text in (("input[aria-label='User name']", name), ("input[type='password']", password)):
        for _ in range(5):  # the page may still be drawing the form: find the box again until the text holds
            try:
                box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, selector)))
                box.send_keys(Keys.BACKSPACE * len(box.get_attribute("value") or ""), text)  # (clear() leaves Streamlit's)
                wait.until(lambda d, box=box, text=text: box.get_attribute("value") == text)
                break
            except StaleElementReferenceException:
                time.sleep(0.5)
    time.sleep(0.5)
    wait.until(ec.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Sign in']]"))).click()


def _knowledge_bases(driver, wait) -> set[str]:
    """The names the sidebar's knowledge-base list offers."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid='stSidebar'] [data-testid='stSelectbox']"))).click()
    options = wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, "[role='option']")))
    names = {o.text.strip() for o in options}
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    return names


def test_two_people_sign_in_and_see_only_their_own(app, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    from test_browser import _ask, _last_reply

    alice, bob = chromium(tmp_path / "profile-alice"), chromium(tmp_path / "profile-bob")
    try:
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        alice.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        wait_a, wait_b = WebDriverWait(alice, 120), WebDriverWait(bob, 120)
        alice.get(app)
        t0 = time.monotonic()
        _sign_in(alice, wait_a, "alice", "not-her-password")
        wait_a.until(ec.presence_of_element_located((By.XPATH, "//*[contains(., 'Wrong user name or password.')]")))
        assert time.monotonic() - t0 >= 1.0  # slowed
        _sign_in(alice, wait_a, "alice", PASSWORDS["alice"])
        wait_a.until(ec.presence_of_element_located((By.XPATH, "//*[contains(., 'Signed in as alice')]")))
        assert _knowledge_bases(alice, wait_a) == {"finance"}
        _ask(wait_a, "What is the travel budget for 2025?")
        wait_a.until(lambda d: "48,000" in _last_reply(d))

        bob.get(app)
        _sign_in(bob, wait_b, "bob", PASSWORDS["bob"])
        wait_b.until(ec.presence_of_element_located((By.XPATH, "//*[contains(., 'Signed in as bob')]")))
        assert _knowledge_bases(bob, wait_b) == {"hr"}
        _ask(wait_b, "How many days of leave do new staff get?")
        wait_b.until(lambda d: "27" in _last_reply(d))

        for driver, wait, name, mine, theirs in ((alice, wait_a, "alice", "What is the travel budget", "How many days"),
                                                 (bob, wait_b, "bob", "How many days", "What is the travel budget")):
            driver.refresh()  # a new session: still signed in (the browser's session cookie), the conversation theirs
            wait.until(ec.presence_of_element_located((By.XPATH, f"//*[contains(., 'Signed in as {name}')]")))
            saved = wait.until(ec.element_to_be_clickable((By.XPATH, f"//button[.//p[starts-with(., '{mine}')]]")))
            assert not driver.find_elements(By.XPATH, f"//button[.//p[starts-with(., '{theirs}')]]")
            saved.click()
            wait.until(lambda d, mine=mine: mine in d.find_element(By.CSS_SELECTOR, "div[data-testid='stChatMessage']").text)

        wait_a.until(ec.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Markdown']]"))).click()
        deadline = time.time() + 30
        while not [p for p in downloads.glob("conversation-*.md") if p.stat().st_size] and time.time() < deadline:
            time.sleep(0.3)
        exported = next(downloads.glob("conversation-*.md")).read_text(encoding="utf-8")
        assert "## What is the travel budget for 2025?" in exported and "1. finance.txt" in exported and "48,000" in exported

        wait_a.until(ec.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Sign out']]"))).click()
        wait_a.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[aria-label='User name']")))
        alice.refresh()  # signed out stays signed out: the session ended on the server, not only in this tab
        wait_a.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[aria-label='User name']")))
        assert not alice.find_elements(By.XPATH, "//*[contains(., 'Signed in as alice')]")
    except Exception:
        alice.save_screenshot(str(tmp_path / "alice.png"))
        bob.save_screenshot(str(tmp_path / "bob.png"))
        raise
    finally:
        alice.quit()
        bob.quit()

"""End to end in a real headless Chromium: `ragapp ui` served on localhost, a user uploads, asks, reads citations.

Screenshots go to this test's output folder (and to $RAGAPP_SCREENSHOTS when set; the README's comes from here).
"""

import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.browser import needs_chromium
from helpers.ui_server import ui_server

from ragapp.query.prompt import FALLBACK

pytestmark = [pytest.mark.integration, needs_chromium]


@pytest.fixture
def server(tmp_path, cache_dir):
    cfg = tmp_path / "ragapp.toml"
    cfg.write_text(f'cache_dir = "{cache_dir}"\n[ui]\nknowledge_root = "{tmp_path / "kbs"}"\n', encoding="utf-8")
    with ui_server(tmp_path / "kbs" / "notes", cfg, tmp_path) as url:
        yield url


def shoot(driver, tmp_path, name):
    driver.save_screenshot(str(tmp_path / name))
    if os.environ.get("RAGAPP_SCREENSHOTS"):
        Path(os.environ["RAGAPP_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, Path(os.environ["RAGAPP_SCREENSHOTS"]) / name)


def listed(wait, name: str) -> None:
    """Wait until the sidebar's documents list shows `name` (the data frame's accessible table)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait.until(ec.presence_of_element_located((By.XPATH, f"//*[@data-testid='stSidebar']//*[@role='gridcell' or self::td]"
                                                         f"[contains(., '{name}')]")))


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
    wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(., 'Indexed: 1 added')]")))
    listed(wait, "lighthouse.md")

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


def _scan(path: Path, lines: list[str]) -> Path:
    """A picture of text (as a phone or scanner gives): black lines on white, read by OCR at ingest."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (1400, 400), "white")
    font = ImageFont.load_default(size=48)
    for n, line in enumerate(lines):
        ImageDraw.Draw(image).text((60, 80 + n * 110), line, fill="black", font=font)
    image.save(path)
    return path


def test_a_citation_shows_its_page_with_the_quote_boxed_for_a_pdf_and_a_scan(server, browser, tmp_path):
    """The answer on page 2 of a PDF and on a scanned picture: the citation opens the page, and the
    highlight's colour lies where pdfium (the PDF) and the drawn line (the scan) put the quoted text."""
    from helpers.boxes import highlight_share, pdfium_boxes
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 300)
    pdf = shutil.copy(Path(__file__).resolve().parent.parent / "data" / "samples" / "en" / "photosynthesis.pdf", tmp_path)
    scan = _scan(tmp_path / "bridge.png", ["The Harbour Gate bridge opened", "to traffic in the spring of 1931."])
    browser.get(server)
    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid='stSidebar'] input[type='file']")))
    upload.send_keys(f"{pdf}\n{scan}")
    wait.until(ec.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Ingest']]"))).click()
    listed(wait, "bridge.png")

    def ask_and_open(question: str, source: str):
        box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "textarea[data-testid='stChatInputTextArea']")))
        box.send_keys(question)
        box.send_keys(Keys.ENTER)
        summary = wait.until(ec.presence_of_element_located(
            (By.XPATH, f"(//div[@data-testid='stChatMessage'])[last()]//summary[contains(., '{source}')]")))
        summary.click()
        expander = summary.find_element(By.XPATH, "./ancestor::div[@data-testid='stExpander']")
        return wait.until(lambda _: next((i for i in expander.find_elements(By.CSS_SELECTOR, "img") if i.size["height"] > 100), None))

    def shown(img) -> bytes:
        """The picture as the browser got it (its own URL on the app's server), once it is on screen."""
        WebDriverWait(browser, 30).until(  # on screen once the expander has opened and the picture loaded
            lambda _: img.is_displayed() and browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0)
        return urllib.request.urlopen(img.get_attribute("src"), timeout=30).read()

    def show_exchange() -> None:
        """The last question at the top of the window, its answer and the cited page under it."""
        question = browser.find_elements(By.CSS_SELECTOR, "div[data-testid='stChatMessage']")[-2]
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", question)

    browser.set_window_size(1280, 1400)
    page = ask_and_open("Where does the Calvin cycle take place?", "photosynthesis.pdf, page 2")
    truth = pdfium_boxes(str(pdf), 2, "The Calvin cycle takes place in the stroma of the chloroplast.")
    assert truth is not None
    x0, y0, x1, y1 = truth[0]
    assert highlight_share(shown(page), (x0 / 1e4, y0 / 1e4, x1 / 1e4, y1 / 1e4)) > 0.3
    assert highlight_share(shown(page), (0, 0, 1, 0.08)) < 0.001  # the page's title is not boxed
    show_exchange()
    shoot(browser, tmp_path, "ui-citation-on-its-page.png")

    picture = ask_and_open("When did the Harbour Gate bridge open to traffic?", "bridge.png")
    assert highlight_share(shown(picture), (0.05, 0.5, 0.5, 0.6)) > 0.3  # the second drawn line
    show_exchange()
    assert not browser.find_elements(By.CSS_SELECTOR, "div[data-testid='stException']")
    shoot(browser, tmp_path, "ui-citation-on-a-scan.png")


def _last_reply(browser) -> str:
    from selenium.webdriver.common.by import By

    messages = browser.find_elements(By.CSS_SELECTOR, "div[data-testid='stChatMessage']")
    return messages[-1].text if messages else ""


def _ask(wait, question: str) -> None:
    """Type a question into the chat box (found again if the page redrew it meanwhile) and send it."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    for _ in range(5):
        try:
            box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "textarea[data-testid='stChatInputTextArea']")))
            box.send_keys(question + Keys.ENTER)
            return
        except StaleElementReferenceException:
            time.sleep(0.5)
    raise AssertionError("the chat box kept being redrawn")


def test_an_upload_is_never_lost_to_a_question_asked_while_it_is_read(server, browser, tmp_path):
    """Issue 44: upload, click Ingest, ask about it at once (a rerun while the file is read): the file ends
    indexed and listed, and the question is answered from it once it is in."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 300)
    doc = tmp_path / "depot.md"
    doc.write_text("# Ostrava depot\n\n" + "The Ostrava depot stores 7,300 spare rail sleepers for the northern line. " * 60
                   + "\n", encoding="utf-8")
    browser.get(server)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid='stSidebar'] input[type='file']"))).send_keys(str(doc))
    wait.until(ec.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Ingest']]"))).click()
    _ask(wait, "How many spare rail sleepers does the Ostrava depot store?")
    wait.until(lambda b: "7,300" in _last_reply(b) or "7300" in _last_reply(b))
    listed(wait, "depot.md")
    assert not browser.find_elements(By.XPATH, "//*[contains(., 'not in the index yet')]")
    from ragapp import RAG

    assert [Path(d.source).name for d in RAG(tmp_path / "kbs" / "notes").documents()] == ["depot.md"]


def test_the_page_in_chinese_a_refusal_in_plain_words_and_the_check_page(server, tmp_path):
    """The browser's language picks the page's (Chinese here), the switch at the top of the sidebar changes it;
    a refusal is explained in the question's language with the figures one click away; the check page runs
    from the top of the sidebar. The screenshots are the docs' (RAGAPP_SCREENSHOTS=docs)."""
    from helpers.browser import chromium
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium(tmp_path / "profile-zh", "--lang=zh-CN", "--accept-lang=zh-CN")
    try:
        wait = WebDriverWait(browser, 300)
        browser.set_window_size(1400, 1000)
        samples = sorted(p for p in (Path(__file__).resolve().parent.parent / "data" / "samples").rglob("*") if p.is_file())
        browser.get(server)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid='stSidebar'] input[type='file']")))
        quick = WebDriverWait(browser, 30)
        quick.until(ec.presence_of_element_located((By.XPATH, "//*[@data-testid='stSidebar']//h2[contains(., '知识库')]")))  # the browser's
        upload.send_keys("\n".join(str(p) for p in samples))
        wait.until(ec.element_to_be_clickable((By.XPATH, "//button[.//p[text()='导入']]"))).click()
        listed(wait, "长城.txt")
        _ask(wait, "长城有多长？")
        wait.until(lambda b: "21196.18" in _last_reply(b))
        _ask(wait, "故宫有多少个房间？")
        last = wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(., '最接近的段落没有提供足够的信息来回答。')]")))
        assert last.is_displayed()
        wait.until(ec.element_to_be_clickable((By.XPATH, "(//div[@data-testid='stChatMessage'])[last()]//summary[contains(., '详细信息')]"))).click()
        wait.until(ec.visibility_of_element_located((By.XPATH, "(//div[@data-testid='stChatMessage'])[last()]//*[contains(., 'threshold')]")))
        time.sleep(1)  # the expander's opening animation
        shoot(browser, tmp_path, "ui-chinese-refusal-explained.png")
        # Under a refusal: "right to refuse" / "it is in the documents"; the click keeps "expect: refuse".
        last_reply = "(//div[@data-testid='stChatMessage'])[last()]"
        assert browser.find_elements(By.XPATH, f"{last_reply}//button[.//p[text()='👎 文档里有答案']]")
        wait.until(ec.element_to_be_clickable((By.XPATH, f"{last_reply}//button[.//p[text()='👍 拒答正确']]"))).click()
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(., '已保存为测试用例')]")))
        from ragapp.evaluate import read_set, set_path

        kept = read_set(set_path(tmp_path / "kbs" / "notes")).items[-1]
        assert (kept.question, kept.verdict, kept.expect) == ("故宫有多少个房间？", "right_refusal", "refuse")

        wait.until(ec.element_to_be_clickable((By.XPATH, "//*[@data-testid='stSidebar']//button[.//p[text()='English']]"))).click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "textarea[placeholder='Ask a question about your documents']")))
        _ask(wait, "How long does Mars take to orbit the Sun?")
        wait.until(lambda b: "687" in _last_reply(b))
        wait.until(ec.presence_of_element_located((By.XPATH, "//button[.//p[text()='Should have refused']]")))
        time.sleep(1)
        shoot(browser, tmp_path, "ui-english-answer.png")

        # The check page, from the top of the sidebar: an estimate first, then progress, then the report.
        wait.until(ec.element_to_be_clickable((By.XPATH, "//*[@data-testid='stSidebar']//label[.//p[text()='Check this knowledge base']]"))).click()
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(., 'on this machine') and contains(., 'a question')]")))
        box = wait.until(ec.presence_of_element_located((By.XPATH, "//input[@aria-label='Questions to write' or @type='number']")))
        box.send_keys(Keys.CONTROL + "a")
        box.send_keys("4" + Keys.ENTER)
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(., 'About') and contains(., 'on this machine')]")))
        wait.until(ec.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Run the check']]"))).click()
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(., 'What went wrong') or contains(., 'answerable and')]")))
        assert not browser.find_elements(By.CSS_SELECTOR, "div[data-testid='stException']")
        shoot(browser, tmp_path, "ui-check-page.png")
    finally:
        browser.quit()

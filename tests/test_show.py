"""Citations on their pages (ragapp.show): geometry recorded at ingest, boxes checked against where
pdfium itself places the text, pictures checked pixel by pixel, and every way a page can fail to show."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest
from conftest import EchoGenerator
from helpers.boxes import highlight_share, iou, pdfium_boxes
from helpers.pdfwriter import write_pdf

from ragapp import RAG, Config
from ragapp.load.geometry import NONE, align, boxes_for, decode, encode

LIGHTHOUSE = "The Kestrel Point lighthouse was built in 1874 by the engineer Mary Alden."
SCAN_LINES = ["The Harbour Gate bridge opened", "to traffic in the spring of 1931."]


@pytest.mark.unit
def test_geometry_round_trips_and_groups_characters_into_lines():
    boxes = np.full((12, 4), NONE, dtype=np.uint16)
    boxes[0:5] = [[100 + 50 * i, 1000, 140 + 50 * i, 1100] for i in range(5)]  # a line
    boxes[6:11] = [[100 + 50 * i, 1200, 140 + 50 * i, 1300] for i in range(5)]  # the next line
    back = decode(encode(boxes), 12)
    assert (back == boxes).all()
    assert [(b.x0, b.y0, b.x1, b.y1) for b in boxes_for(back, 2, 9)] == [(200, 1000, 340, 1100), (100, 1200, 240, 1300)]
    with pytest.raises(ValueError, match="11 characters"):
        decode(encode(boxes[:11]), 12)
    bomb = zlib.compress(bytes(1 << 26))  # 64 MB of zeros in 65 KB: read no further than the page's size
    with pytest.raises(ValueError, match="geometry for more than 12 characters"):
        decode(bomb, 12)


@pytest.mark.unit
def test_alignment_survives_a_dropped_hyphen_a_ligature_and_blocks_read_in_another_order():
    text = "Second block here.\nThe first block is fine and well-known."
    drawn = "Thefirstblockisfineandwell" + "known." + "Secondblockhere."  # pdfium read the blocks the other way round
    pairs = align(text, drawn)
    assert drawn[pairs[text.index("Second")]] == "S" and pairs[text.index("Second")] == drawn.index("Second")
    assert pairs[text.index("known")] == drawn.index("known")
    assert len(pairs) >= len(text.replace(" ", "").replace("\n", "")) - 1  # all but the hyphen pdfium does not draw
    ligature = align("It is deﬁned here.", "Itisdefinedhere.")  # pypdf kept "ﬁ", pdfium's letters are NFKC'd
    assert ligature[6] == 4 and ligature["It is deﬁned here.".index("n")] == "Itisdefinedhere.".index("n")
    # A row whose dates repeat down the page, read by pypdf in another order: each row lands on its own.
    rows = ["12/11/2015 Boeing Long Beach 36", "12/11/2015 Boeing Huntington 76", "12/11/2015 Acme Irvine 12"]
    text, drawn = "\n".join(rows[::-1]), "".join(r.replace(" ", "") for r in rows)
    pairs = align(text, drawn)
    assert pairs[text.index("Irvine")] == drawn.index("Irvine") and pairs[text.index("Huntington")] == drawn.index("Huntington")


@pytest.fixture(scope="module")
def shown(tmp_path_factory, embedder, cache_dir):
    """An index of a two-page PDF (the answer on page 2), a tall PDF, and a picture of text read by OCR."""
    from PIL import Image, ImageDraw, ImageFont

    docs = tmp_path_factory.mktemp("docs")
    write_pdf(docs / "harbour.pdf", [["Harbour notes", "Nothing about lighthouses on this page."],
                                     ["History of the coast", "Fishing boats left at dawn every day.", LIGHTHOUSE,
                                      "Its light can be seen from 31 kilometres away."]])
    write_pdf(docs / "scroll.pdf", [["A very tall page about the tide tables of the northern coast."]], size=(595, 14000))
    image = Image.new("RGB", (1400, 400), "white")
    font = ImageFont.load_default(size=48)
    for n, line in enumerate(SCAN_LINES):
        ImageDraw.Draw(image).text((60, 80 + n * 110), line, fill="black", font=font)
    image.save(docs / "bridge.png")
    index = tmp_path_factory.mktemp("index")
    rag = RAG(index, Config(cache_dir=cache_dir), embedder=embedder, generator=EchoGenerator(needle="1874"))
    assert rag.ingest([docs]).ok
    return rag, docs


def _truth(c):
    return pdfium_boxes(c.source, c.page, c.quote)


@pytest.mark.integration
def test_a_cited_sentence_is_boxed_where_pdfium_places_it(shown):
    rag, docs = shown
    answer = rag.ask("When was the Kestrel Point lighthouse built?")
    c = answer.citations[0]
    assert answer.answered and c.source.endswith("harbour.pdf") and c.page == 2 and "1874" in c.quote
    assert len(c.boxes) == 1 and c.to_dict()["boxes"][0]["y0"] > 0.05  # one line, below the page's top
    truth = _truth(c)
    assert truth is not None and iou([(b.x0, b.y0, b.x1, b.y1) for b in c.boxes], truth) >= 0.9


@pytest.mark.integration
def test_the_page_picture_has_the_highlight_inside_the_box_and_nowhere_else(shown):
    rag, _ = shown
    c = rag.ask("When was the Kestrel Point lighthouse built?").citations[0]
    page = rag.page_image(c.source, c.page, c.start, c.end, width=900)
    assert page.png.startswith(b"\x89PNG") and page.width == 900 and page.notice == ""
    box = c.to_dict()["boxes"][0]
    assert highlight_share(page.png, (box["x0"], box["y0"], box["x1"], box["y1"])) > 0.5
    assert highlight_share(page.png, (0, 0, 1, box["y0"] - 0.01)) < 0.001  # above it: paper and text only
    page_one = rag.page_image(c.source, 1, width=600)
    assert page_one.width == 720 and highlight_share(page_one.png) < 0.001  # drawn at the next of the fixed widths


@pytest.mark.integration
def test_an_ocr_line_is_boxed_on_the_picture(shown):
    rag, _ = shown
    hit = next(h for h in rag.search("When did the Harbour Gate bridge open?") if h.chunk.source.endswith("bridge.png"))
    text = hit.chunk.text
    start = hit.chunk.start + text.index("1931") - 10
    boxes = rag._placed(_citation(hit, start, start + 12)).boxes
    assert len(boxes) == 1
    b = boxes[0].to_dict()
    assert 0.3 < b["y0"] < b["y1"] < 0.8 and b["x0"] < 0.2 and b["x1"] > 0.5  # the second line of the picture
    page = rag.page_image(hit.chunk.source, None, start, start + 12, width=700)
    assert page.notice == "" and highlight_share(page.png, (b["x0"], b["y0"], b["x1"], b["y1"])) > 0.3


def _citation(hit, start, end):
    from ragapp.records import Citation

    return Citation(source=hit.chunk.source, page=hit.chunk.page, start=start, end=end, score=1.0, chunk_id=hit.chunk.id)


@pytest.mark.integration
def test_a_changed_a_deleted_and_a_huge_page_each_say_so(shown, tmp_path):
    rag, docs = shown
    tall = next(d.source for d in rag.documents() if d.source.endswith("scroll.pdf"))
    capped = rag.page_image(tall, 1, 0, 20, width=4000)
    assert "render cap" in capped.notice and capped.width < 4000 and capped.png.startswith(b"\x89PNG")
    c = rag.ask("When was the Kestrel Point lighthouse built?").citations[0]
    backup = tmp_path / "harbour.pdf"
    shutil.copy(c.source, backup)
    try:
        write_pdf(c.source, [["Harbour notes"], ["Rewritten: the lighthouse page is gone."]])
        changed = rag.page_image(c.source, c.page, c.start, c.end)
        assert "Changed since indexed" in changed.notice and changed.boxes == () and highlight_share(changed.png) < 0.001
        (docs / "harbour.pdf").unlink()
        gone = rag.page_image(c.source, c.page, c.start, c.end)
        assert "gone" in gone.notice and gone.png.startswith(b"\x89PNG")
    finally:
        shutil.copy(backup, c.source)
    assert rag.page_image(c.source, c.page, c.start, c.end).boxes == c.boxes  # as indexed again: the boxes are back
    with pytest.raises(LookupError):
        rag.page_image(str(tmp_path / "elsewhere.pdf"), 1)  # nothing the index does not list is read


@pytest.mark.integration
def test_a_page_that_fails_to_render_is_a_notice_and_the_answer_stays(shown, embedder, cache_dir):
    rag, _ = shown
    # A renderer that cannot finish in time (a hostile page's content) is stopped, as ingest's parser is.
    starved = RAG(rag.path, Config.load(cache_dir=cache_dir, ingest__pdf_timeout_s=0.05), embedder=embedder,
                  generator=EchoGenerator(needle="1874"))
    answer = starved.ask("When was the Kestrel Point lighthouse built?")
    c = answer.citations[0]
    assert answer.answered and c.boxes  # the boxes come from the index, not from the renderer
    page = starved.page_image(c.source, c.page, c.start, c.end)
    assert page.notice.startswith("The page could not be shown") and "longer than 0.05 s" in page.notice
    assert page.png.startswith(b"\x89PNG") and highlight_share(page.png) < 0.001


@pytest.mark.integration
def test_an_index_without_geometry_opens_and_says_a_rebuild_adds_pages(shown, tmp_path, embedder, cache_dir):
    rag, _ = shown
    old = tmp_path / "old"
    shutil.copytree(rag.path, old)
    (old / "pages.sqlite").unlink()
    before = RAG(old, Config(cache_dir=cache_dir), embedder=embedder, generator=EchoGenerator(needle="1874"))
    c = before.ask("When was the Kestrel Point lighthouse built?").citations[0]
    assert c.boxes == () and "1874" in c.quote
    assert "rebuild" in before.page_image(c.source, c.page, c.start, c.end).notice
    assert "--rebuild" in before.info().to_dict()["pages"] and rag.info().to_dict()["pages"] is True


@pytest.mark.integration
def test_ragapp_ask_show_writes_the_page_and_json_has_the_boxes(shown, tmp_path, cache_dir):
    rag, _ = shown
    cfg = tmp_path / "ragapp.toml"
    cfg.write_text(f'cache_dir = "{cache_dir}"\n', encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "ragapp.cli", "ask", "When was the Kestrel Point lighthouse built?",
                          "--index", str(rag.path), "--config", str(cfg), "--json", "--show", "--show-dir", str(tmp_path / "pages")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    cited = [c for c in json.loads(out.stdout)["citations"] if c["source"].endswith("harbour.pdf")]
    assert cited and cited[0]["boxes"] and cited[0]["page_png"].startswith(str(tmp_path / "pages"))
    box = cited[0]["boxes"][0]
    png = open(cited[0]["page_png"], "rb").read()
    assert highlight_share(png, (box["x0"], box["y0"], box["x1"], box["y1"])) > 0.5

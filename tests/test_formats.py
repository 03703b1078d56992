"""Every format ingest reads: Word, PowerPoint, Excel, CSV/TSV, EPUB, e-mail, images and scanned
PDFs (OCR), with real files written by the real libraries, the shared scans and photos, the broken
and hostile cases, and questions whose answers sit in a table, on a slide's notes, in a sheet's row
and on a scanned page."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ROOT
from helpers.officefiles import encrypted_xlsx, write_docx, write_eml, write_epub, write_pptx, write_xlsx, zip_bomb

from ragapp.config import IngestConfig
from ragapp.errors import DocumentError
from ragapp.load import iter_pages, load_file

SHARED_OCR = ROOT.parent / "shared" / "eval" / "ocr"
SHARED_PDFS = ROOT.parent / "shared" / "eval" / "pdfs"


def shared(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared evaluation data sits beside the clone in CI (../shared)")
    return path


def cer(text: str, truth: str) -> float:
    """Character error rate after whitespace is normalised."""
    from rapidfuzz.distance import Levenshtein

    a, b = " ".join(text.split()), " ".join(truth.split())
    return Levenshtein.distance(a, b) / len(b)


# -- each format, read ------------------------------------------------------------------------------

@pytest.mark.unit
def test_docx_keeps_order_tables_as_rows_and_margins_once(tmp_path):
    (page,) = load_file(write_docx(tmp_path / "contract.docx"))
    text = page.text
    assert page.page is None and not page.ocr
    assert text.index("Services Agreement") < text.index("- Invoices are payable within 45 days.") < text.index("付款条款")
    assert "Service: Cargo inspection; Monthly fee: EUR 3,150; Notice period: 30 days" in text
    assert text.count("Confidential — Acme Services Agreement") == 1 and text.count("Acme Ltd, 1 Quay Street") == 1
    assert "甲方应在收到发票后四十五天内付款。" in text


@pytest.mark.unit
def test_pptx_slides_are_pages_with_tables_and_notes(tmp_path):
    pages = load_file(write_pptx(tmp_path / "review.pptx"))
    assert [p.page for p in pages] == [1, 2]
    assert pages[0].text.startswith("Quarterly Review") and "Northwind Traders, third quarter" in pages[0].text
    assert pages[1].text.startswith("华东区销售\n\nSales rose in every city.\n\n城市 | 销售额")
    assert "城市: 杭州; 销售额: 830万元" in pages[1].text
    assert pages[1].text.endswith("Notes: The Hangzhou warehouse moves to Xiaoshan in March.")


@pytest.mark.unit
def test_xlsx_sheets_are_pages_named_by_the_sheet(tmp_path):
    pages = load_file(write_xlsx(tmp_path / "lists.xlsx"))
    assert [(p.page, p.label) for p in pages] == [(1, "Prices"), (2, "员工")]
    assert "Part number: PX-220; Description: Steel flange; Unit price: 32" in pages[0].text
    assert "Unit price: 14.5" in pages[0].text  # numbers as written, 32.0 as 32
    assert "姓名: 李强; 部门: 研发部; 工号: 10087" in pages[1].text


@pytest.mark.unit
def test_a_big_sheet_streams_in_parts_with_file_positions(tmp_path):
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Log")
    sheet.append(["id", "event"])
    for n in range(1, 1201):
        sheet.append([n, f"event number {n}"])
    book.save(tmp_path / "log.xlsx")
    pages = load_file(tmp_path / "log.xlsx")
    assert len(pages) == 3 and {(p.page, p.label) for p in pages} == {(1, "Log")}
    assert [p.offset for p in pages] == [0, len(pages[0].text), len(pages[0].text) + len(pages[1].text)]
    assert "id: 1200; event: event number 1200" in pages[-1].text


@pytest.mark.unit
@pytest.mark.parametrize("name, data, encoding", [
    ("prices.csv", "品名;单价\n螺丝;0.35\n垫片;0.12\n", "gbk"),
    ("prices.tsv", "品名\t单价\n螺丝\t0.35\n垫片\t0.12\n", "utf-8"),
])
def test_csv_and_tsv_rows_with_sniffed_delimiter_and_encoding(tmp_path, name, data, encoding):
    path = tmp_path / name
    path.write_bytes(data.encode(encoding))
    (page,) = load_file(path)
    assert page.text.splitlines() == ["品名 | 单价", "品名: 螺丝; 单价: 0.35", "品名: 垫片; 单价: 0.12"]


@pytest.mark.unit
def test_epub_chapters_are_pages_in_spine_order(tmp_path):
    pages = load_file(write_epub(tmp_path / "book.epub"))
    assert [(p.page, p.label) for p in pages] == [(1, "Chapter One"), (2, "第二章")]
    assert "The lighthouse keeper lit the lamp at dusk." in pages[0].text and pages[0].text.count("Chapter One") == 1
    assert "灯塔守护人在黎明时熄灭了灯。" in pages[1].text


@pytest.mark.unit
def test_eml_headers_body_and_text_attachments(tmp_path):
    pages = load_file(write_eml(tmp_path / "move.eml"))
    assert [(p.page, p.label) for p in pages] == [(None, None), (1, "racks.txt")]
    head = pages[0].text
    assert "From: Li Wei <li.wei@example.com>" in head and "Subject: 机房搬迁通知" in head
    assert "机房将于三月十五日搬到二号楼。" in head and "Attachments not read: floor.png" in head
    assert pages[1].text.strip() == "Rack B7 holds the backup tape library."


@pytest.mark.unit
def test_places_are_named_as_people_say_them():
    from ragapp.records import place

    assert place("deck.pptx", 3) == "slide 3"
    assert place("book.xlsx", 2, "员工") == "sheet 员工"
    assert place("novel.epub", 1, "Chapter One") == "chapter 1 (Chapter One)"
    assert place("scan.pdf", 4, ocr=True) == "page 4, OCR"
    assert place("photo.jpg", None, ocr=True) == "OCR"
    assert place("notes.txt", None) == ""


# -- broken and hostile files -----------------------------------------------------------------------

def _broken_files(tmp_path: Path) -> dict[str, str]:
    """Broken Office files (and a binary file named .eml), each with the reason it must be reported with."""
    from pptx import Presentation

    docx = write_docx(tmp_path / "whole.docx").read_bytes()
    (tmp_path / "truncated.docx").write_bytes(docx[: len(docx) // 2])
    zip_bomb(tmp_path / "bomb.docx", size=40 << 20)
    zip_bomb(tmp_path / "many.docx", entries=300)
    encrypted_xlsx(tmp_path / "salaries.xlsx")
    Presentation().save(tmp_path / "empty.pptx")
    (tmp_path / "old.docx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))
    (tmp_path / "whole.docx").unlink()
    (tmp_path / "noise.eml").write_bytes(bytes(range(256)) * 16)
    return {"truncated.docx": "not a valid zip package, truncated or broken",
            "bomb.docx": r"40 MB uncompressed, over the 16 MB limit \(ingest.unzip_max_mb; a zip bomb\?\)",
            "many.docx": r"300 entries in the archive, over the limit of 200 \(ingest.zip_max_entries; a zip bomb\?\)",
            "salaries.xlsx": r"password-protected \(encrypted\) Office file",
            "empty.pptx": "no text",
            "old.docx": r"an old binary Office file \(.doc/.xls/.ppt\)",
            "noise.eml": r"not an e-mail message \(no From, To, Subject, Date or Message-ID header\)"}


@pytest.mark.unit
def test_broken_office_files_are_reported_by_name_and_reason(tmp_path):
    limits = IngestConfig(unzip_max_mb=16, zip_max_entries=200)
    for name, reason in _broken_files(tmp_path).items():
        with pytest.raises(DocumentError) as info:
            load_file(tmp_path / name, limits=limits)
        assert str(info.value).startswith(str(tmp_path / name) + ": ") and re.search(reason, str(info.value)), name


@pytest.mark.unit
def test_an_image_bomb_is_refused_not_decoded(tmp_path):
    from PIL import Image

    path = tmp_path / "bomb.png"
    Image.new("1", (12_000, 12_000)).save(path)  # 144 megapixels in ~20 KB
    with pytest.raises(DocumentError, match=r"bomb.png: unreadable image \(DecompressionBombError"):
        load_file(path, limits=IngestConfig(render_max_pixels=25_000_000))


@pytest.mark.integration
def test_hostile_shared_pdfs_are_bounded_and_reported():
    """hugemono.pdf hides a 35000 x 35000 image in 11 KB, enormous.pdf a huge page: both render at the
    capped size within the memory limit; invalid.pdf is reported as broken."""
    import time

    t0 = time.perf_counter()
    with pytest.raises(DocumentError, match="no text found"):
        load_file(shared(SHARED_OCR, "hugemono.pdf"))
    (page,) = load_file(shared(SHARED_OCR, "enormous.pdf"))
    assert page.ocr and "9000x9000 pixels" in page.text
    with pytest.raises(DocumentError, match=r"invalid.pdf: unreadable PDF \(PdfReadError"):
        load_file(shared(SHARED_OCR, "invalid.pdf"))
    assert time.perf_counter() - t0 < 120


@pytest.mark.integration
def test_ocr_page_time_limit_skips_the_page_and_keeps_the_rest(tmp_path):
    from PIL import Image

    scan = Image.open(shared(SHARED_OCR, "linn.png")).convert("RGB")
    scan.save(tmp_path / "two.pdf", save_all=True, append_images=[scan])
    warnings: list[str] = []
    with pytest.raises(DocumentError, match="no readable text"):
        list(iter_pages(tmp_path / "two.pdf", limits=IngestConfig(ocr_page_timeout_s=0.5), on_warning=warnings.append))
    assert warnings == [f"page {n} skipped: OCR took longer than 0.5 s (ingest.ocr_page_timeout_s)" for n in (1, 2)]
    scan.save(tmp_path / "five.pdf", save_all=True, append_images=[scan] * 4)
    with pytest.raises(DocumentError, match=r"five.pdf: OCR took longer than 0.5 s \(ingest.ocr_page_timeout_s\) on 4 pages; "
                                            "stopped"):
        load_file(tmp_path / "five.pdf", limits=IngestConfig(ocr_page_timeout_s=0.5))


# -- OCR quality on the shared scans and photos -----------------------------------------------------

@pytest.mark.integration
def test_ocr_reads_the_scanned_page_straight_skewed_and_rotated():
    truth = shared(SHARED_OCR, "linn.txt").read_text(encoding="utf-8")
    for name in ("linn.pdf", "skew.pdf", "rotated_skew.pdf"):
        (page,) = load_file(shared(SHARED_OCR, name))
        assert page.page == 1 and page.ocr
        assert cer(page.text, truth) < 0.05, name  # measured 0.028, 0.022, 0.021 (bench/formats.py)


@pytest.mark.integration
def test_ocr_reads_a_chinese_photo_and_vertical_columns_in_order():
    (label,) = load_file(shared(SHARED_OCR, "ch_en_num.jpg"))
    assert label.page is None and label.ocr
    assert label.text.splitlines()[:3] == ["正品促销", "大桶装更划算", "强力去污符合国标"]
    (vertical,) = load_file(shared(SHARED_OCR, "text_vertical_words.png"))
    columns = vertical.text.splitlines()
    expected = ["有評是是非非之士師也", "是非不得問之人要取之", "已取之時不參一人見而"]  # right to left
    assert len(columns) == 3 and all(cer(c, e) <= 0.1 for c, e in zip(columns, expected)), columns


@pytest.mark.integration
def test_a_garbled_text_layer_is_read_by_ocr_not_indexed():
    (page,) = load_file(shared(SHARED_OCR, "truetype_font_nomapping.pdf"))
    assert page.ocr and page.text.strip() == "Phone"  # the text layer extracts as '"7+%-'


# -- questions answered from each format, with the right page cited ---------------------------------

def _scanned_chinese_pdf(path: Path) -> Path:
    """Pages 2 and 3 of a real Chinese report rendered to images, turned 3 degrees, with noise, as an
    image-only PDF: page 2 of the scan holds the quarter's revenue."""
    import numpy as np
    import pypdfium2
    from PIL import Image

    doc = pypdfium2.PdfDocument(shared(SHARED_PDFS, "zh_quarterly_report_tables_22p.pdf"))
    rng = np.random.default_rng(0)
    scans = []
    for number in (2, 3):
        image = doc[number - 1].render(scale=150 / 72).to_pil().convert("L").rotate(3, expand=True, fillcolor=255)
        pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 18, (image.height, image.width)).astype(np.int16)
        scans.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB"))
    scans[0].save(path, save_all=True, append_images=scans[1:])
    return path


@pytest.fixture(scope="module")
def formats_index(tmp_path_factory, config, embedder):
    from ragapp import RAG

    folder = tmp_path_factory.mktemp("formats")
    write_docx(folder / "contract.docx")
    write_pptx(folder / "review.pptx")
    write_xlsx(folder / "lists.xlsx")
    write_eml(folder / "move.eml")
    shutil.copy(shared(SHARED_OCR, "linn.pdf"), folder / "linn.pdf")
    _scanned_chinese_pdf(folder / "季度报告扫描.pdf")
    broken = tmp_path_factory.mktemp("broken")
    reasons = _broken_files(broken)
    for name in reasons:
        shutil.copy(broken / name, folder / name)
    path = folder.parent / (folder.name + "-index")
    strict = config.with_(ingest=replace(config.ingest, unzip_max_mb=16, zip_max_entries=200))
    report = RAG(path, strict, embedder=embedder).ingest([folder])
    return path, report, reasons


@pytest.mark.integration
def test_a_folder_of_every_format_goes_in_and_broken_files_are_named(formats_index):
    _, report, reasons = formats_index
    added = sorted(Path(p).name for p in report.added)
    assert added == sorted(["contract.docx", "review.pptx", "lists.xlsx", "move.eml", "linn.pdf", "季度报告扫描.pdf"])
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert set(failed) == set(reasons)
    for name, reason in reasons.items():
        assert re.search(reason, failed[name]), (name, failed[name])


@pytest.mark.parametrize("question, reply, source, place", [
    ("What is the monthly fee for cargo inspection?", "Cargo inspection costs EUR 3,150 a month.", "contract.docx", ""),
    ("Where does the Hangzhou warehouse move to?", "The Hangzhou warehouse moves to Xiaoshan in March.", "review.pptx",
     "slide 2"),
    ("李强在哪个部门？", "李强在研发部，工号10087。", "lists.xlsx", "sheet 员工"),
    ("How many notes does one LinnSequencer disk hold?", "One disk holds over 110,000 notes.", "linn.pdf", "page 1, OCR"),
    ("东北电气2018年第一季度的营业收入是多少元？", "营业收入为4,755,785.11元。", "季度报告扫描.pdf", "page 2, OCR"),
])
@pytest.mark.integration
def test_answers_cite_the_right_page_of_each_format(formats_index, config, embedder, echo_generator,
                                                    question, reply, source, place):
    """The model's answer (fixed here) is cited to the passage that supports it: the right file and page."""
    from ragapp import RAG

    path, _, _ = formats_index
    answer = RAG(path, config, embedder=embedder, generator=echo_generator(reply=reply)).ask(question)
    assert answer.answered, answer.reason
    top = answer.citations[0]
    assert (Path(top.source).name, top.place) == (source, place), [(Path(c.source).name, c.place) for c in answer.citations]
    assert top.to_dict()["place"] == place and top.to_dict()["ocr"] == place.endswith("OCR")


@pytest.mark.integration
def test_info_counts_documents_by_type_and_ocr_pages(formats_index, config, embedder):
    from ragapp import RAG

    path, _, _ = formats_index
    data = RAG(path, config, embedder=embedder).info().to_dict()
    assert data["types"] == {"docx": 1, "eml": 1, "pdf": 2, "pptx": 1, "xlsx": 1}
    assert data["ocr_pages"] == 3  # linn.pdf's page and both pages of the Chinese scan

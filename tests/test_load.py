import pytest
from conftest import SHARED_PDFS
from helpers.pdfwriter import write_pdf

from ragapp.errors import DocumentError
from ragapp.load import load_file

pytestmark = pytest.mark.unit

ZH = "长城是中国古代的军事防御工程。"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16"])
def test_chinese_text_in_common_encodings(tmp_path, encoding):
    f = tmp_path / "zh.txt"
    f.write_bytes(ZH.encode(encoding))
    (page,) = load_file(f)
    assert page.text == ZH and page.page is None


def test_latin1_and_mixed_line_endings(tmp_path):
    f = tmp_path / "fr.txt"
    f.write_bytes("Café au lait\r\nsecond line\rthird\n".encode("latin-1"))
    assert load_file(f)[0].text == "Café au lait\nsecond line\nthird\n"


def test_invisible_and_control_characters_removed(tmp_path):
    f = tmp_path / "z.md"
    f.write_text("zero\u200bwidth\x07bell", encoding="utf-8")
    assert load_file(f)[0].text == "zerowidth bell"


def test_pdf_pages_are_numbered(tmp_path):
    pdf = write_pdf(tmp_path / "two.pdf", [["First page says hello."], ["Second page says goodbye."]])
    pages = load_file(pdf)
    assert [(p.page, p.text.strip()) for p in pages] == [(1, "First page says hello."), (2, "Second page says goodbye.")]


def test_html_text_without_scripts(tmp_path):
    f = tmp_path / "p.html"
    f.write_text("<html><script>var x=1;</script><p>Para one.</p><p>Para &amp; two.</p></html>", encoding="utf-8")
    text = load_file(f)[0].text
    assert "Para one." in text and "Para & two." in text and "var x" not in text


@pytest.mark.parametrize("name, reason", [
    ("edge_encrypted_password_test.pdf", "encrypted PDF"),
    ("edge_empty_0bytes.pdf", "empty file"),
    ("edge_tiny_no_text.pdf", r"no text found \(no text layer, and OCR found none in its images\)"),
])
def test_broken_real_pdfs_explain_themselves(name, reason):
    path = SHARED_PDFS / name
    if not path.exists():
        pytest.skip("../shared/eval/pdfs not present")
    with pytest.raises(DocumentError, match=reason) as info:
        load_file(path)
    assert name in str(info.value)


def test_corrupted_xref_pdf_is_recovered():
    path = SHARED_PDFS / "edge_corrupted_xref.pdf"
    if not path.exists():
        pytest.skip("../shared/eval/pdfs not present")
    assert "Beautiful is better than ugly." in load_file(path)[0].text


def test_real_chinese_pdf_keeps_pages():
    path = SHARED_PDFS / "zh_quarterly_report_tables_22p.pdf"
    if not path.exists():
        pytest.skip("../shared/eval/pdfs not present")
    pages = load_file(path)
    assert pages[0].page == 1 and "东北电气发展股份有限公司" in pages[0].text
    assert max(p.page for p in pages) == 22


def test_binary_named_txt_is_refused(tmp_path):
    f = tmp_path / "bin.txt"
    f.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(DocumentError, match="binary"):
        load_file(f)


def test_fake_bold_doubling_is_collapsed():
    from ragapp.load import drop_repeated_lines, undouble

    assert undouble("长长城城是是中中国国的。看看这个") == "长城是中国的。看看这个"  # a single 看看 is a real word
    assert drop_repeated_lines("本科\n本科\n高中\n高中\n\n\n正文") == "本科\n高中\n\n\n正文"


def test_real_fake_bold_resume_is_deduplicated():
    path = SHARED_PDFS / "zh_resume_duplicate_chars_2p.pdf"
    if not path.exists():
        pytest.skip("../shared/eval/pdfs not present")
    pages = load_file(path)
    assert len(pages) == 2 and pages[0].text.startswith("本科\n计算机科学与技术（应用技术）\n高中\n")


def test_random_bytes_refused_but_stray_nuls_dropped(tmp_path):
    import random

    junk = tmp_path / "junk.txt"
    rng = random.Random(0)
    junk.write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
    with pytest.raises(DocumentError, match="junk.txt: binary content"):
        load_file(junk)
    log = tmp_path / "log.txt"
    log.write_bytes(b"Some text\x00 with\x00 stray NULs.\n" * 20)
    assert load_file(log)[0].text.startswith("Some text  with  stray NULs.\n")


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030", "utf-16"])
def test_text_is_streamed_in_segments_cut_at_line_ends(tmp_path, encoding):
    from ragapp.split import split_pages

    lines = [f"第{i}行：长城是中国古代的军事防御工程。Line {i} of the log.\r\n" for i in range(400)]
    whole = "".join(lines)
    f = tmp_path / "long.txt"
    f.write_bytes(whole.encode(encoding))
    pages = load_file(f, segment_chars=1000)
    expected = whole.replace("\r\n", "\n")
    assert len(pages) > 5
    assert "".join(p.text for p in pages) == expected
    assert all(p.text.endswith("\n") for p in pages[:-1])  # cut after a line, never inside one
    assert [p.offset for p in pages] == [sum(len(q.text) for q in pages[:i]) for i in range(len(pages))]
    chunks = split_pages(pages, size=120, overlap=20)
    assert all(expected[c.start : c.end] == c.text for c in chunks)  # positions are file positions
    assert chunks[-1].text.endswith("Line 399 of the log.")


def test_encoding_is_decided_on_the_whole_file(tmp_path):
    f = tmp_path / "late.txt"
    f.write_bytes(b"plain words " * 200_000 + "é".encode("latin-1") + b" and more")
    pages = load_file(f)  # UTF-8 for 2.4 MB, then not: the whole file is Latin-1, not half read
    page = pages[-1]
    assert page.text.endswith("é and more")

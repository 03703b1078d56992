"""Real Office, EPUB and e-mail files written by the real libraries (python-docx, python-pptx,
openpyxl) and the standard library, in English and Chinese, for the format tests."""

from __future__ import annotations

import zipfile
from email.message import EmailMessage
from pathlib import Path

# Revenue by quarter and region: a small sheet for the table questions (tests/test_tables.py, test_serve.py).
SALES_CSV = """Quarter,Region,Revenue,Growth
2023 Q1,North,"1,200",5.2%
2023 Q1,South,950,3.1%
2023 Q2,North,"1,350",6.0%
2023 Q2,South,"1,010",2.4%
2023 Q3,North,"1,420",4.8%
2023 Q3,South,990,-1.2%
2023 Q4,North,"1,600",7.5%
2023 Q4,South,"1,120",4.0%
"""


def write_docx(path: Path) -> Path:
    """A contract: heading, paragraphs, a list, a fee table, a header and footer on every page."""
    from docx import Document

    doc = Document()
    doc.sections[0].header.paragraphs[0].text = "Confidential — Acme Services Agreement"
    doc.sections[0].footer.paragraphs[0].text = "Acme Ltd, 1 Quay Street"
    doc.add_heading("Services Agreement", level=1)
    doc.add_paragraph("This agreement is made between Acme Ltd and Borealis Shipping.")
    doc.add_paragraph("Invoices are payable within 45 days.", style="List Bullet")
    doc.add_paragraph("Late payments carry interest of 2 percent per month.", style="List Bullet")
    table = doc.add_table(rows=3, cols=3)
    for row, values in zip(table.rows, [("Service", "Monthly fee", "Notice period"),
                                        ("Harbour pilotage", "EUR 12,400", "90 days"),
                                        ("Cargo inspection", "EUR 3,150", "30 days")]):
        for cell, value in zip(row.cells, values):
            cell.text = value
    doc.add_heading("付款条款", level=2)
    doc.add_paragraph("甲方应在收到发票后四十五天内付款。")
    doc.save(path)
    return path


def write_pptx(path: Path) -> Path:
    """A two-slide deck: a title slide, and a slide with a table and speaker notes."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[0])
    first.shapes.title.text = "Quarterly Review"
    first.placeholders[1].text = "Northwind Traders, third quarter"
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "华东区销售"
    second.shapes.add_textbox(Inches(1), Inches(1.4), Inches(6), Inches(0.5)).text_frame.text = "Sales rose in every city."
    shape = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(6), Inches(1.5))
    for r, values in enumerate([("城市", "销售额"), ("杭州", "830万元")]):
        for c, value in enumerate(values):
            shape.table.cell(r, c).text = value
    second.notes_slide.notes_text_frame.text = "The Hangzhou warehouse moves to Xiaoshan in March."
    deck.save(path)
    return path


def write_xlsx(path: Path) -> Path:
    """Two sheets: an English price list and a Chinese staff list."""
    from openpyxl import Workbook

    book = Workbook()
    prices = book.active
    prices.title = "Prices"
    for row in [("Part number", "Description", "Unit price"), ("PX-100", "Brass valve", 14.5), ("PX-220", "Steel flange", 32)]:
        prices.append(row)
    staff = book.create_sheet("员工")
    for row in [("姓名", "部门", "工号"), ("王芳", "财务部", 10023), ("李强", "研发部", 10087)]:
        staff.append(row)
    book.save(path)
    return path


def write_epub(path: Path) -> Path:
    """A two-chapter EPUB 3 book."""
    chapters = [("Chapter One", "<p>The lighthouse keeper lit the lamp at dusk.</p>"),
                ("第二章", "<p>灯塔守护人在黎明时熄灭了灯。</p>")]
    manifest = "".join(f'<item id="c{i}" href="text/c{i}.xhtml" media-type="application/xhtml+xml"/>' for i in range(2))
    spine = "".join(f'<itemref idref="c{i}"/>' for i in range(2))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/container.xml", '<?xml version="1.0"?><container version="1.0" '
                   'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
                   '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
                   '</rootfiles></container>')
        z.writestr("OEBPS/content.opf", '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" '
                   f'version="3.0"><manifest>{manifest}</manifest><spine>{spine}</spine></package>')
        for i, (title, body) in enumerate(chapters):
            z.writestr(f"OEBPS/text/c{i}.xhtml", f'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>{title}'
                       f"</title></head><body><h1>{title}</h1>{body}</body></html>")
    return path


def write_eml(path: Path) -> Path:
    """A message with a plain body, a text attachment and a binary attachment."""
    msg = EmailMessage()
    msg["From"] = "Li Wei <li.wei@example.com>"
    msg["To"] = "ops@example.com"
    msg["Subject"] = "机房搬迁通知"
    msg["Date"] = "Mon, 02 Mar 2026 09:30:00 +0800"
    msg.set_content("各位同事：机房将于三月十五日搬到二号楼。\nThe server room moves to Building 2 on 15 March.\n")
    msg.add_attachment(b"Rack B7 holds the backup tape library.\n", maintype="text", subtype="plain",
                       filename="racks.txt")
    msg.add_attachment(b"\x89PNG\r\n\x1a\n" + bytes(64), maintype="image", subtype="png", filename="floor.png")
    path.write_bytes(bytes(msg))
    return path


def zip_bomb(path: Path, entries: int = 1, size: int = 0) -> Path:
    """A zip package with `entries` entries and one entry of `size` zero bytes (compressed ~1000:1)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        for n in range(entries - 1):
            z.writestr(f"word/e{n}.xml", "")
        if size:
            with z.open("word/document.xml", "w", force_zip64=True) as f:
                block = bytes(1 << 20)
                for _ in range(size >> 20):
                    f.write(block)
    return path


def encrypted_xlsx(path: Path) -> Path:
    """A workbook really encrypted with a password (msoffcrypto-tool), as Excel writes it."""
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = write_xlsx(path.with_name(path.stem + ".plain.xlsx"))
    with open(plain, "rb") as source, open(path, "wb") as f:
        OOXMLFile(source).encrypt("s3cret", f)
    plain.unlink()
    return path

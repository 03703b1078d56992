"""Hostile input: build a messy folder, ingest it with the real `ragapp ingest`, print what happened to each file.

    python bench/hostile.py            # full sizes (a 500 MB text, a 5 MB single line, a 300-page PDF)
    python bench/hostile.py --quick    # smaller big files, for a quick look

Prints a Markdown table (input, what ragapp did, searchable?) that docs/benchmarks.md quotes, and the
peak memory of the ingest process. Real PDFs from ../shared/eval/pdfs are referenced, not copied.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers.pdfwriter import write_flate_pdf, write_pdf  # noqa: E402
from helpers.privileges import without_file_override  # noqa: E402

from bench.common import EVAL, machine  # noqa: E402
from ragapp.text import shown  # noqa: E402

ZH = "长城是中国古代的军事防御工程，总长度为21196.18千米。"
EN = "The lighthouse on Kestrel Point was built in 1874 by Mary Alden."


def build(folder: Path, quick: bool) -> dict[str, tuple[str, str | None]]:
    """Write the hostile corpus; returns relative path → (description, a query that should find it or None)."""
    from pypdf import PdfWriter

    items: dict[str, tuple[str, str | None]] = {}

    def add(rel: str, what: str, query: str | None, data: bytes | None = None) -> Path:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            path.write_bytes(data)
        items[rel] = (what, query)
        return path

    # PDFs
    (folder / "pdf").mkdir(parents=True)
    plain = write_pdf(folder / "pdf" / "plain.pdf", [["The Orion probe measured 42 craters on the far side."]])
    items["pdf/plain.pdf"] = ("PDF with a text layer", "How many craters did the Orion probe measure?")
    writer = PdfWriter(clone_from=str(plain))
    writer.encrypt("test")
    with open(add("pdf/encrypted.pdf", "PDF encrypted with password 'test'", None), "wb") as f:
        writer.write(f)
    add("pdf/empty.pdf", "PDF of 0 bytes", None, b"")
    raw = bytearray(plain.read_bytes())
    xref = raw.rindex(b"xref")
    raw[xref + 20 : xref + 60] = b"9" * 40  # offsets point nowhere
    add("pdf/corrupt_xref.pdf", "PDF with a corrupted xref table", "Orion probe craters far side", bytes(raw))
    write_pdf(folder / "pdf" / "scanned.pdf", [[]])
    items["pdf/scanned.pdf"] = ("PDF without a text layer (a scan)", None)
    pages = 30 if quick else 300
    write_pdf(folder / "pdf" / "long.pdf", [[f"Page {i} of the long report lists reactor {i * 7}."] for i in range(1, pages + 1)])
    items["pdf/long.pdf"] = (f"{pages}-page PDF", f"Which page lists reactor {7 * (pages - 1)}?")
    shared = EVAL / "pdfs"
    for name, what in (("zh_resume_duplicate_chars_2p.pdf", "real Chinese PDF with fake-bold duplicated text"),
                       ("zh_audit_letter_garbled_6p.pdf", "real Chinese PDF with a garbled (OCR-error) text layer"),
                       ("edge_corrupted_xref.pdf", "real PDF with a corrupted xref"),
                       ("edge_encrypted_password_test.pdf", "real encrypted PDF"),
                       ("edge_tiny_no_text.pdf", "real PDF with no text"),
                       ("zh_one_line.pdf", "real Chinese PDF that is one long line")):
        if (shared / name).exists():  # copied into the temporary folder only (licences): never into the repo
            target = folder / "shared" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shared / name, target)
            items[f"shared/{name}"] = (what, None)
    write_flate_pdf(folder / "pdf" / "bomb.pdf", "The bomb file has a harmless first page about the Vela probe.",
                    expanded=(1 << 28) if quick else (1 << 30))
    items["pdf/bomb.pdf"] = (f"PDF bomb: page 2 inflates to {256 if quick else 1024} MB", "What is the bomb file's first page about?")

    _office_and_scans(folder, items, add)

    # Text files
    add("text/gbk.txt", "GBK-encoded Chinese", "长城的总长度是多少？", ZH.encode("gbk"))
    add("text/gb18030.txt", "GB18030-encoded Chinese", None, ("𠀀 " + ZH).encode("gb18030"))
    add("text/utf16.txt", "UTF-16 with BOM", None, codecs.BOM_UTF16_LE + EN.encode("utf-16-le"))
    add("text/latin1.txt", "Latin-1", "Where is the café of Zoë?", "Zoë runs the café in Mâcon since 1990.".encode("latin-1"))
    add("text/mixed_endings.txt", "mixed CRLF / LF / CR line endings", None, b"First line.\r\nSecond line.\nThird line.\rFourth.")
    rng = random.Random(0)
    add("text/binary.txt", "binary data named .txt", None, bytes(rng.randrange(256) for _ in range(4096)))
    add("text/empty.txt", "empty file", None, b"")
    add("text/zero_width.txt", "zero-width and control characters", "Where did the zebra sleep?",
        "The ze\u200bbra slept\x07 in the\u200d barn\x1b near the river.".encode())
    add("text/nul.txt", "text with NUL bytes", None, b"Some text\x00 with\x00 NULs\x00" * 20)
    for name, unit in (("dots", "."), ("bangs", "!?"), ("cjk_punctuation", "。，！？")):
        add(f"text/{name}.txt", f"1 MB of {unit!r} (made sentence splitting quadratic before)", None,
            ("Start. " + unit * (1_000_000 // len(unit.encode()))).encode())
    big_mb = 5 if quick else 500
    with open(add("text/huge.txt", f"{big_mb} MB text file, one line, with a needle at its very end",
                  "Who was the night watchman of the archive?"), "wb") as f:
        block = (EN + " ").encode() * (1 << 14)
        for _ in range(big_mb * 1_000_000 // len(block) + 1):
            f.write(block)
        f.write(b"The night watchman of the archive was named Tobias Wren.")
    line_mb = 0.5 if quick else 5
    add("text/one_line.txt", f"a single {line_mb} MB line without spaces", "长城的总长度是多少？",
        (ZH * int(line_mb * 1_000_000 / len(ZH.encode()))).encode())

    # The file system
    deep = folder / "deep"
    for i in range(50):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (deep / "bottom.md").write_text("The treasure is buried under the old oak.\n", encoding="utf-8")
    items[str((deep / "bottom.md").relative_to(folder))] = ("file 50 folders deep", "Where is the treasure buried?")
    (folder / "loop").mkdir()
    os.symlink(folder / "loop", folder / "loop" / "again")
    items["loop/again"] = ("symlink loop", None)
    secret = folder.parent / "outside" / "diary.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("My bank PIN is 4321.\n", encoding="utf-8")
    (folder / "fs").mkdir(exist_ok=True)
    os.symlink(secret, folder / "fs" / "diary.txt")
    items["fs/diary.txt"] = ("symlink to a file outside the folder", None)
    locked = add("fs/locked.txt", "unreadable file (mode 000)", None, b"secret")
    locked.chmod(0)
    add("fs/名字 with spaces 'and' \"quotes\".md", "name with Chinese, spaces and quotes", "What colour is the kite?",
        b"The kite is bright orange.\n")
    add("fs/.hidden.md", "hidden file", None, b"hidden text")
    add("fs/.notes.md.swp", "editor swap file", None, b"swap")
    add("fs/notes.md~", "editor backup file", None, b"backup")
    add("dup/a/same.md", "identical file, first copy", "What does the parrot say?", b"The parrot says hello in Welsh.\n")
    add("dup/b/same.md", "identical file, second copy", "What does the parrot say?", b"The parrot says hello in Welsh.\n")
    return items


def _office_and_scans(folder: Path, items: dict, add) -> None:
    """Every file of ../shared/eval/ocr (copied into the temporary folder only), and broken Office,
    EPUB, e-mail and image files."""
    from helpers.officefiles import encrypted_xlsx, write_docx, write_pptx, zip_bomb
    from PIL import Image

    scans = {"linn.pdf": ("scanned page, no text layer (OCR)", "How many notes does one LinnSequencer disk hold?"),
             "skew.pdf": ("the scan placed skewed (OCR)", None), "rotated_skew.pdf": ("the scan rotated and skewed (OCR)", None),
             "multipage.pdf": ("several scanned pages (OCR)", None), "linn.png": ("the scan as a PNG (OCR)", None),
             "typewriter.png": ("typewritten Dutch recipe (OCR)", "linzensoep"),
             "ch_en_num.jpg": ("photo of a Chinese product label (OCR)", "强力去污符合国标"),
             "en.jpg": ("photo of English text (OCR)", "MovieShots dataset shot type annotation"),
             "text_vertical_words.png": ("vertical traditional Chinese (OCR)", None),
             "truetype_font_nomapping.pdf": ("text layer whose font has no Unicode mapping", None),
             "hugemono.pdf": ("11 KB PDF holding a 35000 x 35000 image", None),
             "enormous.pdf": ("PDF with an enormous page", None), "invalid.pdf": ("PDF header then EOF (44 bytes)", None),
             "linn.txt": ("the scan's ground truth as text", None)}
    for name, (what, query) in scans.items():
        if (EVAL / "ocr" / name).exists():  # copied into the temporary folder only (licences): never into the repo
            add(f"ocr/{name}", what, query, (EVAL / "ocr" / name).read_bytes())
    office = folder / "office"
    office.mkdir(parents=True)
    whole = write_docx(office / "contract.docx").read_bytes()
    items["office/contract.docx"] = ("Word file with a table", "What is the monthly fee for cargo inspection?")
    add("office/truncated.docx", "truncated .docx (first half)", None, whole[: len(whole) // 2])
    zip_bomb(office / "bomb.docx", size=1200 << 20)
    items["office/bomb.docx"] = ("zip bomb: .docx inflating to 1.2 GB", None)
    zip_bomb(office / "entries.docx", entries=20_000)
    items["office/entries.docx"] = ("zip bomb: .docx with 20,000 entries", None)
    encrypted_xlsx(office / "encrypted.xlsx")
    items["office/encrypted.xlsx"] = ("password-protected .xlsx", None)
    from pptx import Presentation

    Presentation().save(office / "empty.pptx")
    items["office/empty.pptx"] = ("empty .pptx (no slides)", None)
    write_pptx(office / "deck.pptx")
    items["office/deck.pptx"] = ("PowerPoint deck with speaker notes", "Where does the Hangzhou warehouse move to?")
    add("office/old.doc.docx", "old binary .doc renamed .docx", None, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096))
    add("office/broken.epub", "EPUB that is not a zip", None, b"PK\x03\x04 not really")
    add("office/binary.eml", "binary data named .eml", None, bytes(range(256)) * 16)
    add("office/bad.csv", "CSV with a 1 MB field", None, b"a,b\n" + b"x" * (1 << 20) + b",1\n")
    add("office/nul.csv", "CSV whose header holds a NUL", "Which region earned 1200?", b"Re\x00gion,Revenue\nNorth,1200\nSouth,950\n")
    add("office/wide.csv", "CSV of 2,100 columns", "c2099", (",".join(f"c{k}" for k in range(2100)) + "\n"
                                                             + ",".join(map(str, range(2100))) + "\n").encode())
    (folder / "names").mkdir()
    gbk = os.fsencode(folder / "names") + b"/" + "报告.txt".encode("gbk")  # what unzip makes of a Chinese Windows zip
    with open(gbk, "wb") as out:
        out.write("季度报告：收入增长百分之五。".encode())
    items[os.path.relpath(os.fsdecode(gbk), folder)] = ("file name in GBK, not UTF-8", None)
    Image.new("1", (30_000, 30_000)).save(office / "bomb.png")
    items["office/bomb.png"] = ("image bomb: 900-megapixel PNG", None)


class Scripted:
    """A chat model that always replies `reply` (the query a hostile model or prompt would write)."""

    name, backend, url = "scripted", "", ""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    def generate(self, messages) -> str:
        return self.reply

    def stream(self, messages):
        yield self.reply

    def loaded(self) -> bool:
        return True

    def warm_up(self) -> None:
        pass

    def special_tokens(self):
        return ()


def table_queries(csv: Path, index: Path) -> None:
    """Queries a model could write over a 3-row table, each through RAG.ask: seconds, peak memory growth, reply size."""
    from ragapp import RAG, Config

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_tables import BOMBS

    folder = index.parent / "table-docs"
    folder.mkdir()
    shutil.copy(csv, folder / "sales.csv")
    config = Config.load(tables__timeout_s=2.0)
    RAG(index, config).ingest([folder])
    print(f"\nTable queries a model could write (`[tables] timeout_s` 2 s; {machine()})")
    print("| query | seconds | peak memory growth (MB) | answer bytes | what ragapp did |\n|---|---|---|---|---|")
    for sql in BOMBS:
        rag = RAG(index, config, generator=Scripted(f"```sql\n{sql}\n```"))
        rag.search("Which region earned 1200?")
        Path("/proc/self/clear_refs").write_text("5")
        before, t0 = _peak_mb(), time.perf_counter()
        answer = rag.ask("Which region earned 1200?")
        secs, grown = time.perf_counter() - t0, _peak_mb() - before
        did = "answered from the table" if answer.table is not None else "query refused; ordinary path"
        print(f"| `{sql[:70]}{'…' if len(sql) > 70 else ''}` | {secs:.2f} | {grown:.0f} | {len(answer.text.encode())} | {did} |")


def _peak_mb() -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ragapp-hostile-"))
    try:
        folder = work / "corpus"
        items = build(folder, args.quick)
        index = work / "index"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "ragapp.cli", "ingest", str(folder), "--index", str(index), "--json"],
                              capture_output=True, text=True, preexec_fn=without_file_override)  # as a normal user, even as root
        secs = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        report = json.loads(proc.stdout)
        failed = {f["path"]: f["reason"] for f in report["failed"]}
        warned = {f["path"]: f["reason"] for f in report["warnings"]}
        ingested = set(report["added"]) | set(report["updated"]) | set(report["unchanged"])
        from ragapp import RAG

        rag = RAG(index)
        on_disk = sum(p.stat().st_size for p in index.rglob("*") if p.is_file()) / 1e6
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in report["stage_seconds"].items())
        print(f"\nHostile folder: {len(items)} inputs; ingest exit code {proc.returncode}, {secs:.0f} s ({stages}), "
              f"peak memory {peak:.0f} MB; {report['chunks']} chunks ({report['chunks_added']} embedded), "
              f"index {on_disk:.0f} MB on disk; {machine()}")
        print("| input | what ragapp did | found by a question |\n|---|---|---|")
        for rel, (what, query) in items.items():
            path = shown(folder / rel)
            real = shown((folder / rel).resolve()) if (folder / rel).exists() else path
            if path in failed:  # a symlink is reported under its own name, not its target's
                did = "reported: " + failed[path].replace("|", "/")
            elif real in failed:
                did = "reported: " + failed[real].replace("|", "/")
            elif path in ingested or real in ingested:
                n = rag.index().manifest.files[path if path in ingested else real].chunks
                did = f"ingested ({n} chunks)"
                if path in warned or real in warned:
                    did += "; reported: " + (warned.get(path) or warned[real]).replace("|", "/")
            else:
                did = "skipped (hidden, swap/backup, loop or unsupported)"
            found = "-"
            if query and did.startswith("ingested"):
                hits = rag.search(query, top_k=3)
                found = "yes" if any(h.chunk.source in (path, real) or any(c.source in (path, real) for c in h.also)
                                     for h in hits) else "no"
            print(f"| {what} (`{shown(Path(rel).name)[:40]}`) | {did} | {found} |")
        print(f"\nexit code {proc.returncode} (1 = some files failed and are listed; the rest is indexed)")
        table_queries(folder / "office" / "nul.csv", work / "tables")
    finally:
        for p in work.rglob("*"):
            if p.is_file() and not p.is_symlink():
                p.chmod(0o644)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

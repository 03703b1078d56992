"""Documents beyond text: OCR quality and speed, the PDF text layer (pypdf vs pypdfium2), and the
memory the hostile scans take. Prints the tables docs/benchmarks.md quotes.

    python bench/formats.py            # all parts
    python bench/formats.py ocr        # CER on linn/skew/rotated_skew, the photo's lines, vertical text, pages/s
    python bench/formats.py textlayer  # pypdf vs pypdfium2 on ../shared/eval/pdfs: seconds, characters, Han characters
    python bench/formats.py memory     # peak memory and time of the parser child on hugemono.pdf and enormous.pdf

Needs ../shared/eval (ocr/ and pdfs/) and rapidfuzz (in the test extra) for the edit distance.
"""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EVAL, machine  # noqa: E402

OCR_DIR, PDF_DIR = EVAL / "ocr", EVAL / "pdfs"
VERTICAL = ["有評是是非非之士師也", "是非不得問之人要取之", "已取之時不參一人見而"]  # right to left, by eye
PHOTO_FIRST_LINES = ["正品促销", "大桶装更划算", "强力去污符合国标"]  # the source suite's own assertion


def cer(text: str, truth: str) -> float:
    """Character error rate after whitespace is normalised (Levenshtein distance / length of the truth)."""
    from rapidfuzz.distance import Levenshtein

    a, b = " ".join(text.split()), " ".join(truth.split())
    return Levenshtein.distance(a, b) / max(len(b), 1)


def ocr(args) -> None:
    from ragapp.config import IngestConfig
    from ragapp.load import load_file

    truth = (OCR_DIR / "linn.txt").read_text(encoding="utf-8")
    print(f"\nOCR (RapidOCR PP-OCRv6 small, rendered at 200 dpi, one page per child process); {machine()}")
    print("| file | threads | CER vs linn.txt | seconds (incl. ~1 s model load) |\n|---|---|---|---|")
    for threads in (1, 2):
        for name in ("linn.pdf", "skew.pdf", "rotated_skew.pdf"):
            t0 = time.perf_counter()
            text = "\n".join(p.text for p in load_file(OCR_DIR / name, limits=IngestConfig(ocr_threads=threads)))
            print(f"| {name} | {threads} | {cer(text, truth):.3f} | {time.perf_counter() - t0:.1f} |")
    t0 = time.perf_counter()
    pages = load_file(OCR_DIR / "multipage.pdf")
    secs = time.perf_counter() - t0
    print(f"\nmultipage.pdf: {len(pages)} pages with text ({sum(p.ocr for p in pages)} by OCR) in {secs:.1f} s: "
          f"{len(pages) / secs:.2f} pages/s with one OCR thread")
    photo = load_file(OCR_DIR / "ch_en_num.jpg")[0].text.splitlines()
    print(f"ch_en_num.jpg first three lines: {photo[:3]} — exact: {photo[:3] == PHOTO_FIRST_LINES}; {len(photo)} lines")
    columns = load_file(OCR_DIR / "text_vertical_words.png")[0].text.splitlines()
    print("text_vertical_words.png columns, right to left:")
    for got, want in zip(columns, VERTICAL):
        print(f"  {got}  (expected {want}, CER {cer(got, want):.2f})")


def _pdfium_text(path: Path) -> list[str]:
    import pypdfium2

    doc = pypdfium2.PdfDocument(path)
    try:
        return [doc[i].get_textpage().get_text_range() for i in range(len(doc))]
    finally:
        doc.close()


def _pypdf_text(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [p.extract_text() or "" for p in PdfReader(path, strict=False).pages]


def textlayer(args) -> None:
    from ragapp.load.clean import readable_share

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    print(f"\nPDF text layer, ../shared/eval/pdfs (text-layer files only); {machine()}")
    print("| file | pypdf s | pypdf chars | pypdf Han | pypdfium2 s | pypdfium2 chars | pypdfium2 Han |\n|---|---|---|---|---|---|---|")
    totals = {"pypdf": [0.0, 0, 0], "pypdfium2": [0.0, 0, 0]}
    for path in sorted(PDF_DIR.glob("*.pdf")):
        row = []
        for name, read in (("pypdf", _pypdf_text), ("pypdfium2", _pdfium_text)):
            t0 = time.perf_counter()
            try:
                text = "".join(read(path))
            except Exception as exc:  # broken samples: both libraries refuse them
                row.append(f"{type(exc).__name__} | - | -")
                continue
            secs, han = time.perf_counter() - t0, len(re.findall(r"[\u4e00-\u9fff]", text))
            for n, v in enumerate((secs, len(text), han)):
                totals[name][n] += v
            row.append(f"{secs:.2f} | {len(text):,} | {han:,}")
        print(f"| {path.name} | {' | '.join(row)} |")
    print("| total | " + " | ".join(f"{s:.2f} | {c:,} | {h:,}" for s, c, h in totals.values()) + " |")
    garbled = PDF_DIR / "zh_audit_letter_garbled_6p.pdf"
    if garbled.exists():
        print(f"readable share on {garbled.name}: pypdf {readable_share(''.join(_pypdf_text(garbled))):.2f}, "
              f"pypdfium2 {readable_share(''.join(_pdfium_text(garbled))):.2f}")


_CHILD = """
import resource, sys, time
from ragapp.errors import DocumentError
from ragapp.load import load_file
t0 = time.perf_counter()
try:
    pages = load_file(sys.argv[1])
    what = f"{len(pages)} page(s), {sum(len(p.text) for p in pages)} characters, OCR: {any(p.ocr for p in pages)}"
except DocumentError as exc:
    what = "reported: " + str(exc).split(': ', 1)[1]
print(f"{time.perf_counter() - t0:.1f}|{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f}|{what}")
"""


def memory(args) -> None:
    from ragapp.config import IngestConfig

    print(f"\nHostile scans: the parser child's peak resident memory (address space capped at {IngestConfig().pdf_memory_mb} MB); {machine()}")
    print("| file | seconds | parser peak MB | outcome |\n|---|---|---|---|")
    for name in ("hugemono.pdf", "enormous.pdf", "linn.pdf"):
        out = subprocess.run([sys.executable, "-c", _CHILD, str(OCR_DIR / name)], capture_output=True, text=True)
        secs, peak, what = (out.stdout.strip() or f"-|-|failed: {out.stderr[-200:]}").split("|", 2)
        print(f"| {name} | {secs} | {peak} | {what} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", default="all", choices=["ocr", "textlayer", "memory", "all"])
    args = parser.parse_args()
    missing = [str(p) for p in (OCR_DIR, PDF_DIR) if not p.exists()]
    if missing:
        sys.exit(f"needs the shared evaluation data: missing {', '.join(missing)}")
    for part in (textlayer, memory, ocr) if args.part == "all" else (globals()[args.part],):
        part(args)


if __name__ == "__main__":
    main()

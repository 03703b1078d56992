"""Citations on their pages (issue 27): how well the boxes sit, how fast a page is drawn, what the
geometry costs on disk. Prints the tables docs/benchmarks.md ("Citations on their pages") quotes.

    python bench/highlight.py boxes     # every sentence of the shared PDFs: a box at all, IoU against pdfium
    python bench/highlight.py speed     # a cited page drawn (sandboxed render + highlight), p50 / p90; size per page

`boxes` reads each file as ingest does (sandboxed loader, geometry recorded), cuts its pages into
sentences as the splitter does, and compares each sentence's boxes with the rectangles pdfium's own
character boxes make for the same text on each line (tests/helpers/boxes.py), where pdfium's text of
the page holds the sentence exactly once. OCR pages (linn, skew, rotated_skew) have no pdfium text:
there the count is of sentences with a box (the OCR lines holding them).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers.boxes import iou, pdfium_boxes  # noqa: E402

from bench.common import EVAL, OUT, machine  # noqa: E402

OCR_FILES = ("linn.pdf", "skew.pdf", "rotated_skew.pdf")


def _kind(path: Path, rotated: bool) -> str:
    name = path.name
    if path.parent.name == "ocr":
        return "OCR scans"
    return ("rotated " if rotated else "") + ("Chinese" if name.startswith("zh_") else "English") + \
        (" multi-column" if "col_" in name else "")


def _sentences(path: Path):
    """(page, sentence start, end, boxes) of every sentence of every page of `path` that went in."""
    import pypdfium2

    from ragapp.errors import DocumentError
    from ragapp.load import iter_pages
    from ragapp.load.geometry import boxes_for, decode
    from ragapp.split import count_chars, split_page

    try:
        pages = list(iter_pages(path))
    except DocumentError:
        return
    doc = pypdfium2.PdfDocument(str(path))
    for page in pages:
        rotated = doc[page.page - 1].get_rotation() != 0
        boxes = decode(page.geometry, len(page.text)) if page.geometry else None
        for chunk in split_page(page, 200, 0, count_chars):
            for a, b in chunk.sentences:
                start, end = chunk.start + a, chunk.start + b
                drawn = boxes_for(boxes, start, end, page.ocr) if boxes is not None else []
                yield page, rotated, page.text[start:end], [(x.x0, x.y0, x.x1, x.y1) for x in drawn]


def boxes(args) -> None:
    files = [p for p in sorted((EVAL / "pdfs").glob("*.pdf")) + [EVAL / "ocr" / n for n in OCR_FILES] if args.only in p.name]
    rows: dict[str, dict[str, list]] = {}
    worst: list[tuple[float, str, int, str]] = []
    for path in files:
        t0 = time.perf_counter()
        for page, rotated, text, drawn in _sentences(path):
            if len("".join(text.split())) < 8:  # a page number or a lone heading word: nothing to cite
                continue
            row = rows.setdefault(_kind(path, rotated), {"sentences": [], "boxed": [], "ious": [], "files": []})
            row["sentences"].append(text)
            row["boxed"].append(bool(drawn))
            if path.name not in row["files"]:
                row["files"].append(path.name)
            truth = None if page.ocr else pdfium_boxes(str(path), page.page, text)
            if truth is not None:
                row["ious"].append(iou(drawn, truth))
                if row["ious"][-1] < 0.9:
                    worst.append((row["ious"][-1], path.name, page.page, " ".join(text.split())[:80]))
        print(f"  {path.name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print(f"\nEvery sentence (8+ characters) of the shared PDFs, boxes against pdfium's character boxes; {machine()}")
    print("| pages | files | sentences | with a box | compared with pdfium | IoU mean | IoU ≥ 0.9 |")
    print("|---|---|---|---|---|---|---|")
    for kind, row in sorted(rows.items()):
        n, ious = len(row["sentences"]), row["ious"]
        good = sum(v >= 0.9 for v in ious)
        print(f"| {kind} | {len(row['files'])} | {n} | {sum(row['boxed']) / n:.3f} | {len(ious)} | "
              f"{statistics.mean(ious) if ious else float('nan'):.3f} | {good / len(ious) if ious else float('nan'):.3f} |")
    print(f"\n{len(worst)} compared sentences under 0.9 IoU" + "".join(f"\n  {v:.3f} {name} p{page}: {text}"
                                                                     for v, name, page, text in sorted(worst)))


def _index() -> Path:
    """An index of the shared text-layer PDFs and the OCR scans (built once, kept in bench/out)."""
    from ragapp import RAG, Config

    index = OUT / "indexes" / "shared-pdfs"
    if not (index / "manifest.json").exists():
        folder = OUT / "corpora" / "shared-pdfs"
        folder.mkdir(parents=True, exist_ok=True)
        for path in sorted((EVAL / "pdfs").glob("*.pdf")) + [EVAL / "ocr" / n for n in OCR_FILES]:
            target = folder / path.name
            if not target.exists():
                target.write_bytes(path.read_bytes())
        RAG(index, Config()).ingest([folder])
    return index


def speed(args) -> None:
    from ragapp import Config
    from ragapp.index import read_manifest
    from ragapp.load import iter_pages
    from ragapp.runtime import prepare_environment
    from ragapp.show import PageView
    from ragapp.split import count_chars, split_page

    config = Config()
    prepare_environment(config.threads)
    index = _index()
    files = read_manifest(index).files
    cited = []
    for source in files:
        if not source.endswith(".pdf"):
            continue
        for page in iter_pages(source, limits=config.ingest):
            cited += [(source, page.page, c.start + a, c.start + b) for c in split_page(page, 200, 0, count_chars)
                      for a, b in c.sentences if b - a > 30]
    sample = random.Random(0).sample(cited, min(args.n, len(cited)))
    view = PageView(index, config.ingest)
    lookups, draws, again = [], [], []
    for source, page, start, end in sample:
        t0 = time.perf_counter()
        view.boxes(source, files[source], page, start, end)
        t1 = time.perf_counter()
        view.image(source, files[source], page, start, end, args.width)
        t2 = time.perf_counter()
        view.image(source, files[source], page, start, end, args.width)
        again.append(time.perf_counter() - t2)
        lookups.append(t1 - t0)
        draws.append(t2 - t1)
    _speed_table(args, sample, lookups, draws, again)
    _size_table(index)


def _ms(values: list[float], q: float) -> str:
    return f"{sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000:.1f}"


def _speed_table(args, sample, lookups, draws, again) -> None:
    print(f"\nA cited page of the shared PDFs drawn {args.width} px wide with its sentence boxed, {len(sample)} citations "
          f"(seeded sample), warm process; {machine()}")
    print("| step | p50 ms | p90 ms | max ms |\n|---|---|---|---|")
    for name, values in (("boxes from the index (what a reply carries)", lookups),
                         ("page drawn: sandboxed render + highlight + PNG", draws), ("the same page again (cache)", again)):
        print(f"| {name} | **{_ms(values, 0.5)}** | {_ms(values, 0.9)} | {max(values) * 1000:.1f} |")


def _size_table(index: Path) -> None:
    import sqlite3

    from ragapp.show import PAGES_FILE

    conn = sqlite3.connect(index / PAGES_FILE)
    rows = conn.execute("SELECT COUNT(*), SUM(chars), SUM(LENGTH(boxes)), SUM(ocr) FROM pages").fetchone()
    conn.close()
    pages, chars, stored, ocr = rows
    total = sum(p.stat().st_size for p in index.rglob("*") if p.is_file())
    db = (index / PAGES_FILE).stat().st_size
    print(f"\nGeometry on disk: {pages} pages ({ocr} OCR), {chars:,} characters; boxes {stored / pages / 1024:.1f} KB per page "
          f"({stored / chars:.2f} bytes per character); {PAGES_FILE} {db / 1e6:.2f} MB of the index's {total / 1e6:.1f} MB "
          f"({db / total:.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["boxes", "speed"])
    parser.add_argument("--n", type=int, default=60, help="citations drawn by `speed`")
    parser.add_argument("--width", type=int, default=900)
    parser.add_argument("--only", default="", help="`boxes`: only files whose name holds this")
    args = parser.parse_args()
    {"boxes": boxes, "speed": speed}[args.part](args)


if __name__ == "__main__":
    main()

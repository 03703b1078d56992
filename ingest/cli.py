"""Ingest front end: the `ragapp ingest` command (registered under the "ragapp.commands" entry
point group; also `python -m ingest`), progress bars on stderr (hidden when not a terminal) and
the closing summary. The pipeline itself is ragapp.ingestion."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import click
from tqdm import tqdm

from ragapp.cli import config_option, index_option, open_rag
from ragapp.display import shown_path
from ragapp.records import IngestReport


def run_ingest(rag, paths: Sequence[str], rebuild: bool = False, wait: bool = True, out=sys.stderr) -> IngestReport:
    """Run `rag.ingest` with progress bars and print the summary to `out`."""
    quiet = not out.isatty()
    bars: dict[str, tqdm] = {}
    labels = {"scan": "hashing", "read": "reading", "embed": "embedding", "commit": "writing"}

    def progress(stage: str, item: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            if stage != "embed":  # files being read and chunks embedded show together, one line each
                for other in bars.values():
                    other.close()
            unit = "chunk" if stage == "embed" else "file"
            bar = bars[stage] = tqdm(total=total or None, desc=labels.get(stage, stage), unit=unit, file=out,
                                     disable=quiet, leave=False, position=1 if stage == "embed" else 0)
        bar.set_postfix_str(shown_path(item, 40), refresh=False)
        bar.update(done - bar.n)

    try:
        report = rag.ingest(list(paths), rebuild=rebuild, wait=wait, progress=progress,
                            on_message=lambda m: print(m, file=out, flush=True))
    finally:
        for bar in bars.values():
            bar.close()
    print(summary(report), file=out)
    return report


def summary(report: IngestReport) -> str:
    """The human summary: counts, then every failure with its reason."""
    lines = [f"added {len(report.added)}, updated {len(report.updated)}, unchanged {len(report.unchanged)}, "
             f"removed {len(report.removed)}, failed {len(report.failed)}; {report.chunks} chunks in the index "
             f"({report.chunks_added} embedded); {report.seconds:.1f} s"]
    for failure in report.failed:
        lines.append(f"  failed: {shown_path(failure.path, 80)}: {failure.reason}")
    for warning in report.warnings:
        lines.append(f"  warning: {shown_path(warning.path, 80)}: {warning.reason}")
    if report.taken:
        lines.append(f"  {len(report.taken)} file(s) left to another ingest writing them at the same time")
    return "\n".join(lines)


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@index_option
@config_option
@click.option("--embed-model", default=None, help="Embedding model for a new index (multilingual-e5-small, all-MiniLM-L6-v2, a folder or hub id).")
@click.option("--rebuild", is_flag=True, help="Ignore the existing index and build it again from these paths.")
@click.option("--no-wait", is_flag=True, help="Fail at once if another ingest is writing the index.")
@click.option("--follow-symlinks", is_flag=True, default=None,
              help="Also read symlinked files whose target is outside the given folder (skipped and reported otherwise).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def ingest_command(paths, index, config_path, embed_model, rebuild, no_wait, follow_symlinks, as_json) -> None:
    """Add, update and remove documents under PATHS in the index: text, Markdown, HTML, PDF (scans by OCR),
    Word, PowerPoint, Excel, CSV/TSV, EPUB, e-mail and images of pages.

    Exit codes: 0 all files ingested, 1 some files failed (listed), >1 nothing was written (docs/configuration.md).
    """
    rag = open_rag(index, config_path, embed__model=embed_model, ingest__follow_symlinks=follow_symlinks or None)
    report = run_ingest(rag, paths, rebuild=rebuild, wait=not no_wait)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
    sys.exit(0 if report.ok else 1)

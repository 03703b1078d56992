"""Ingest front end: progress bars on stderr (hidden when not a terminal) and the closing summary."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from tqdm import tqdm

from ragapp.types import IngestReport


def _short(path: str, width: int = 40) -> str:
    try:
        path = os.path.relpath(path)
    except ValueError:
        pass
    return path if len(path) <= width else "…" + path[-(width - 1):]


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
        bar.set_postfix_str(_short(item), refresh=False)
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
        lines.append(f"  failed: {_short(failure.path, 80)}: {failure.reason}")
    for warning in report.warnings:
        lines.append(f"  warning: {_short(warning.path, 80)}: {warning.reason}")
    return "\n".join(lines)

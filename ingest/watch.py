"""The `ragapp watch` command: keep an index in step with folders until stopped (registered under the
"ragapp.commands" entry point group). One line per sync on stderr; the watcher is ragapp.watch."""

from __future__ import annotations

import signal
import sys

import click

from ragapp.cli import config_option, index_option, open_rag
from ragapp.watch import MAX_WAIT_SECONDS, SETTLE_SECONDS, FolderWatcher


@click.command("watch")
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@index_option
@config_option
@click.option("--embed-model", default=None, help="Embedding model for a new index.")
@click.option("--settle", type=click.FloatRange(min=0.1), default=SETTLE_SECONDS, show_default=True,
              help="Seconds without any change before a burst of changes is synced.")
@click.option("--max-wait", type=click.FloatRange(min=1), default=MAX_WAIT_SECONDS, show_default=True,
              help="Seconds after which a folder that keeps changing is synced anyway (files still being written wait).")
def watch_command(folders, index, config_path, embed_model, settle, max_wait) -> None:
    """Watch FOLDERS and keep the index in step: new, edited, renamed and deleted documents are synced
    seconds after they settle. Ctrl-C or SIGTERM stops between syncs, or abandons the sync under way
    (the index stays as it was before it)."""
    rag = open_rag(index, config_path, embed__model=embed_model)
    watcher = FolderWatcher(rag, folders, settle=settle, max_wait=max(max_wait, settle),
                            on_batch=lambda batch: click.echo(batch.line(), err=True))

    def on_term(signum, frame) -> None:
        watcher.stop(timeout=0)
        if watcher.syncing:  # abandon it: the writer removes its unfinished generation
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    click.echo(f"watching {', '.join(map(str, watcher.folders))} into {index} (Ctrl-C stops)", err=True)
    try:
        watcher.run()
    except KeyboardInterrupt:
        click.echo("stopped: the sync under way was abandoned; the index is as it was before it", err=True)
        sys.exit(130)
    click.echo("stopped", err=True)

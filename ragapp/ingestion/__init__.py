"""Ingestion pipeline: scan → load → split → embed → index, incremental and crash-safe.

`run` is what `RAG.ingest` calls; the command-line front end with progress bars is `ingest/`.
"""

from ragapp.ingestion.feeder import Progress
from ragapp.ingestion.run import bm25_settings, run
from ragapp.ingestion.scan import Scan, is_skipped, scan

__all__ = ["Progress", "Scan", "bm25_settings", "is_skipped", "run", "scan"]

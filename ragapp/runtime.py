"""Process-level settings applied once before models run: thread counts and quiet, offline libraries."""

from __future__ import annotations

import os


def prepare_environment(threads: int) -> None:
    """Set thread counts for OpenMP, tokenizers, torch and FAISS; keep Hugging Face libraries offline-friendly.

    Two vCPUs do about one core of work here: 1 thread per task is the measured best for queries.
    Environment variables only take effect before the libraries load, so this runs early (CLI start,
    RAG construction); setting them again later is harmless.
    """
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def set_torch_threads(threads: int) -> None:
    """Apply the thread count to torch (call where torch is imported anyway)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def set_faiss_threads(threads: int) -> None:
    """Apply the thread count to FAISS's OpenMP pool."""
    import faiss

    faiss.omp_set_num_threads(threads)

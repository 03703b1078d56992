"""Process-level settings: thread counts and quiet, offline libraries.

ragapp's entry points (the CLI, the Streamlit app) call `prepare_environment` before any library
loads; the library itself (`RAG()`) never writes os.environ: a program embedding ragapp keeps its own
environment, and the counts ragapp needs are applied through the libraries' own calls.

torch's intra-op thread count, with the OpenMP backend of the CPU wheels, belongs to the calling
thread (an OpenMP setting per thread; measured, and tested in tests/test_runtime.py): a query that
encodes with 1 thread and an ingest that encodes with 2, sharing one RAG from two threads, keep
their own counts, so setting it before each encode is safe and needs no lock.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def prepare_environment(threads: int) -> None:
    """Set thread counts for OpenMP and tokenizers and keep Hugging Face libraries quiet and offline-friendly.

    Two vCPUs do about one core of work here: 1 thread per task is the measured best for queries.
    Environment variables only take effect before the libraries load, so entry points call this first.
    """
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))  # numpy's BLAS: the torch-free question encoder
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    keep_freed_memory()


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters
_KEEP_BELOW = 32 << 20  # glibc's largest mmap threshold on 64-bit
_KEEP_FREE = 256 << 20  # freed memory at the top of the heap kept for reuse, at most (a batch uses well under 100 MB)
_ARENAS = 2  # the machine's cores: more arenas buy a server's threads nothing here but memory


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks up to 32 MB in the heap for reuse instead of returning them to the
    system: an embedding batch allocates and frees activations of a few MB per layer, and getting fresh
    pages for each cost 1.3 million page faults per 300 SciFact chunks on the AMD machine (docs/benchmarks.md,
    "Ingest on the AMD machine"). And at most two malloc arenas (unless MALLOC_ARENA_MAX says otherwise):
    by default every thread that allocates gets one of up to eight per core, each keeping what it freed,
    so a server's memory crept up as its worker threads came and went (docs/benchmarks.md, "Memory of a
    server that answers"). A process setting, so entry points call it; False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        if "MALLOC_ARENA_MAX" not in os.environ and not libc.mallopt(_M_ARENA_MAX, _ARENAS):
            return False
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BELOW)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE))
    except (OSError, AttributeError):  # a libc without mallopt (musl)
        return False


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the torch work inside with `threads` intra-op threads (this thread's count), and as many for
    the numba loops that work calls (the int8 embedder's; numba's count is per thread too)."""
    import numba
    import torch

    # numba first: its OpenMP layer, started by the first numba call of a process, sets the calling thread's
    # OpenMP count to all its threads, which is torch's count too (a query thread saw 2; tests/test_runtime.py).
    wanted = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    yield


def set_faiss_threads(threads: int) -> None:
    """Apply the thread count to FAISS's OpenMP pool."""
    import faiss

    faiss.omp_set_num_threads(threads)

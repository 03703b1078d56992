"""Byte spools: files of fixed-width rows appended batch by batch, whose header is written last
(used by the index writer for vectors and by the BM25 writer for its arrays)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

NPY_HEADER = 128  # bytes reserved for a .npy header, whatever the row count


class Spool:
    """A file of fixed-width rows appended batch by batch, whose header (it needs the row count) is
    written last into space reserved at the start: .npy arrays and FAISS flat indexes are written
    this way without ever holding all rows in memory."""

    def __init__(self, path: Path, dtype, width: int, header: Callable[[int], bytes]) -> None:
        self.path, self.dtype, self.width, self._header = path, np.dtype(dtype), width, header
        self.reserved = len(header(0))
        self.row_bytes = self.dtype.itemsize * max(width, 1)
        self.rows = 0
        self.file = open(path, "wb+")
        self.file.write(b"\0" * self.reserved)

    def append(self, rows: np.ndarray) -> None:
        """Add rows (a 2-D array of `width` columns, or 1-D when width is 0)."""
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        self.file.write(data.tobytes())
        self.rows += len(data)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) already appended."""
        self.file.flush()
        raw = os.pread(self.file.fileno(), (stop - start) * self.row_bytes, self.reserved + start * self.row_bytes)
        data = np.frombuffer(raw, dtype=self.dtype)
        return data.reshape(-1, self.width) if self.width else data

    def truncate(self, rows: int) -> None:
        """Forget every row from `rows` on."""
        self.file.flush()
        self.file.truncate(self.reserved + rows * self.row_bytes)
        self.file.seek(0, os.SEEK_END)
        self.rows = rows

    def finish(self) -> None:
        """Write the header, flush and fsync."""
        header = self._header(self.rows)
        if len(header) != self.reserved:
            raise ValueError(f"{self.path}: header grew from {self.reserved} to {len(header)} bytes")
        self.file.seek(0)
        self.file.write(header)
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def close(self) -> None:
        """Close without finishing (an aborted write)."""
        try:
            self.file.close()
        except OSError:
            pass


def npy_header(dtype, width: int) -> Callable[[int], bytes]:
    """A .npy (version 1.0) header padded to a fixed NPY_HEADER bytes, whatever the row count."""
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))

    def header(rows: int) -> bytes:
        shape = (rows, width) if width else (rows,)
        text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
        text += " " * (NPY_HEADER - 10 - len(text) - 1) + "\n"
        return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin-1")
    return header


def npy_spool(path: Path, dtype, width: int = 0) -> Spool:
    """A spool that becomes a plain .npy file."""
    return Spool(path, dtype, width, npy_header(dtype, width))


def load_npy(path: Path, dtype, ndim: int = 1, mmap: bool = False) -> np.ndarray:
    """A .npy of `dtype` and `ndim` dimensions, memory-mapped first so a header that promises more
    than the file holds is an error instead of an allocation (an index folder is untrusted input)."""
    mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    if mapped.dtype != np.dtype(dtype) or mapped.ndim != ndim:
        raise ValueError(f"{path.name} holds {mapped.dtype} {mapped.shape}, not {ndim}-D {np.dtype(dtype)}")
    return mapped if mmap else np.array(mapped)


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (new files, renames) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Make a file's bytes durable."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())

"""The dense.faiss file: a FAISS IndexFlatIP, written row by row and read back only after ragapp has
validated it (FAISS's own parser never sees an untrusted file)."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ragapp.spool import Spool

FILE = "dense.faiss"
_COPY_BYTES = 64 << 20  # vectors copied into FAISS per step when an index is opened


def _header(dimension: int) -> Callable[[int], bytes]:
    """Header of a serialised faiss IndexFlatIP holding `rows` vectors: faiss's own header for an
    empty index with its vector count and its float count filled in."""
    import faiss

    empty = bytearray(faiss.serialize_index(faiss.IndexFlatIP(dimension)).tobytes())

    def header(rows: int) -> bytes:
        head = bytearray(empty)
        head[8:16] = struct.pack("<q", rows)
        head[-8:] = struct.pack("<Q", rows * dimension)
        return bytes(head)
    return header


def dense_spool(folder: Path, dimension: int) -> Spool:
    """A spool that becomes `folder`/dense.faiss, one float32 vector per row."""
    return Spool(folder / FILE, np.float32, dimension, _header(dimension))


def read_flat_ip(path: Path, dimension: int, rows: int):
    """A FAISS IndexFlatIP from a file ragapp wrote, validated before FAISS sees any of it: the header
    must be exactly the one ragapp writes for `rows` vectors of `dimension`, and the file exactly that
    long; the floats are then memory-mapped and copied into a new index. A crafted file (any other
    index type, sizes that promise terabytes) is a ValueError, never a crash in the native parser."""
    import faiss

    expected = _header(dimension)(rows)
    size = os.lstat(path).st_size
    if size != len(expected) + 4 * rows * dimension:
        raise ValueError(f"{FILE} is {size} bytes, not the {len(expected) + 4 * rows * dimension} of {rows} vectors")
    with open(path, "rb") as f:
        if f.read(len(expected)) != expected:
            raise ValueError(f"{FILE} does not start with ragapp's IndexFlatIP header")
    index = faiss.IndexFlatIP(dimension)
    if rows:
        floats = np.memmap(path, dtype="<f4", mode="r", offset=len(expected), shape=(rows, dimension))
        step = max(1, _COPY_BYTES // (4 * dimension))
        for a in range(0, rows, step):
            index.add(np.ascontiguousarray(floats[a : a + step], dtype=np.float32))
        del floats
    return index

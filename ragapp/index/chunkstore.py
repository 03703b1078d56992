"""The chunk store of a generation (the only reader and writer of its files): chunks.jsonl, one JSON
record per chunk, with chunk_offsets.npy (where each record starts) and chunk_hashes.npy (each
chunk's text hash as 16 bytes), so an index opens without reading its chunks: a record is parsed
when it is asked for. Generations written before index schema 4 have only chunks.jsonl; their
offsets and hashes are built in memory by one pass over it."""

from __future__ import annotations

import json
import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from ragapp.records import Chunk
from ragapp.spool import Spool, load_npy, npy_spool

FILES = ("chunks.jsonl", "chunk_offsets.npy", "chunk_hashes.npy")
HASH_BYTES = 16  # text_hash is 32 hex characters


class ChunkStoreWriter:
    """Appends chunk records; `mark`/`rollback` forget a failed file's records."""

    def __init__(self, folder: Path) -> None:
        self.file: IO[bytes] = open(folder / FILES[0], "wb")
        self.offsets: list[int] = [0]
        self.hashes: Spool = npy_spool(folder / FILES[2], np.uint8, HASH_BYTES)
        self.folder = folder

    def add(self, chunk: Chunk, text_hash: str, first_sentence: int) -> None:
        """Append one chunk's record; `first_sentence` is the row of its first sentence vector."""
        record = {"id": chunk.id, "text": chunk.text, "source": chunk.source, "page": chunk.page, "start": chunk.start,
                  "end": chunk.end, "sentences": chunk.sentences, "hash": text_hash, "sv": first_sentence}
        if chunk.label or chunk.ocr:  # written only where set, so older indexes read the same
            record.update(label=chunk.label, ocr=chunk.ocr)
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")
        self.file.write(line)
        self.offsets.append(self.offsets[-1] + len(line))
        self.hashes.append(np.frombuffer(bytes.fromhex(text_hash), dtype=np.uint8).reshape(1, -1))

    def mark(self) -> int:
        """Records written so far (flushed)."""
        self.file.flush()
        return len(self.offsets) - 1

    def rollback(self, rows: int) -> None:
        """Forget every record from `rows` on."""
        del self.offsets[rows + 1 :]
        self.file.flush()
        self.file.truncate(self.offsets[-1])
        self.file.seek(self.offsets[-1])
        self.hashes.truncate(rows)

    def finish(self) -> list[str]:
        """Close the files; returns their names."""
        self.file.flush()
        self.file.close()
        self.hashes.finish()
        np.save(self.folder / FILES[1], np.asarray(self.offsets, dtype=np.int64))
        return list(FILES)

    def close(self) -> None:
        """Close without finishing (an aborted write)."""
        try:
            self.file.close()
        except OSError:
            pass
        self.hashes.close()


def _scan(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and hashes of a chunks.jsonl written before schema 4 (one pass over it)."""
    offsets, hashes = [0], []
    with open(path, "rb") as f:
        for line in f:
            offsets.append(offsets[-1] + len(line))
            hashes.append(bytes.fromhex(json.loads(line)["hash"]))
    table = np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(-1, HASH_BYTES)
    return np.asarray(offsets, dtype=np.int64), table


class ChunkStore:
    """Read side: records parsed on demand from a memory map of chunks.jsonl."""

    def __init__(self, folder: Path, rows: int, indexed: bool) -> None:
        path = folder / FILES[0]
        if indexed:  # plain views of the maps: np.memmap's Python-level indexing costs ~3 µs a lookup
            self.offsets = load_npy(folder / FILES[1], np.int64, mmap=True).view(np.ndarray)
            self.hashes = load_npy(folder / FILES[2], np.uint8, ndim=2, mmap=True).view(np.ndarray)
        else:
            self.offsets, self.hashes = _scan(path)
        size = path.stat().st_size
        if len(self.offsets) != rows + 1 or self.hashes.shape != (rows, HASH_BYTES):
            raise ValueError(f"chunk store holds {len(self.offsets) - 1} offsets and {len(self.hashes)} hashes, not {rows}")
        if rows and (self.offsets[0] != 0 or self.offsets[-1] != size or np.any(np.diff(self.offsets) <= 0)):
            raise ValueError("chunk offsets do not match chunks.jsonl")
        with open(path, "rb") as f:  # the map keeps its own handle
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self._groups: dict[bytes, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.hashes)

    def record(self, row: int) -> tuple[Chunk, int]:
        """The chunk at `row` and the row of its first sentence vector (ValueError if the record is damaged)."""
        d = json.loads(self._map[int(self.offsets[row]) : int(self.offsets[row + 1])])
        if not isinstance(d, dict):
            raise ValueError(f"chunk record {row} is not an object")
        d.pop("hash", None)
        first = d.pop("sv", -1)
        d["sentences"] = tuple(tuple(s) for s in d["sentences"])
        if not isinstance(first, int):
            raise ValueError(f"chunk record {row}: sentence row {first!r}")
        return Chunk(**d), first

    def text_hash(self, row: int) -> str:
        """Content hash of the chunk at `row`."""
        return self.hashes[row].tobytes().hex()

    def same_text_rows(self, row: int) -> list[int]:
        """Every row with the same text hash as `row`, `row` first (groups found once, on first use)."""
        if self._groups is None:
            keys = np.ascontiguousarray(self.hashes).view(f"V{HASH_BYTES}").ravel()
            order = np.argsort(keys, kind="stable")
            ranked = keys[order]
            starts = np.flatnonzero(np.concatenate([[True], ranked[1:] != ranked[:-1], [True]]))
            self._groups = {ranked[a].tobytes(): order[a:b] for a, b in zip(starts[:-1], starts[1:]) if b - a > 1}
        others = self._groups.get(self.hashes[row].tobytes(), ())
        return [row] + [int(r) for r in others if r != row]

    def rows(self) -> Iterator[tuple[int, Chunk, int, str]]:
        """Every (row, chunk, first sentence row, text hash), in order."""
        for row in range(len(self)):
            chunk, first = self.record(row)
            yield row, chunk, first, self.text_hash(row)

    def close(self) -> None:
        """Release the memory map."""
        if isinstance(self._map, mmap.mmap):
            self._map.close()

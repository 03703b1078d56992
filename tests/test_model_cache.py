"""The model cache's sha256 memo: an unchanged file is not hashed again, a changed one always is."""

import os

import pytest

import ragapp.digest
from ragapp.models.cache import MEMO, cache_entry_ok, cached

pytestmark = pytest.mark.unit


def _count_hashes(monkeypatch) -> list[str]:
    hashed: list[str] = []
    real = ragapp.digest.file_sha256
    monkeypatch.setattr(ragapp.digest, "file_sha256", lambda p: hashed.append(os.path.basename(p)) or real(p))
    return hashed


def test_an_unchanged_entry_is_verified_without_hashing_and_an_edited_file_is_caught(tmp_path, monkeypatch):
    entry = cached(tmp_path, "model", lambda out: (out / "weights.bin").write_bytes(b"\x01" * 4096))
    hashed = _count_hashes(monkeypatch)
    assert cache_entry_ok(entry) and hashed == ["weights.bin"]  # first check: hashed, and remembered
    assert (tmp_path / "models" / MEMO).is_file()
    hashed.clear()
    assert cache_entry_ok(entry) and hashed == []  # nothing changed: nothing hashed

    weights = entry / "weights.bin"
    before = weights.stat()
    weights.write_bytes(b"\x02" * 4096)  # same size, and the mtime put back as a careful forger would
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert not cache_entry_ok(entry) and hashed == ["weights.bin"]  # ctime moved: hashed again, and refused


def test_a_damaged_entry_is_rebuilt_through_the_memo(tmp_path):
    builds: list[int] = []
    build = lambda out: builds.append(1) or (out / "w.bin").write_bytes(b"ok")  # noqa: E731
    entry = cached(tmp_path, "m", build)
    (entry / "w.bin").write_bytes(b"no")
    assert cached(tmp_path, "m", build) == entry and (entry / "w.bin").read_bytes() == b"ok" and len(builds) == 2


def test_an_unwritable_memo_only_costs_hashing(tmp_path, monkeypatch):
    entry = cached(tmp_path, "model", lambda out: (out / "w.bin").write_bytes(b"x"))
    assert not (tmp_path / "models" / MEMO).exists()  # a fresh build records its own hashes, not the memo
    monkeypatch.setattr("tempfile.mkstemp", lambda **_: (_ for _ in ()).throw(PermissionError("read-only")))
    assert cache_entry_ok(entry) and not (tmp_path / "models" / MEMO).exists()

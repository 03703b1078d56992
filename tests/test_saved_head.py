"""The saved prompt head's file: written whole, read back, and read as none when damaged, cut short,
too large or for another model or prompt; the head ends where the system prompt ends."""

import hashlib
import json
import os

import pytest

from ragapp.generate.saved_head import MAGIC, MAX_BYTES, SavedHead, head_file, head_length, read_head, write_head

pytestmark = pytest.mark.unit

SYSTEM = "You answer questions using only the documents."


def test_a_head_reads_back_as_written(tmp_path):
    path = tmp_path / "models" / "llama-head-x.bin"
    head = SavedHead(list(range(10, 30)), bytes(range(256)) * 40)
    assert write_head(path, head)
    assert read_head(path) == head
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # nothing left aside


@pytest.mark.parametrize("damage", ["flipped byte", "cut short", "no magic", "bad header", "too few tokens"])
def test_a_damaged_head_reads_as_none(tmp_path, damage):
    path = tmp_path / "head.bin"
    write_head(path, SavedHead(list(range(20)), b"\x01" * 5000))
    data = bytearray(path.read_bytes())
    if damage == "flipped byte":
        data[-10] ^= 0xFF
    elif damage == "cut short":
        del data[-100:]
    elif damage == "no magic":
        data[:3] = b"xyz"
    elif damage == "bad header":
        data = bytearray(MAGIC + b'{"tokens": "a"}\n' + b"\x01" * 10)
    else:
        state = b"\x01" * 10
        header = {"tokens": [1, 2], "bytes": 10, "sha256": hashlib.sha256(state).hexdigest()}
        data = bytearray(MAGIC + json.dumps(header).encode() + b"\n" + state)
    path.write_bytes(bytes(data))
    assert read_head(path) is None


def test_an_oversized_head_is_neither_written_nor_read(tmp_path):
    path = tmp_path / "head.bin"
    assert not write_head(path, SavedHead(list(range(20)), b"\x00" * (MAX_BYTES + 1)))
    assert not path.exists()
    with open(path, "wb") as f:
        f.truncate(MAX_BYTES + 1)
    assert read_head(path) is None


def test_the_file_name_changes_with_the_model_file_prompt_context_and_version(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"gguf")
    base = head_file(tmp_path, model, 4096, SYSTEM, "0.3.36")
    assert base.parent == tmp_path / "models" and base.name.startswith("llama-head-")
    others = {head_file(tmp_path, model, 2048, SYSTEM, "0.3.36"), head_file(tmp_path, model, 4096, SYSTEM + " ", "0.3.36"),
              head_file(tmp_path, model, 4096, SYSTEM, "0.3.37")}
    os.utime(model, ns=(1, 1))
    others.add(head_file(tmp_path, model, 4096, SYSTEM, "0.3.36"))
    assert base not in others and len(others) == 4


def test_the_head_ends_with_the_last_token_wholly_inside_the_system_prompt():
    system = "Answer briefly, in English."
    pieces = [b"<|im_start|>", b"system", b"\n", b"Answer", b" briefly", b",", b" in", b" English", b".<", b"|im_end|>"]
    assert head_length(pieces, system) == 8  # ".<" runs past the prompt's end
    pieces[8:] = [b".", b"<|im_end|>", b"\n"]
    assert head_length(pieces, system) == 9
    assert head_length(pieces, "not in the prompt") == 0
    assert head_length(pieces, "") == 0
    chinese = "请用中文简洁回答。"
    encoded = chinese.encode()
    assert head_length([b"<s>", encoded[:4], encoded[4:], b"</s>"], chinese) == 3

"""The `ragapp` console script as a user runs it: real processes, exit codes, one-line errors."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def ragapp(*args, cwd, cache_dir):
    env = {**os.environ, "RAGAPP_CACHE": cache_dir}
    return subprocess.run([sys.executable, "-m", "ragapp.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_ingest_search_info_and_errors(tmp_path, docs, cache_dir):
    index = str(tmp_path / "index")
    r = ragapp("ingest", str(docs), "--index", index, cwd=tmp_path, cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert "added 5, updated 0, unchanged 0, removed 0, failed 0" in r.stderr
    assert "\r" not in r.stderr  # no progress bar when stderr is not a terminal

    r = ragapp("search", "长城有多长", "--index", index, "--json", "--top-k", "2", cwd=tmp_path, cache_dir=cache_dir)
    hits = json.loads(r.stdout)
    assert len(hits) == 2 and hits[0]["source"].endswith("长城.txt") and "21196.18" in hits[0]["support"]
    assert {"bm25_score", "dense_score", "fused_score", "rerank_score"} <= set(hits[0])

    r = ragapp("info", "--index", index, "--json", cwd=tmp_path, cache_dir=cache_dir)
    info = json.loads(r.stdout)
    assert info["documents"] == 5 and info["embedding"]["model"] == "multilingual-e5-small" and info["embedding"]["dimension"] == 384

    (docs / "bad.pdf").write_bytes(b"not a pdf")
    r = ragapp("ingest", str(docs), "--index", index, cwd=tmp_path, cache_dir=cache_dir)
    assert r.returncode == 1 and "failed: " in r.stderr and "bad.pdf" in r.stderr and "unchanged 5" in r.stderr

    r = ragapp("ask", "anything", "--index", str(tmp_path / "missing"), cwd=tmp_path, cache_dir=cache_dir)
    assert r.returncode == 3 and r.stderr.strip().startswith("error: no index at") and len(r.stderr.strip().splitlines()) == 1

    (tmp_path / "empty").mkdir()
    r = ragapp("ingest", str(tmp_path / "empty"), "--index", str(tmp_path / "i2"), cwd=tmp_path, cache_dir=cache_dir)
    assert r.returncode == 8 and "no supported documents" in r.stderr

    r = ragapp("search", "x", "--index", index, "--embed-model", "all-MiniLM-L6-v2", cwd=tmp_path, cache_dir=cache_dir)
    assert r.returncode == 4 and "was built with embedding.model 'multilingual-e5-small'" in r.stderr


def test_python_m_ingest_is_the_same_command(tmp_path, cache_dir):
    """The ingest front end runs on its own too; the library never imports it (tests/test_structure.py)."""
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "otters.md").write_text("Sea otters hold hands while they sleep.\n", encoding="utf-8")
    run = lambda *a: subprocess.run([sys.executable, "-m", "ingest", *a], capture_output=True, text=True, timeout=600,  # noqa: E731
                                    cwd=tmp_path, env={**os.environ, "RAGAPP_CACHE": cache_dir})
    r = run("notes", "--index", "idx", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["added"] == [str(tmp_path / "notes" / "otters.md")] and "added 1" in r.stderr
    r = run("missing", "--index", "idx")
    assert r.returncode == 8 and r.stderr.strip() == "error: missing: no such file or directory"


def _imported(stderr: str) -> set[str]:
    """Top-level packages a `python -X importtime` run imported."""
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:")}


HEAVY = {"torch", "transformers", "sentence_transformers", "numba", "scipy", "sklearn", "pypdf", "openai", "fastapi"}


def test_search_and_ask_on_a_default_index_import_neither_torch_nor_transformers(tmp_path, docs, cache_dir):
    """A question's path is torch-free: the numpy question encoder, BM25 without numba, llama.cpp answering
    (before, a cold `ragapp ask` spent ~7.5 s importing torch, transformers and sentence-transformers)."""
    import importlib.util

    index = str(tmp_path / "index")
    assert ragapp("ingest", str(docs), "--index", index, cwd=tmp_path, cache_dir=cache_dir).returncode == 0
    env = {**os.environ, "RAGAPP_CACHE": cache_dir}
    run = lambda *a: subprocess.run([sys.executable, "-X", "importtime", "-m", "ragapp.cli", *a, "--index", index],  # noqa: E731
                                    cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    r = run("search", "长城有多长", "--json", "--top-k", "1")
    assert r.returncode == 0 and "21196.18" in json.loads(r.stdout)[0]["support"]
    assert not _imported(r.stderr) & HEAVY, sorted(_imported(r.stderr) & HEAVY)
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "ragapp.cli", "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "watch" in r.stdout  # the commands front ends register are listed too
    assert not _imported(r.stderr) & (HEAVY | {"faiss", "numpy"}), sorted(_imported(r.stderr) & (HEAVY | {"faiss", "numpy"}))
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip('the ask half needs llama-cpp-python (pip install "ragapp[llama-cpp]"; .ci/run installs it)')
    r = run("ask", "How long does Mars take to orbit the Sun?", "--json")
    assert r.returncode == 0 and "687" in json.loads(r.stdout)["answer"], r.stdout[-500:]
    assert not _imported(r.stderr) & HEAVY, sorted(_imported(r.stderr) & HEAVY)


def test_a_cold_ask_prints_what_it_answers_while_the_chat_model_loads(tmp_path, docs, cache_dir):
    """The chat model loads in a thread while the question is searched; a refusal is printed before that
    load ends. llama-cpp-python pointed stdout and stderr at /dev/null during a load, so this printed
    nothing at all (and `--json` an empty stdout); its log lines must not reach stderr either."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip('needs llama-cpp-python (pip install "ragapp[llama-cpp]"; .ci/run installs it)')
    index = str(tmp_path / "index")
    assert ragapp("ingest", str(docs), "--index", index, cwd=tmp_path, cache_dir=cache_dir).returncode == 0
    question = "Who won the football world cup in 1998?"
    r = ragapp("ask", question, "--index", index, cwd=tmp_path, cache_dir=cache_dir)
    assert r.returncode == 0 and r.stdout == "I cannot answer from the given information.\n", (r.stdout, r.stderr)
    assert r.stderr.strip().startswith("(") and len(r.stderr.strip().splitlines()) == 1, r.stderr  # "(0.3 s)" alone
    r = ragapp("ask", question, "--index", index, "--json", cwd=tmp_path, cache_dir=cache_dir)
    answer = json.loads(r.stdout)
    assert answer["answered"] is False and "below the threshold" in answer["reason"] and r.stderr == ""
    assert answer["confidence"] == 0.0 and answer["draft"] == ""  # no model wrote anything
    r = ragapp("ask", "长城有多长？", "--index", index, cwd=tmp_path, cache_dir=cache_dir)
    assert r.returncode == 0 and "21196" in r.stdout and "长城.txt" in r.stdout, r.stdout
    assert 0.0 < float(r.stdout.split("Confidence: ")[1].split()[0]) <= 1.0, r.stdout
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_what_a_newcomer_reads_info_unsupported_files_and_shown_pages(tmp_path, docs, cache_dir):
    """Issue 44's smaller things, as printed: `ragapp info` in plain lines, a folder of other formats named,
    no empty index made for nothing, `--show` giving a path that opens from anywhere, no jieba chatter."""
    index = str(tmp_path / "index")
    assert ragapp("ingest", str(docs), "--index", index, cwd=tmp_path, cache_dir=cache_dir).returncode == 0
    r = ragapp("info", "--index", index, cwd=tmp_path, cache_dir=cache_dir)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and "{" not in r.stdout and "(1 chunks)" not in r.stdout
    created = next(line for line in lines if line.startswith("created at: "))
    assert __import__("re").fullmatch(r"created at: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", created)
    assert "documents (5):" in lines and any(line.endswith("(1 chunk)") for line in lines)
    assert any(line.startswith("embedding: ") and "model=multilingual-e5-small" in line for line in lines)

    other = tmp_path / "other"
    other.mkdir()
    (other / "slides.key").write_bytes(b"x")
    (other / "budget.numbers").write_bytes(b"y")
    for target in (other, other / "slides.key"):
        r = ragapp("ingest", str(target), "--index", str(tmp_path / "nothing"), cwd=tmp_path, cache_dir=cache_dir)
        assert r.returncode == 8 and "slides.key" in r.stderr and "formats ragapp does not read" in r.stderr, r.stderr
    assert not (tmp_path / "nothing").exists()  # no empty index for `ragapp serve` to list

    r = ragapp("ask", "Where does the Calvin cycle take place?", "--index", index, "--show", "--show-dir", "pages",
               cwd=tmp_path, cache_dir=cache_dir)
    shown = [line.split("] ", 1)[1] for line in r.stdout.splitlines() if line.strip().startswith("[1] ") and ".png" in line]
    assert shown and os.path.isabs(shown[0]) and os.path.isfile(shown[0]), r.stdout
    r = ragapp("ask", "长城有多长？", "--index", index, cwd=tmp_path, cache_dir=cache_dir)
    assert "Building prefix dict" not in r.stderr and "Loading model cost" not in r.stderr

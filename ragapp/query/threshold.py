"""The refusal threshold fitted on one knowledge base by `ragapp eval --apply`: the one owner of
`<index>/eval/threshold.json`. The file is untrusted input like the rest of an index folder: it is read
within a size limit, and anything but finite numbers for the model it was fitted with is ignored."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from ragapp.errors import write_failure
from ragapp.jsonfile import read_json, write_replacing

EVAL_FOLDER = "eval"
THRESHOLD_FILE = "threshold.json"
_MAX_BYTES = 64_000


@dataclass(frozen=True)
class FittedThreshold:
    """Per-language thresholds fitted on a knowledge base, and what they were fitted for and on."""

    values: dict[str, float]
    embedding_model: str
    reranker: str
    fitted_at: float
    # Per language: how many answerable and probe questions the fit saw.
    questions: dict[str, dict[str, int]] = field(default_factory=dict)

    def origin(self, language: str) -> str:
        """Where the threshold for `language` came from, as shown beside a refusal."""
        from datetime import datetime

        day = datetime.fromtimestamp(self.fitted_at, UTC).strftime("%Y-%m-%d")
        counts = self.questions.get(language, {})
        return (f"fitted on this knowledge base by ragapp eval on {day} ({counts.get('answerable', 0)} answerable, "
                f"{counts.get('probe', 0)} probe questions)")


@dataclass(frozen=True)
class Threshold:
    """The refusal threshold in force for one language and where it came from."""

    value: float | None
    origin: str


def threshold_path(folder: str | Path) -> Path:
    """Where an index folder keeps its fitted threshold."""
    return Path(folder) / EVAL_FOLDER / THRESHOLD_FILE


def read_fitted(folder: str | Path | None, embedding_model: str, reranker: str) -> FittedThreshold | None:
    """The threshold fitted for this embedding model and reranker, or None (none fitted, fitted for
    another model, or a file that is not one ragapp wrote)."""
    if folder is None:
        return None
    data: Any = read_json(threshold_path(folder), _MAX_BYTES)
    try:
        fitted = FittedThreshold(values={k: float(v) for k, v in data["values"].items() if k in ("en", "zh")},
                                 embedding_model=str(data["embedding_model"]), reranker=str(data["reranker"]),
                                 fitted_at=float(data["fitted_at"]),
                                 questions={k: {n: int(c) for n, c in v.items()} for k, v in data.get("questions", {}).items()})
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if fitted.embedding_model != embedding_model or fitted.reranker != reranker:
        return None
    if not all(math.isfinite(v) for v in fitted.values.values()):
        return None
    return fitted


def write_fitted(folder: str | Path, fitted: FittedThreshold) -> None:
    """Store `fitted` for the index in `folder` (replacing the last one at once)."""
    path = threshold_path(folder)
    try:
        write_replacing(path, json.dumps(asdict(fitted), ensure_ascii=False).encode("utf-8"))
    except OSError as exc:
        raise write_failure("the fitted threshold", path.parent, exc, "the threshold in force") from exc


def clear_fitted(folder: str | Path) -> bool:
    """Go back to the global threshold; True when a fitted one was removed."""
    try:
        threshold_path(folder).unlink()
        return True
    except FileNotFoundError:
        return False

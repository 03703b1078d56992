"""The answer confidence refitted on a knowledge base's own questions (`ragapp eval --apply`), kept in
`<index>/eval/confidence.json`, which only this module reads and writes.

Fifty questions are too few to refit every weight, so the refit is a recalibration: the global confidence's
log-odds z becomes a*z + b (two numbers, a logistic fit pulled toward a=1, b=0), per chat model. The file is
untrusted input like the rest of an index folder: anything but what this module wrote is ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragapp.jsonfile import read_json, replace_json
from ragapp.query.threshold import EVAL_FOLDER

CONFIDENCE_FILE = "confidence.json"
# Fewer answers the model wrote (given or withheld) than this, or no right or no wrong one among them: no refit.
MIN_ANSWERS = 20
_MAX_BYTES = 64_000
_PRIOR = 1.0  # L2 pull of (a, b) toward (1, 0), in units of one answer's evidence


@dataclass(frozen=True)
class Recalibration:
    """The confidence's log-odds mapped a*z + b for one chat model, fitted on `answers` of this knowledge base."""

    model: str
    a: float
    b: float
    answers: int
    fitted_at: float

    def apply(self, probability: float) -> float:
        """The recalibrated probability."""
        p = min(max(probability, 1e-6), 1 - 1e-6)
        z = self.a * math.log(p / (1 - p)) + self.b
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def fit(probabilities: Sequence[float], right: Sequence[bool]) -> tuple[float, float] | None:
    """(a, b) by Newton's method on the log-odds, or None when the answers cannot support a fit."""
    if len(probabilities) < MIN_ANSWERS or all(right) or not any(right):
        return None
    p = np.clip(np.asarray(probabilities, dtype=float), 1e-6, 1 - 1e-6)
    x = np.stack([np.log(p / (1 - p)), np.ones(len(p))], axis=1)
    y = np.asarray(right, dtype=float)
    prior = np.array([1.0, 0.0])
    w = prior.copy()
    for _ in range(100):
        q = 1 / (1 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (q - y) + _PRIOR * (w - prior)
        hess = (x * (q * (1 - q))[:, None]).T @ x + _PRIOR * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step / max(1.0, float(np.abs(step).max()))  # damped: a full Newton step overshoots on near-separable answers
    return float(w[0]), float(w[1])


def path_of(folder: str | Path) -> Path:
    """Where an index folder keeps its recalibration."""
    return Path(folder) / EVAL_FOLDER / CONFIDENCE_FILE


def read(folder: str | Path | None, model: str) -> Recalibration | None:
    """The recalibration fitted for `model` here, or None (none, another model's, or not a file ragapp wrote)."""
    if folder is None:
        return None
    data: Any = read_json(path_of(folder), _MAX_BYTES)
    try:
        found = Recalibration(model=str(data["model"]), a=float(data["a"]), b=float(data["b"]), answers=int(data["answers"]),
                              fitted_at=float(data["fitted_at"]))
    except (ValueError, KeyError, TypeError):
        return None
    if found.model != model or not (math.isfinite(found.a) and math.isfinite(found.b)):
        return None
    return found


def write(folder: str | Path, recalibration: Recalibration) -> None:
    """Store it for the index in `folder` (replacing the last one at once)."""
    if not replace_json(path_of(folder), asdict(recalibration)):
        raise OSError(f"cannot write {path_of(folder)}")

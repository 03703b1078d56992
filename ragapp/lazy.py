"""Models that load on first use, once, even when several threads ask for them at the same moment."""

from __future__ import annotations

import threading
from typing import Any


class LoadsOnce:
    """Base of every in-process model: `_load()` runs once, under a lock; `loaded` says whether it has."""

    def __init__(self) -> None:
        self._model: Any = None  # the library's model object, loaded on first use
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """True once the model is in memory."""
        return self._model is not None

    def warm_up(self) -> None:
        """Load the model now instead of on first use (once, however many threads ask)."""
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is None:
                self._model = self._load()

    def _load(self):
        raise NotImplementedError

"""erf as an odd/even rational function on [-4, 4] (Eigen's and XLA's float32 erf; |error| < 4e-7): the
exact GELU of BERT-shaped encoders, the same numbers in the numba loops and in numpy."""

from __future__ import annotations

import numpy as np

NUMERATOR = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
             -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
DENOMINATOR = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
               -1.42647390514189e-02)
EDGE = 4.0  # erf is +-1 in float32 beyond


def erf(x: np.ndarray) -> np.ndarray:
    """erf of a float32 array, elementwise."""
    x = np.clip(x, np.float32(-EDGE), np.float32(EDGE))
    x2 = x * x
    p = np.full_like(x, NUMERATOR[0])
    for c in NUMERATOR[1:]:
        p = p * x2 + np.float32(c)
    q = np.full_like(x, DENOMINATOR[0])
    for c in DENOMINATOR[1:]:
        q = q * x2 + np.float32(c)
    return x * p / q


def gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU of a float32 array."""
    return np.float32(0.5) * x * (np.float32(1.0) + erf(x * np.float32(0.7071067811865476)))

"""The comparator: backend outputs against the float64 reference, with per-dtype tolerances."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from harness.errors import InputError


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0):
            raise InputError(f"tolerances must be >= 0, got atol={self.atol}, rtol={self.rtol}")


# fp32 backends agree with float64 to about 5e-7; half precisions carry 8 (bf16) or
# 11 (fp16) mantissa bits, so their bounds follow their unit roundoff over 50 steps.
DEFAULT_TOLERANCES = {
    "fp32": Tolerance(atol=1e-5, rtol=1e-4),
    "fp16": Tolerance(atol=5e-3, rtol=5e-3),
    "bf16": Tolerance(atol=3e-2, rtol=3e-2),
}


@dataclass(frozen=True)
class Agreement:
    max_abs_err: float
    max_rel_err: float
    agrees: bool

    def to_dict(self) -> dict:
        return asdict(self)


def compare(actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> Agreement:
    """``|actual - expected| <= atol + rtol * |expected|`` everywhere (numpy.allclose's rule).

    NaN or Inf in ``actual`` never agrees.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return Agreement(float("inf"), float("inf"), False)
    if not np.isfinite(actual).all():
        return Agreement(float("nan"), float("nan"), False)
    diff = np.abs(actual - expected)
    rel = diff / np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    ok = bool(np.all(diff <= tolerance.atol + tolerance.rtol * np.abs(expected)))
    return Agreement(float(diff.max(initial=0.0)), float(rel.max(initial=0.0)), ok)

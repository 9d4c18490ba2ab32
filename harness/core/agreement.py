"""The comparator: backend outputs against the float64 reference, with per-dtype tolerances."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from harness.core.errors import InputError


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0):
            raise InputError(f"tolerances must be >= 0, got atol={self.atol}, rtol={self.rtol}")


# fp32 backends agree with float64 to about 5e-7; half precisions carry 8 (bf16) or
# 11 (fp16) mantissa bits, so their bounds follow their unit roundoff over 50 steps.
# Measured on CPU over the check grid (batch 1..1024, seq_len 50 and 200, sine and random):
# bf16 eager 1.4e-2 and compile 1.1e-2 at most, so 3e-2 keeps a 2x margin; fp16 eager 1.6e-3
# and ONNX Runtime 1.3e-3, against 5e-3.
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
    ok = bool(np.all(within(actual, expected, tolerance)))
    return Agreement(float(diff.max(initial=0.0)), float(rel.max(initial=0.0)), ok)


def within(actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    """Elementwise ``compare``'s rule: True where ``actual`` is within the band (NaN never is)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return np.abs(actual - expected) <= tolerance.atol + tolerance.rtol * np.abs(expected)


@dataclass(frozen=True)
class RolloutAgreement:
    """A forecast against the float64 reference forecast, step by step over the horizon."""

    step_err: tuple[float, ...]  # largest absolute error over the batch at each horizon step
    drift_horizon: int | None  # first step (1-based) out of tolerance; None if it never left
    max_abs_err: float

    @property
    def agrees(self) -> bool:
        return self.drift_horizon is None


def compare_rollout(actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> RolloutAgreement:
    """Apply ``compare``'s rule at every step of (batch, horizon, output) forecasts."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise InputError(f"rollout shapes differ: {actual.shape} vs reference {expected.shape}")
    diff = np.abs(actual - expected)
    # NaN compares False, so a non-finite forecast step is out of tolerance.
    within = diff <= tolerance.atol + tolerance.rtol * np.abs(expected)
    step_ok = within.all(axis=(0, 2))
    step_err = np.where(np.isfinite(diff), diff, np.inf).max(axis=(0, 2))
    drift = None if step_ok.all() else int(np.argmin(step_ok)) + 1
    return RolloutAgreement(tuple(float(e) for e in step_err), drift, float(step_err.max(initial=0.0)))


# The autoregressive loop amplifies one-step error: fp32 backends agreeing to ~1e-7 on one
# window reach ~5e-5 after 200 fed-back steps here (ONNX Runtime's LSTM kernel), while a
# one-step bias of 5e-6 (within the fp32 band) reaches ~1e-3. So the rollout band is the
# one-step atol times this factor, and has no rtol: a sine forecast crosses zero, where a
# relative bound means nothing.
ROLLOUT_ATOL_FACTOR = 20.0


def rollout_tolerance(one_step: Tolerance) -> Tolerance:
    return Tolerance(one_step.atol * ROLLOUT_ATOL_FACTOR, 0.0)

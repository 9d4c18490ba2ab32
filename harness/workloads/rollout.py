"""Rollout: forecast ``horizon`` steps from real sine windows, feeding each prediction back.

Each forecast is compared step by step with the float64 reference's forecast from the same
windows, within the rollout band, and with the true sine continuation. A row agrees only if
the one-step check and the forecast both do, so a backend that is fine on one step but
drifts shows the step it drifted at.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from backends.base import feedback_rollout
from harness.core.agreement import Tolerance, compare_rollout, rollout_tolerance
from harness.core.data import sine_forecast_batch
from harness.core.errors import InputError
from harness.core.model import ModelConfig, validate_input
from harness.core.results import Check
from harness.core.timing import Measurement, Timer
from harness.workloads.base import (
    MAX_STEPS,
    PRIMARY,
    CheckContext,
    Checked,
    HandleLike,
    RowContext,
    Sessions,
    Shape,
    TimedWorkload,
    at_most,
    one_window_check,
    positive_int,
    setting,
    window_payloads,
)
from harness.workloads.columns import (
    HEAD,
    NOTES,
    SPEEDUP,
    Column,
    agreement_tone,
    fmt,
    verdict_mark,
)
from harness.workloads.forward import FORWARD


def drift(row: dict) -> str:
    if row.get("horizon") is None:
        return "—"
    return "never" if row.get("drift_horizon") is None else f"step {row['drift_horizon']}"


@dataclass(frozen=True)
class RolloutSpeed:
    """How fast a rollout went: forecast steps per second, over the batch."""

    throughput_steps_s: float


@dataclass(frozen=True)
class RolloutAccuracy:
    """How a rollout's forecast held against the float64 reference's and the true series."""

    horizon: int  # steps forecast
    drift_horizon: int | None  # the first step outside the band; None: it never left
    max_abs_err_rollout: float  # against the reference's forecast, over every step
    mse_vs_truth: float  # against the sine's true continuation
    # the largest error over the batch at each step; a step whose forecast was not finite
    # is written as null (JSON has no infinity)
    rollout_err: list[float | None]


@dataclass(frozen=True)
class Rollout(TimedWorkload):
    name: ClassVar[str] = "rollout"
    summary: ClassVar[str] = "an autoregressive forecast of `horizon` steps, predictions fed back"
    row_records: ClassVar[tuple[type, ...]] = (RolloutSpeed, RolloutAccuracy)
    check_label: ClassVar[str | None] = "rollout"
    horizon: int = setting(200, at_most(positive_int, MAX_STEPS),  # steps forecast
                           f"an integer from 1 to {MAX_STEPS}")

    def refuse_model(self, model: ModelConfig) -> None:
        if model.output_size != model.input_size:
            raise InputError(f"a rollout feeds predictions back as inputs, so output_size "
                             f"({model.output_size}) must equal input_size ({model.input_size})")

    def check_shapes(self, timed: list[Shape]) -> list[Shape]:
        return list(timed)

    def check(self, ctx: CheckContext, handle: HandleLike, backend: str, dtype: str) -> Checked:
        checks = one_window_check(ctx, handle, FORWARD, backend, dtype)
        band = rollout_tolerance(ctx.tolerance)
        fields = {}
        for shape in ctx.timed_shapes:
            windows, truth, expected = ctx.memo(("rollout", shape, self.horizon),
                                                lambda s=shape: self._forecast(ctx, s))
            forecast = handle.outputs(self, windows)
            result = compare_rollout(forecast, expected, band)
            # Relative to the forecast's peak: a sine crosses zero, where pointwise ratios explode.
            rel = result.max_abs_err / max(float(np.abs(expected).max()), np.finfo(float).tiny)
            checks.append(Check(backend, *shape, "sine", result.max_abs_err, rel, result.agrees,
                                mode=self.name, dtype=dtype))
            fields[shape] = asdict(RolloutAccuracy(
                self.horizon, result.drift_horizon, result.max_abs_err,
                float(np.mean((forecast - truth) ** 2)), list(result.step_err)))
        return Checked(checks, fields)

    def _forecast(self, ctx: CheckContext, shape: Shape) -> tuple[np.ndarray, ...]:
        """Sine windows, their true continuation and the float64 reference's forecast."""
        windows, truth = sine_forecast_batch(*shape, self.horizon, ctx.seed(("rollout", shape)),
                                             ctx.input_size)
        return windows, truth, feedback_rollout(ctx.reference.forward, windows, self.horizon)

    def timer_payloads(self, shape: Shape, seed: int, n_inputs: int, input_size: int
                       ) -> dict[str, Any]:
        return {PRIMARY: window_payloads(shape, seed, n_inputs, input_size)}

    def row_fields(self, shape: Shape, measured: Mapping[str, Measurement],
                   context: RowContext) -> dict:
        return asdict(RolloutSpeed(shape[0] * self.horizon / measured[PRIMARY].summary.median))

    def tolerance_record(self, tolerance: Tolerance) -> dict:
        band = rollout_tolerance(tolerance)
        return {"rollout": {"atol": band.atol, "rtol": band.rtol}}

    def caption(self, tolerance: dict) -> str | None:
        if "rollout" not in tolerance:
            return None
        return (f"rollout band: |forecast - float64 forecast| <= {tolerance['rollout']['atol']} "
                f"at every step; 'drifts at' is the first step outside it")

    def columns(self, focus: str) -> tuple[Column, ...]:
        return (*HEAD,
                Column("horizon", "right", lambda r: fmt(r.get("horizon"), "d")),
                Column("ms/rollout", "right", lambda r: fmt(r.get("median_ms"), ".2f")),
                Column("p99 ms", "right", lambda r: fmt(r.get("p99_ms"), ".2f")),
                SPEEDUP,
                Column("1-step err", "right", lambda r: fmt(r.get("max_abs_err"), ".1e")),
                Column("rollout max err", "right", lambda r: fmt(r.get("max_abs_err_rollout"), ".1e")),
                Column("drifts at", "left", drift,
                       tone=lambda r: None if r.get("drift_horizon") is None else "bad"),
                Column("MSE vs truth", "right", lambda r: fmt(r.get("mse_vs_truth"), ".2e")),
                Column("agrees", "left", verdict_mark, tone=agreement_tone),
                NOTES)

    def outputs(self, sessions: Sessions, windows: np.ndarray) -> np.ndarray:
        return sessions.window.rollout(validate_input(windows, sessions.input_size), self.horizon)

    def timer(self, sessions: Sessions, role: str, payload: list[np.ndarray]) -> Timer:
        """Times one full rollout per call, from a host window to host forecasts."""
        session = sessions.window
        windows = [validate_input(w, sessions.input_size) for w in payload]
        return Timer(lambda w: session.rollout(w, self.horizon), windows,
                     sync=session.synchronize, cuda_events=session.uses_current_cuda_stream)

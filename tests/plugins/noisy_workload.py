"""A plugin workload, registered the way any third party would: ``WORKLOADS = [...]``.

Noisy sine windows, the kind a real sensor sends: each call predicts from windows carrying
Gaussian noise of the scenario's ``sigma``. It brings its own check, timer, row fields and
columns, and nothing else in the harness names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from harness.core.data import sine_batch
from harness.core.results import Check
from harness.core.timing import Measurement, Timer
from harness.workloads.base import (
    PRIMARY,
    CheckContext,
    Checked,
    HandleLike,
    RowContext,
    Sessions,
    Shape,
    TimedWorkload,
    non_negative_number,
    setting,
)
from harness.workloads.columns import HEAD, NOTES, SPEEDUP, Column, agreement, agreement_tone, fmt
from harness.workloads.forward import FORWARD


@dataclass(frozen=True)
class NoisyFields:
    noise_sigma: float
    windows_per_s: float


@dataclass(frozen=True)
class NoisyWindows(TimedWorkload):
    name: ClassVar[str] = "noisy"
    summary: ClassVar[str] = "sine windows with Gaussian noise, one window per call"
    row_records: ClassVar[tuple[type, ...]] = (NoisyFields,)
    error_mode: ClassVar[str] = "noisy"
    check_label: ClassVar[str | None] = "noisy windows"
    sigma: float = setting(0.1, non_negative_number, "a number >= 0")

    def windows(self, shape: Shape, seed: int, input_size: int = 1) -> np.ndarray:
        clean = sine_batch(*shape, seed, input_size)
        noise = np.random.default_rng(seed).normal(0.0, self.sigma, clean.shape)
        return (clean + noise).astype(np.float32)

    def check_shapes(self, timed: list[Shape]) -> list[Shape]:
        return list(timed)

    def check(self, ctx: CheckContext, handle: HandleLike, backend: str, dtype: str) -> Checked:
        checks = []
        for shape in ctx.timed_shapes:
            x = self.windows(shape, ctx.seed(("noisy", shape)), ctx.input_size)
            result = ctx.compare(handle.outputs(self, x), ctx.reference.forward(x))
            checks.append(Check(backend, *shape, "noisy sine", result.max_abs_err,
                                result.max_rel_err, result.agrees, mode=self.name, dtype=dtype))
        return Checked(checks)

    def timer_payloads(self, shape: Shape, seed: int, n_inputs: int, input_size: int
                       ) -> dict[str, Any]:
        return {PRIMARY: [self.windows(shape, seed + 1000 + i, input_size) for i in range(n_inputs)]}

    def row_fields(self, shape: Shape, measured: Mapping[str, Measurement],
                   context: RowContext) -> dict:
        return asdict(NoisyFields(self.sigma, shape[0] / measured[PRIMARY].summary.median))

    def columns(self, focus: str) -> tuple[Column, ...]:
        return (*HEAD,
                Column("median ms", "right", lambda r: fmt(r.get("median_ms"), ".3f")),
                Column("noise σ", "right", lambda r: fmt(r.get("noise_sigma"), "g")),
                Column("windows/s", "right", lambda r: fmt(r.get("windows_per_s"), ",.0f")),
                SPEEDUP, Column("agrees (max err)", "left", agreement, tone=agreement_tone), NOTES)

    def outputs(self, sessions: Sessions, x: np.ndarray) -> np.ndarray:
        return FORWARD.outputs(sessions, x)

    def timer(self, sessions: Sessions, role: str, payload: list[np.ndarray]) -> Timer:
        return sessions.window_timer(payload)


WORKLOADS = [NoisyWindows]

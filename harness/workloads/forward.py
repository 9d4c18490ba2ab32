"""Forward: one window per call, the batched sequence inference every backend is timed on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from harness.core.model import ModelConfig, validate_input
from harness.core.roofline import lstm_forward_flops
from harness.core.shapes import NON_NEGATIVE
from harness.core.stats import throughput
from harness.core.targets import DEFAULT_MODE
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
    one_window_check,
    setting,
    window_payloads,
)
from harness.workloads.columns import (
    HEAD,
    NOTES,
    PREP_S,
    SPEEDUP,
    Column,
    agreement,
    agreement_tone,
    fmt,
    memory,
)

# One-window checks cover these shapes besides the timed ones: seq_len 200 and 13 (odd, and
# shorter than the training length) are not the training length, so they prove the shapes
# dynamic, or that a backend built for fixed lengths serves each length correctly.
CHECK_BATCH_SIZES = (1, 64, 1024)
CHECK_SEQ_LENS = (50, 200, 13)
# "timed": the timed shapes only. The float64 reference computes every check's answer, and
# its cost grows with the square of the hidden size (docs/notes/settings-evidence.md), so a
# sweep over large models checks where it times.
CHECK_GRIDS = ("full", "timed")

MEDIAN = Column("median ms", "right", lambda r: fmt(r.get("median_ms"), ".3f"))
P90 = Column("p90 ms", "right", lambda r: fmt(r.get("p90_ms"), ".3f"))
P99 = Column("p99 ms", "right", lambda r: fmt(r.get("p99_ms"), ".3f"))
REST = (
    Column("seq/s", "right", lambda r: fmt(r.get("throughput_seq_s"), ",.0f")),
    SPEEDUP,
    Column("agrees (max err)", "left", agreement, tone=agreement_tone),
    Column("% peak", "right", lambda r: fmt(r.get("pct_peak"), ".1f", "%")),
    PREP_S,
    Column("1st call ms", "right", lambda r: fmt(r.get("first_call_ms"), ".1f")),
    Column("rss MB", "right", memory),
)


@dataclass(frozen=True)
class ForwardFields:
    """What a forward row adds: its throughput, and its speed against the machine's peak."""

    throughput_seq_s: float = field(metadata=NON_NEGATIVE)  # windows answered per second
    throughput_steps_s: float = field(metadata=NON_NEGATIVE)  # time steps read per second
    gflops: float = field(metadata=NON_NEGATIVE)  # the LSTM's floating-point work per second
    # gflops against the machine's peak GEMM rate; None: no peak
    pct_peak: float | None = field(metadata=NON_NEGATIVE)


def forward_fields(model: ModelConfig, shape: Shape, median_s: float,
                   peak_gflops: float | None) -> ForwardFields:
    """A forward row's fields for ``model`` answering a batch of ``shape`` in ``median_s``."""
    batch, seq_len = shape
    seqs_s, steps_s = throughput(batch, seq_len, median_s)
    gflops = lstm_forward_flops(model, seq_len) * batch / median_s / 1e9
    return ForwardFields(seqs_s, steps_s, gflops, 100.0 * gflops / peak_gflops if peak_gflops else None)


@dataclass(frozen=True)
class Forward(TimedWorkload):
    name: ClassVar[str] = DEFAULT_MODE
    summary: ClassVar[str] = "one window per call: batched sequence inference"
    row_records: ClassVar[tuple[type, ...]] = (ForwardFields,)
    check_grid: str = setting(
        "full", lambda v: v in CHECK_GRIDS,
        "'full' (batch 1, 64, 1024 x seq_len 50, 200, 13 and the timed shapes) or 'timed' "
        "(the timed shapes only)")

    def check_shapes(self, timed: list[Shape]) -> list[Shape]:
        if self.check_grid == "timed":
            return list(timed)
        grid = [(b, s) for s in CHECK_SEQ_LENS for b in CHECK_BATCH_SIZES]
        return grid + [shape for shape in timed if shape not in grid]

    def check(self, ctx: CheckContext, handle: HandleLike, backend: str, dtype: str) -> Checked:
        return Checked(one_window_check(ctx, handle, self, backend, dtype))

    def timer_payloads(self, shape: Shape, seed: int, n_inputs: int, input_size: int
                       ) -> dict[str, Any]:
        return {PRIMARY: window_payloads(shape, seed, n_inputs, input_size)}

    def row_fields(self, shape: Shape, measured: Mapping[str, Measurement],
                   context: RowContext) -> dict:
        return asdict(forward_fields(context.model, shape, measured[PRIMARY].summary.median,
                                     context.peak_gflops))

    def columns(self, focus: str) -> tuple[Column, ...]:
        # A latency scenario leads with the tail.
        timing = (P90, P99, MEDIAN) if focus == "tail" else (MEDIAN, P90, P99)
        return (*HEAD, *timing, *REST, NOTES)

    def outputs(self, sessions: Sessions, x: np.ndarray) -> np.ndarray:
        session = sessions.window
        y = session.run(session.to_native(validate_input(x, sessions.input_size)))
        session.synchronize()
        return session.to_numpy(y)

    def timer(self, sessions: Sessions, role: str, payload: list[np.ndarray]) -> Timer:
        return sessions.window_timer(payload)


FORWARD = Forward()

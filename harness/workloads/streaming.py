"""Streaming: one new sample into a live (h, c) stream, against re-running the whole window.

Agreement: streaming each checked window sample by sample from zero states must reproduce
the float64 reference's output at every step and its final h and c. Timing: feeding one
sample into a stream already live (primed with a window), interleaved with re-running the
whole window on the same backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from backends.base import Session
from harness.core.agreement import worst
from harness.core.data import sine_batch
from harness.core.model import validate_input
from harness.core.results import Check
from harness.core.shapes import NON_NEGATIVE
from harness.core.timing import Measurement, Timer
from harness.workloads.base import (
    CheckContext,
    Checked,
    HandleLike,
    RowContext,
    Sessions,
    Shape,
    TimedWorkload,
    one_window_check,
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
)
from harness.workloads.forward import FORWARD

STEP, WINDOW = "step", "window"  # the two timers' roles


class LiveStream:
    """A step session fed one sample per call, carrying its (h, c) from call to call, as a
    live stream does; ``feed`` is what the step timer times."""

    def __init__(self, session: Session, batch: int, state_shape: tuple[int, int]) -> None:
        layers, hidden = state_shape
        zeros = np.zeros((layers, batch, hidden), dtype=np.float32)
        self.session = session
        self.h, self.c = session.to_native((zeros, zeros))

    def native_sample(self, x_t: np.ndarray) -> Any:
        return self.session.to_native((x_t,))[0]

    def feed(self, x_t: Any) -> Any:
        y, self.h, self.c = self.session.run((x_t, self.h, self.c))
        return y


@dataclass(frozen=True)
class StreamingFields:
    """What a streaming row adds: a step's time beside re-running the window for it."""

    step_ms: float = field(metadata=NON_NEGATIVE)  # one sample into the live stream (median)
    window_ms: float = field(metadata=NON_NEGATIVE)  # the whole window run again instead (median)
    step_vs_window: float = field(metadata=NON_NEGATIVE)  # step_ms / window_ms
    throughput_steps_s: float = field(metadata=NON_NEGATIVE)  # samples taken in per second, over the batch


@dataclass(frozen=True)
class Streaming(TimedWorkload):
    name: ClassVar[str] = "streaming"
    summary: ClassVar[str] = "one sample into a live (h, c) stream vs re-running the window"
    row_records: ClassVar[tuple[type, ...]] = (StreamingFields,)
    needs_step_model: ClassVar[bool] = True
    primary: ClassVar[str] = STEP
    error_mode: ClassVar[str] = "streaming"
    check_label: ClassVar[str | None] = "stream y,h,c"

    def check_shapes(self, timed: list[Shape]) -> list[Shape]:
        return list(timed)

    def check(self, ctx: CheckContext, handle: HandleLike, backend: str, dtype: str) -> Checked:
        checks = one_window_check(ctx, handle, FORWARD, backend, dtype)
        for shape in ctx.timed_shapes:
            for kind in ("sine", "random"):
                x = ctx.inputs("stream", kind, shape)
                expected = ctx.memo(("stream", kind, shape), lambda x=x: ctx.reference.stream(x))
                results = [ctx.compare(a, e) for a, e in
                           zip(handle.outputs(self, x), expected, strict=True)]
                checks.append(Check(backend, *shape, kind, worst(r.max_abs_err for r in results),
                                    worst(r.max_rel_err for r in results),
                                    all(r.agrees for r in results), mode=self.name, dtype=dtype))
        return Checked(checks)

    def timer_payloads(self, shape: Shape, seed: int, n_inputs: int, input_size: int
                       ) -> dict[str, Any]:
        batch, seq_len = shape
        # The next samples of the first window's series, one per call.
        series = sine_batch(batch, seq_len + n_inputs, seed + 1000, input_size)
        samples = [series[:, seq_len + i] for i in range(n_inputs)]
        return {STEP: (series[:, :seq_len], samples),
                WINDOW: window_payloads(shape, seed, n_inputs, input_size)}

    def row_fields(self, shape: Shape, measured: Mapping[str, Measurement],
                   context: RowContext) -> dict:
        step_s = measured[STEP].summary.median
        window_s = measured[WINDOW].summary.median
        return asdict(StreamingFields(step_s * 1e3, window_s * 1e3, step_s / window_s,
                                      shape[0] / step_s))

    def columns(self, focus: str) -> tuple[Column, ...]:
        return (*HEAD,
                Column("step ms", "right", lambda r: fmt(r.get("step_ms"), ".3f")),
                Column("p99 step ms", "right", lambda r: fmt(r.get("p99_ms"), ".3f")),
                Column("window ms", "right", lambda r: fmt(r.get("window_ms"), ".3f")),
                Column("step / window", "right", lambda r: fmt(r.get("step_vs_window"), ".3f", "×")),
                Column("samples/s", "right", lambda r: fmt(r.get("throughput_steps_s"), ",.0f")),
                SPEEDUP,
                Column("agrees y,h,c (max err)", "left", agreement, tone=agreement_tone),
                PREP_S, NOTES)

    def outputs(self, sessions: Sessions, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """Stream ``x`` (batch, seq_len, input) sample by sample from zero states: the outputs
        at every step (batch, seq_len, output) and the final h and c, as float64."""
        x = validate_input(x, sessions.input_size)
        step = sessions.require_step()
        live = LiveStream(step, x.shape[0], sessions.state_shape)
        ys = []
        for t in range(x.shape[1]):
            y = live.feed(live.native_sample(x[:, t, :]))
            step.synchronize()
            # Read back at once: a session may write the next step's output into the same buffer.
            ys.append(step.to_numpy((y,))[0])
        h, c = step.to_numpy((live.h, live.c))
        return np.stack(ys, axis=1), h, c

    def timer(self, sessions: Sessions, role: str, payload: Any) -> Timer:
        if role == WINDOW:
            return sessions.window_timer(payload)
        prime, samples = payload
        prime = validate_input(prime, sessions.input_size)
        step = sessions.require_step()
        live = LiveStream(step, prime.shape[0], sessions.state_shape)
        for t in range(prime.shape[1]):
            live.feed(live.native_sample(prime[:, t, :]))
        inputs = [live.native_sample(x_t) for x_t in samples]
        return Timer(live.feed, inputs, sync=step.synchronize,
                     cuda_events=step.uses_current_cuda_stream)

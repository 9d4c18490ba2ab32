"""A prepared backend as the runner sees it: predict for checks, timers for measurement.

The runner talks only to a ``Handle``, never to a ``Session`` directly, so where the session
lives (this process, or an isolated worker process) is the handle's business.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from backends.base import Backend, Session, Target
from harness.memory import PeakRss
from harness.model import LSTMPredictor
from harness.timing import Timer


class TimerLike(Protocol):
    calls_per_round: int

    def warm_up(self, seconds: float) -> None: ...
    def calibrate(self, min_round_s: float) -> int: ...
    def round(self) -> float: ...


class Handle(Protocol):
    prepare_s: float
    prepare_rss_mb: float
    first_call_ms: float

    def predict(self, x: np.ndarray) -> np.ndarray: ...
    def timer(self, batches: list[np.ndarray]) -> TimerLike: ...
    def diagnostics(self) -> dict: ...
    def close(self) -> None: ...


class LocalHandle:
    """The session lives in this process."""

    def __init__(self, session: Session, prepare_s: float, prepare_rss_mb: float,
                 first_call_ms: float) -> None:
        self.session = session
        self.prepare_s = prepare_s
        self.prepare_rss_mb = prepare_rss_mb
        self.first_call_ms = first_call_ms

    @classmethod
    def open(cls, backend: Backend, model: LSTMPredictor, target: Target,
             first_batch: np.ndarray) -> LocalHandle:
        """Prepare (timed, memory sampled), then time the first call on ``first_batch``."""
        with PeakRss() as rss:
            start = time.perf_counter()
            session = backend.prepare(model, target)
            session.synchronize()
            prepare_s = time.perf_counter() - start
        x = session.to_native(first_batch)
        session.synchronize()
        start = time.perf_counter()
        session.run(x)
        session.synchronize()
        return cls(session, prepare_s, rss.growth_mb, (time.perf_counter() - start) * 1e3)

    def predict(self, x: np.ndarray) -> np.ndarray:
        y = self.session.run(self.session.to_native(x))
        self.session.synchronize()
        return self.session.to_numpy(y)

    def timer(self, batches: list[np.ndarray]) -> Timer:
        inputs = [self.session.to_native(b) for b in batches]
        return Timer(self.session.run, inputs, sync=self.session.synchronize,
                     cuda_events=self.session.uses_current_cuda_stream)

    def diagnostics(self) -> dict:
        return self.session.diagnostics()

    def close(self) -> None:
        self.session = None

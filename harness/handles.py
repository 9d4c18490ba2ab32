"""A prepared backend as the runner sees it: predict for checks, timers for measurement.

The runner talks only to a ``Handle``, never to a ``Session`` directly, so where the session
lives (this process, or an isolated worker process) is the handle's business.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from backends.base import Backend, Session, Target
from harness.errors import BackendError
from harness.memory import PeakRss
from harness.model import LSTMPredictor
from harness.timing import Timer, TimerLike


def describe(exc: BaseException) -> str:
    """What a failed row says: a BackendError's own line, else ``ExcType: first line``."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return first if isinstance(exc, BackendError) else f"{type(exc).__name__}: {first}"


class Handle(Protocol):
    prepare_s: float
    prepare_rss_mb: float
    first_call_ms: float

    def predict(self, x: np.ndarray) -> np.ndarray: ...
    def timer(self, batches: list[np.ndarray]) -> TimerLike: ...
    def diagnostics(self) -> dict: ...
    def begin_memory(self) -> None: ...
    def end_memory(self) -> tuple[float, float | None]: ...
    def close(self) -> None: ...


class LocalTimer(Timer):
    """A Timer whose failures are typed, so the round-robin can drop it and go on."""

    def time_calls(self, n: int) -> float:
        try:
            return super().time_calls(n)
        except Exception as exc:
            raise BackendError(describe(exc)) from exc


class LocalHandle:
    """The session lives in this process."""

    def __init__(self, session: Session, prepare_s: float, prepare_rss_mb: float,
                 first_call_ms: float, on_cuda: bool = False) -> None:
        self.session = session
        self.prepare_s = prepare_s
        self.prepare_rss_mb = prepare_rss_mb
        self.first_call_ms = first_call_ms
        self._on_cuda = on_cuda
        self._rss: PeakRss | None = None

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
        return cls(session, prepare_s, rss.growth_mb, (time.perf_counter() - start) * 1e3,
                   on_cuda=target.device == "cuda")

    def predict(self, x: np.ndarray) -> np.ndarray:
        y = self.session.run(self.session.to_native(x))
        self.session.synchronize()
        return self.session.to_numpy(y)

    def timer(self, batches: list[np.ndarray]) -> LocalTimer:
        inputs = [self.session.to_native(b) for b in batches]
        return LocalTimer(self.session.run, inputs, sync=self.session.synchronize)

    def diagnostics(self) -> dict:
        return self.session.diagnostics()

    def begin_memory(self) -> None:
        """Start sampling this process's memory (and the CUDA peak) for ``end_memory``."""
        if self._on_cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        self._rss = PeakRss().__enter__()

    def end_memory(self) -> tuple[float, float | None]:
        """(peak RSS growth MB, CUDA peak MB or None) since ``begin_memory``."""
        rss, self._rss = self._rss, None
        rss.__exit__(None, None, None)
        cuda_mb = None
        if self._on_cuda:
            import torch

            cuda_mb = torch.cuda.max_memory_allocated() / 2**20
        return rss.growth_mb, cuda_mb

    def close(self) -> None:
        if self._rss is not None:  # a check that failed half-way left its sampler running
            self.end_memory()
        self.session = None

"""A prepared backend as the runner sees it: predict for checks, timers for measurement.

The runner talks only to a ``Handle``, never to a ``Session`` directly, so where the session
lives (this process, or an isolated worker process) is the handle's business. Every argument
and result of a handle method is a numpy array or a plain value, so a remote handle can
forward it. Streaming (``stream``, ``step_timer``) needs a handle opened ``with_step``.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np

from backends.base import Backend, Session, Target
from harness.errors import BackendError, BackendUnavailableError
from harness.memory import MemoryUse, PeakRss, device_used_mb
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
    def rollout(self, window: np.ndarray, horizon: int) -> np.ndarray: ...
    def rollout_timer(self, windows: list[np.ndarray], horizon: int) -> TimerLike: ...
    def stream(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
    def step_timer(self, prime: np.ndarray, samples: list[np.ndarray]) -> TimerLike: ...
    def diagnostics(self) -> dict: ...
    def begin_memory(self) -> None: ...
    def end_memory(self) -> MemoryUse: ...
    def transfer_ms(self, x: np.ndarray) -> tuple[float, float]: ...
    def close(self) -> None: ...


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
                 first_call_ms: float, step_session: Session | None = None,
                 state_shape: tuple[int, int] = (1, 1), on_cuda: bool = False) -> None:
        self.session = session
        self.step_session = step_session
        self.state_shape = state_shape  # (num_layers, hidden_size) of the step model's states
        self.prepare_s = prepare_s
        self.prepare_rss_mb = prepare_rss_mb
        self.first_call_ms = first_call_ms
        self._on_cuda = on_cuda
        self._rss: PeakRss | None = None
        self._device_before: float | None = None

    @classmethod
    def open(cls, backend: Backend, model: LSTMPredictor, target: Target,
             first_batch: np.ndarray, with_step: bool = False) -> LocalHandle:
        """Prepare (timed, memory sampled; with the step model too if ``with_step``, which
        raises BackendUnavailableError for a backend without one), then time the first call
        on ``first_batch``."""
        with PeakRss() as rss:
            start = time.perf_counter()
            session = backend.prepare(model, target)
            step_session = backend.prepare_step(model, target) if with_step else None
            session.synchronize()
            prepare_s = time.perf_counter() - start
        x = session.to_native(first_batch)
        session.synchronize()
        start = time.perf_counter()
        session.run(x)
        session.synchronize()
        return cls(session, prepare_s, rss.growth_mb, (time.perf_counter() - start) * 1e3,
                   step_session, (model.config.num_layers, model.config.hidden_size),
                   on_cuda=target.device == "cuda")

    def predict(self, x: np.ndarray) -> np.ndarray:
        y = self.session.run(self.session.to_native(x))
        self.session.synchronize()
        return self.session.to_numpy(y)

    def timer(self, batches: list[np.ndarray]) -> LocalTimer:
        inputs = [self.session.to_native(b) for b in batches]
        return LocalTimer(self.session.run, inputs, sync=self.session.synchronize,
                          cuda_events=self.session.uses_current_cuda_stream)

    def rollout(self, window: np.ndarray, horizon: int) -> np.ndarray:
        return self.session.rollout(window, horizon)

    def rollout_timer(self, windows: list[np.ndarray], horizon: int) -> LocalTimer:
        """Times one full rollout per call, from a host window to host forecasts."""
        return LocalTimer(lambda w: self.session.rollout(w, horizon), windows,
                          sync=self.session.synchronize, cuda_events=self.session.uses_current_cuda_stream)

    def _live_stream(self, batch: int) -> LiveStream:
        if self.step_session is None:
            raise BackendUnavailableError("this handle was opened without a step model")
        return LiveStream(self.step_session, batch, self.state_shape)

    def stream(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stream ``x`` (batch, seq_len, input) sample by sample from zero states: the outputs
        at every step (batch, seq_len, output) and the final h and c, as float64."""
        live = self._live_stream(x.shape[0])
        outputs = [live.feed(live.native_sample(x[:, t, :])) for t in range(x.shape[1])]
        self.step_session.synchronize()
        ys = self.step_session.to_numpy(tuple(outputs))
        h, c = self.step_session.to_numpy((live.h, live.c))
        return np.stack(ys, axis=1), h, c

    def step_timer(self, prime: np.ndarray, samples: list[np.ndarray]) -> LocalTimer:
        """Times feeding one sample (batch, input) into a stream made live by ``prime``."""
        live = self._live_stream(prime.shape[0])
        for t in range(prime.shape[1]):
            live.feed(live.native_sample(prime[:, t, :]))
        inputs = [live.native_sample(x_t) for x_t in samples]
        return LocalTimer(live.feed, inputs, sync=self.step_session.synchronize,
                          cuda_events=self.step_session.uses_current_cuda_stream)

    def diagnostics(self) -> dict:
        return self.session.diagnostics()

    def begin_memory(self) -> None:
        """Start sampling this process's memory (and the CUDA peak) for ``end_memory``."""
        if self._on_cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            self._device_before = device_used_mb()
        self._rss = PeakRss().__enter__()

    def end_memory(self) -> MemoryUse:
        """What the process (and the GPU) used since ``begin_memory``."""
        rss, self._rss = self._rss, None
        rss.__exit__(None, None, None)
        if not self._on_cuda:
            return MemoryUse(rss.growth_mb)
        import torch

        device_now = device_used_mb()
        growth = None if device_now is None or self._device_before is None \
            else device_now - self._device_before
        return MemoryUse(rss.growth_mb, torch.cuda.max_memory_allocated() / 2**20, growth)

    def transfer_ms(self, x: np.ndarray) -> tuple[float, float]:
        """Median milliseconds to place a batch where ``run`` wants it and to read an output
        back: the copies the timed calls leave out, reported beside them."""
        session, h2d, d2h = self.session, [], []
        for _ in range(5):
            session.synchronize()
            start = time.perf_counter()
            native = session.to_native(x)
            session.synchronize()
            h2d.append(time.perf_counter() - start)
            y = session.run(native)
            session.synchronize()
            start = time.perf_counter()
            session.to_numpy(y)
            d2h.append(time.perf_counter() - start)
        return float(np.median(h2d)) * 1e3, float(np.median(d2h)) * 1e3

    def close(self) -> None:
        if self._rss is not None:  # a check that failed half-way left its sampler running
            self.end_memory()
        self.session = None
        self.step_session = None

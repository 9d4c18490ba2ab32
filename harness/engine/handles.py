"""A prepared backend behind a narrow handle, wherever it runs.

The runner sees a backend only through a handle's verbs: ``outputs`` (run a workload or a
probe on a payload), ``timer`` (a timer for one of a workload's roles), ``facts`` (what
preparing and checking it cost) and ``close``; ``LocalHandle.open`` and
``harness.engine.isolation.WorkerHandle.open`` make one. Each verb is a ``Request`` that
executes against a ``Served`` backend where the backend lives: a ``LocalHandle`` executes
it in this process, a ``WorkerHandle`` sends the same request to its worker, which executes
it the same way. A new capability is one Request class, not one method per handle.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from backends.base import Backend, Target
from harness.core.errors import BackendError, BackendUnavailableError, InputError
from harness.core.memory import MemoryUse, PeakRss, current_rss_bytes, device_memory
from harness.core.model import LSTMPredictor
from harness.core.timing import Timer, TimerLike
from harness.workloads.base import Sessions, Task, TimedWorkload


def describe(exc: BaseException) -> str:
    """What a failed row says: a BackendError's own line, else ``ExcType: first line``."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return first if isinstance(exc, BackendError) else f"{type(exc).__name__}: {first}"


@dataclass(frozen=True)
class OpenInfo:
    """What opening a handle cost: preparing the backend and its first call."""

    prepare_s: float
    prepare_rss_mb: float
    first_call_ms: float
    pid: int  # the process the backend runs in, whose CPU time is the run's own
    startup_s: float | None = None  # spawning an isolated worker: the price of isolation
    # The files it built or loaded for the timed shapes (path -> SHA-256), which the
    # backend's later worker processes load instead of building them again.
    artifacts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Facts:
    """What a handle learnt about its backend: memory during the checks, and the backend's
    own diagnostics (artifact sizes and hashes, graph counts, providers, ...)."""

    memory: MemoryUse
    diagnostics: dict = field(default_factory=dict)


class Served:
    """One prepared backend where it runs: its sessions, the timers made from them, and the
    memory used while its outputs were checked."""

    def __init__(self, sessions: Sessions, on_cuda: bool) -> None:
        self.sessions = sessions
        self.on_cuda = on_cuda
        self.timers: dict[int, Timer] = {}
        self._count = 0
        self._window: _MemoryWindow | None = None
        self._closed_window: MemoryUse | None = None

    def outputs(self, task: Task, payload: Any) -> Any:
        """``task``'s answer; until ``facts`` is asked, the memory it takes is recorded."""
        if self._closed_window is not None:
            return task.outputs(self.sessions, payload)
        if self._window is None:
            self._window = _MemoryWindow(self.on_cuda)
        return self._window.track(lambda: task.outputs(self.sessions, payload))

    def new_timer(self, workload: TimedWorkload, role: str, payload: Any) -> int:
        # One shape is measured at a time, with at most a few timers; the inputs of an older
        # shape's timers are not needed again.
        self._count += 1
        self.timers = {k: v for k, v in self.timers.items() if k >= self._count - 3}
        self.timers[self._count] = workload.timer(self.sessions, role, payload)
        return self._count

    def facts(self) -> Facts:
        if self._closed_window is None:
            self._closed_window = self._window.close() if self._window else MemoryUse(0.0)
        diagnostics = self.sessions.window.diagnostics()
        if self.sessions.step is not None:  # a row that times the step model reports it too
            diagnostics = {**diagnostics, "step": self.sessions.step.diagnostics()}
        return Facts(self._closed_window, diagnostics)

    def artifacts(self) -> dict[str, str]:
        sessions = [s for s in (self.sessions.window, self.sessions.step) if s is not None]
        return {path: sha for s in sessions for path, sha in s.artifacts().items()}


class _MemoryWindow:
    """Peak resident-memory growth over every call it tracks (and on CUDA the allocator's
    peak and the device's own growth); cached device memory is released after each call, so
    the checks' largest batches do not stay reserved in every worker."""

    def __init__(self, on_cuda: bool) -> None:
        self.on_cuda = on_cuda
        self.start = current_rss_bytes()
        self.peak = self.start
        self.device_start = self.device_peak = None
        if on_cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            self.device_start = self.device_peak = device_memory()

    def track(self, call: Any) -> Any:
        with PeakRss() as rss:
            result = call()
        self.peak = max(self.peak, rss.peak_bytes)
        if self.on_cuda:
            import torch

            used = device_memory()
            if used is not None and self.device_peak is not None \
                    and used.scope == self.device_peak.scope:
                self.device_peak = max(self.device_peak, used, key=lambda m: m.used_mb)
            torch.cuda.empty_cache()
        return result

    def close(self) -> MemoryUse:
        rss_mb = (self.peak - self.start) / 2**20
        if not self.on_cuda:
            return MemoryUse(rss_mb)
        import torch

        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        if self.device_start is None:
            return MemoryUse(rss_mb, peak_mb)
        return MemoryUse(rss_mb, peak_mb, self.device_peak.used_mb - self.device_start.used_mb,
                         self.device_start.scope)


# -- requests: one class per capability, executed where the backend runs -----------------
class Request(ABC):
    # How long this request may take in a worker, where that is longer than the handle's
    # own limit (a measurement known to last minutes); None: the handle's limit.
    timeout_s: float | None = None
    what: ClassVar[str]  # what it asks, as a message names it ("the worker died during ...")

    @abstractmethod
    def execute(self, served: Served) -> Any: ...


@dataclass(frozen=True)
class Outputs(Request):
    what: ClassVar[str] = "a call"
    task: Task
    payload: Any
    timeout_s: float | None = None

    def execute(self, served: Served) -> Any:
        return served.outputs(self.task, self.payload)


@dataclass(frozen=True)
class NewTimer(Request):
    what: ClassVar[str] = "timer set-up"
    workload: TimedWorkload
    role: str
    payload: Any

    def execute(self, served: Served) -> int:
        return served.new_timer(self.workload, self.role, self.payload)


@dataclass(frozen=True)
class WarmUp(Request):
    what: ClassVar[str] = "warm-up"
    timer_id: int
    seconds: float

    def execute(self, served: Served) -> None:
        served.timers[self.timer_id].warm_up(self.seconds)


@dataclass(frozen=True)
class Calibrate(Request):
    what: ClassVar[str] = "calibration"
    timer_id: int
    min_round_s: float

    def execute(self, served: Served) -> int:
        return served.timers[self.timer_id].calibrate(self.min_round_s)


@dataclass(frozen=True)
class Round(Request):
    what: ClassVar[str] = "a timed round"
    timer_id: int

    def execute(self, served: Served) -> float:
        return served.timers[self.timer_id].round()


@dataclass(frozen=True)
class GetFacts(Request):
    what: ClassVar[str] = "diagnostics"
    def execute(self, served: Served) -> Facts:
        return served.facts()


class HandleTimer:
    """A ``TimerLike`` whose rounds run where the handle's backend runs."""

    def __init__(self, handle: Handle, timer_id: int) -> None:
        self._handle = handle
        self._id = timer_id
        self.calls_per_round = 1

    def warm_up(self, seconds: float) -> None:
        self._handle.call(WarmUp(self._id, seconds))

    def calibrate(self, min_round_s: float) -> int:
        self.calls_per_round = self._handle.call(Calibrate(self._id, min_round_s))
        return self.calls_per_round

    def round(self) -> float:
        return self._handle.call(Round(self._id))


class Handle(ABC):
    """The verbs, each a request; subclasses say where requests execute."""

    info: OpenInfo

    @abstractmethod
    def call(self, request: Request) -> Any:
        """Execute ``request`` where the backend lives. Raises InputError for inputs the
        workload refused, BackendUnavailableError, or BackendError for any other failure."""

    @abstractmethod
    def close(self) -> None: ...

    def outputs(self, task: Task, payload: Any, timeout_s: float | None = None) -> Any:
        return self.call(Outputs(task, payload, timeout_s))

    def timer(self, workload: TimedWorkload, role: str, payload: Any) -> TimerLike:
        return HandleTimer(self, self.call(NewTimer(workload, role, payload)))

    def facts(self) -> Facts:
        return self.call(GetFacts())


class LocalHandle(Handle):
    """The backend runs in this process."""

    def __init__(self, served: Served, info: OpenInfo) -> None:
        self._served: Served | None = served
        self.info = info

    @classmethod
    def open(cls, backend: Backend, model: LSTMPredictor, target: Target,
             first_batch: np.ndarray, with_step: bool = False) -> LocalHandle:
        """Prepare (timed, memory sampled; with the step model too if ``with_step``, which
        raises BackendUnavailableError for a backend without one), then time the first call
        on ``first_batch``. Raises BackendUnavailableError where the environment the backend
        needs is not in force: only a process that had it when CUDA started (an isolated
        worker sets it first) would run what the row claims."""
        missing = {k: v for k, v in backend.environment(target).items() if os.environ.get(k) != v}
        if missing:
            wanted = " ".join(f"{k}={v}" for k, v in missing.items())
            raise BackendUnavailableError(
                f"{backend.name} needs {wanted} in the environment before CUDA starts; an isolated "
                f"worker sets it, this process did not have it (set it before starting the harness)")
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
        first_call_ms = (time.perf_counter() - start) * 1e3
        cfg = model.config
        sessions = Sessions(session, step_session, cfg.input_size, (cfg.num_layers, cfg.hidden_size))
        served = Served(sessions, on_cuda=target.device == "cuda")
        return cls(served, OpenInfo(prepare_s, rss.growth_mb, first_call_ms, os.getpid(),
                                    artifacts=tuple(served.artifacts().items())))

    @property
    def sessions(self) -> Sessions:
        """For in-process callers that drive a session themselves (the pytest-benchmark suite)."""
        return self._live().sessions

    def _live(self) -> Served:
        if self._served is None:
            raise BackendError("the handle was closed")
        return self._served

    def call(self, request: Request) -> Any:
        try:
            return request.execute(self._live())
        except (InputError, BackendError, BackendUnavailableError):
            raise
        except Exception as exc:
            raise BackendError(describe(exc)) from exc

    def close(self) -> None:
        self._served = None


@dataclass(frozen=True)
class CopyTimes:
    """A probe: median milliseconds to place a batch where ``run`` wants it and to read an
    output back, the copies the timed calls leave out, reported beside them."""

    repeats: int = 5

    def outputs(self, sessions: Sessions, x: np.ndarray) -> tuple[float, float]:
        session, h2d, d2h = sessions.window, [], []
        for _ in range(self.repeats):
            session.synchronize()
            start = time.perf_counter()
            native = session.to_native(x)
            session.synchronize()
            h2d.append(time.perf_counter() - start)
        y = session.run(native)  # one output read back repeatedly: the float64 reference is slow
        session.synchronize()
        for _ in range(self.repeats):
            start = time.perf_counter()
            session.to_numpy(y)
            d2h.append(time.perf_counter() - start)
        return float(np.median(h2d)) * 1e3, float(np.median(d2h)) * 1e3

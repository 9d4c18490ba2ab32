"""The timing engine: a Timer takes rounds of calls, a Measurement holds what it saw.

Kept apart from the runner, as torch.utils.benchmark keeps Timer, Measurement and Compare
apart. Every round rotates through preallocated inputs, and synchronises the session before
each clock read, so no asynchronous device work escapes the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from harness.errors import BackendError
from harness.stats import Summary, summarize


@dataclass(frozen=True)
class TimingConfig:
    warmup_s: float = 0.2  # per backend and shape, before calibration
    # A round lasts at least this long (and >= 1000 clock ticks). Long enough to hold many
    # calls at batch 64: a one-call round also timed waking the threads after the previous
    # backend's round, which inflated eager's median there from 1.4 to 3.3 ms.
    min_round_s: float = 20e-3
    # A pause before each round. After a parallel region, OpenMP's threads spin for a while
    # in the process that ran it; with backends in separate workers that spin overlapped
    # the next backend's round on this 2-core machine. The pause lets it end first: at
    # batch 64 the IQR of eager's rounds fell from 35-47% of the median to 12-16%, and two
    # consecutive runs then gave torch speedups within 4.3% instead of up to 8%.
    settle_s: float = 3e-3
    min_rounds: int = 15
    max_rounds: int = 2000
    target_ci: float = 0.02  # stop once the median's 95% CI is within +-2% of it ...
    budget_s: float = 2.0  # ... or once this much time per row is spent
    n_inputs: int = 4  # preallocated batches rotated through
    seed: int = 0


def clock_resolution() -> float:
    return time.get_clock_info("perf_counter").resolution


@dataclass(frozen=True)
class Measurement:
    samples_s: tuple[float, ...]  # seconds per call, one value per round
    calls_per_round: int
    stop_reason: str  # "ci" (precise enough) or "budget" (time ran out) or "max_rounds"
    summary: Summary


class TimerLike(Protocol):
    """What the round-robin needs of a timer, wherever its calls run."""

    calls_per_round: int

    def warm_up(self, seconds: float) -> None: ...
    def calibrate(self, min_round_s: float) -> int: ...
    def round(self) -> float: ...


class Timer:
    """Times ``run`` over rotating inputs, ``sync`` bracketing every clock read.

    With ``cuda_events`` the elapsed time comes from CUDA events recorded on the current
    stream around the calls (what TorchBench does); use it only for work queued on that
    stream. Either way the device is synchronised before the round ends.
    """

    def __init__(self, run: Callable[[Any], Any], inputs: Sequence[Any],
                 sync: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.perf_counter, cuda_events: bool = False) -> None:
        if not inputs:
            raise ValueError("Timer needs at least one input")
        self._run = run
        self._inputs = list(inputs)
        self._sync = sync
        self._clock = clock
        self._events = _cuda_event_pair() if cuda_events else None
        self._next = 0
        self.calls_per_round = 1

    @property
    def clock_name(self) -> str:
        return "cuda_events" if self._events else "host_after_sync"

    def time_calls(self, n: int) -> float:
        """Seconds per call, averaged over ``n`` consecutive calls."""
        inputs, k, run = self._inputs, len(self._inputs), self._run
        i = self._next
        self._sync()
        if self._events:
            self._events[0].record()
        start = self._clock()
        for _ in range(n):
            out = run(inputs[i])
            i = (i + 1) % k
        if self._events:
            self._events[1].record()
        self._sync()
        elapsed = self._clock() - start
        if self._events:
            elapsed = self._events[0].elapsed_time(self._events[1]) / 1e3
        del out  # held until after the clock so the last output was fully produced
        self._next = i
        return elapsed / n

    def warm_up(self, seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        calls = 0
        while calls < 3 or time.perf_counter() < deadline:
            self.time_calls(1)
            calls += 1

    def calibrate(self, min_round_s: float) -> int:
        """Double the calls per round until one round is far above the clock's resolution."""
        target = max(min_round_s, 1000 * clock_resolution())
        n = 1
        while n < 1 << 20 and self.time_calls(n) * n < target:
            n *= 2
        self.calls_per_round = n
        return n

    def round(self) -> float:
        return self.time_calls(self.calls_per_round)


def _cuda_event_pair() -> tuple[Any, Any]:
    import torch

    return (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))


def _converged(samples: list[float], config: TimingConfig) -> bool:
    return len(samples) >= config.min_rounds and \
        summarize(samples).ci_half_width_fraction <= config.target_ci


Failure = Callable[[str, BackendError], None]  # (timer name, what went wrong)


def measure_interleaved(timers: Mapping[str, TimerLike], config: TimingConfig,
                        on_round: Callable[[int], None] | None = None,
                        on_failure: Failure | None = None) -> dict[str, Measurement]:
    """Measure all timers round-robin, in a seeded random order each round.

    The machine drifts between minutes; interleaving makes the drift hit every backend alike,
    and keeps round r of every backend paired for drift-cancelling ratios.

    A timer that raises ``BackendError`` (its backend crashed, hung or raised) is dropped and
    reported to ``on_failure``; the others go on. Without ``on_failure`` the error propagates.
    """
    live = dict(timers)

    def attempt(name: str, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except BackendError as exc:
            if on_failure is None:
                raise
            del live[name]
            on_failure(name, exc)
            return None

    for name, timer in list(live.items()):
        attempt(name, lambda t=timer: (t.warm_up(config.warmup_s), t.calibrate(config.min_round_s)))
    rng = np.random.default_rng(config.seed)
    names = list(live)
    samples: dict[str, list[float]] = {name: [] for name in names}
    budget = config.budget_s * len(names)
    start = time.perf_counter()
    reason = "max_rounds"
    for r in range(config.max_rounds):
        for idx in rng.permutation(len(names)):
            name = names[idx]
            if name in live:
                time.sleep(config.settle_s)
                seconds = attempt(name, live[name].round)
                if seconds is not None:
                    samples[name].append(seconds)
        if on_round is not None:
            on_round(r + 1)
        if not live:
            break
        if all(_converged(samples[n], config) for n in live):
            reason = "ci"
            break
        if time.perf_counter() - start >= budget and r + 1 >= 3:
            reason = "budget"
            break
    return {
        name: Measurement(
            samples_s=tuple(samples[name]), calls_per_round=timer.calls_per_round,
            stop_reason="ci" if _converged(samples[name], config) else reason,
            summary=summarize(samples[name]))
        for name, timer in live.items()
    }

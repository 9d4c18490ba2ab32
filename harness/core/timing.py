"""The timing engine: a Timer takes rounds of calls, a Measurement holds what it saw.

Kept apart from the runner, as torch.utils.benchmark keeps Timer, Measurement and Compare
apart. Every round rotates through preallocated inputs, and synchronises the session before
each clock read, so no asynchronous device work escapes the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from harness.core.errors import BackendError
from harness.core.load import LoadMeter, MeteredRound, RoundLoad
from harness.core.results import TimingSummary
from harness.core.stats import Summary, min_ci_samples, summarize

MAX_PROCESSES = 64  # worker processes per backend: more is a typo, not a plan


@dataclass(frozen=True)
class TimingConfig:
    # Per backend and shape, before calibration. Short: every worker has run each timed shape
    # in its agreement checks, so this only wakes its threads and caches after the others'.
    warmup_s: float = 0.1
    # A round lasts at least this long (and >= 1000 clock ticks): long enough to hold many
    # calls, so a round does not mostly time waking the threads after another backend's.
    min_round_s: float = 20e-3
    # With a load meter, a round's turns together last at least this long. /proc/stat counts
    # the machine's busy time in ticks, shown in 10 ms steps: over a shorter round its reading
    # of the load outside the run wobbles by tenths of a core, enough to set aside quiet rounds.
    min_metered_s: float = 0.1
    # A pause before each backend's turn in a round. After a parallel region OpenMP's threads
    # spin for a while in the process that ran it; the pause lets that spin end before the
    # next backend, in another worker, starts its clock.
    settle_s: float = 3e-3
    min_rounds: int = 15
    max_rounds: int = 2000
    target_ci: float = 0.02  # stop once the median's 95% CI is within +-2% of it ...
    budget_s: float = 2.0  # ... or once this much time per row is spent, over all processes
    n_inputs: int = 4  # preallocated batches rotated through
    seed: int = 0
    # Worker processes per backend whose rounds make up a row; the CI spans their spread.
    processes: int = 2
    # A round during which more CPU than this (cores) went to work outside the run is set
    # aside and taken again; a row that had to set aside more than ``max_set_aside`` of its
    # rounds is contended.
    max_foreign_cores: float = 0.4
    max_set_aside: float = 0.25
    # A run whose canary spread (``harness.core.load.canary_spread``) is above this was timed
    # on a host that kept changing the machine's speed, which no pairing cancels and which
    # spreads its speedups between runs wider than their CIs: it is unsteady.
    max_canary_spread: float = 1.06


def clock_resolution() -> float:
    return time.get_clock_info("perf_counter").resolution


@dataclass(frozen=True)
class TimerKey:
    """Which timer: a backend's, in one of its workload's roles."""

    backend: str
    role: str


@dataclass(frozen=True)
class ProcessRounds:
    """One worker process's rounds: how many it took, and how many of them work outside the
    run made contended."""

    taken: int
    contended: int

    def too_contended(self, max_set_aside: float) -> bool:
        """Fewer than three clean rounds (any unclean, where fewer than three were taken at
        all: a measurement made of a few long runs), or more than ``max_set_aside`` unclean."""
        clean = self.taken - self.contended
        return clean < min(3, self.taken) or self.contended > max_set_aside * self.taken


@dataclass(frozen=True)
class Measurement:
    samples_s: tuple[float, ...]  # seconds per call, one value per kept round
    calls_per_round: int
    # "ci" (precise enough), "budget" (time ran out), "max_rounds", or "processes" (each
    # process's own CI was precise enough, but the processes differ by more than the target)
    stop_reason: str
    summary: Summary
    # What the machine did in each kept round (None where it could not be read), in each
    # round that work outside the run made contended (kept or not), and in each round taken
    # but not kept: ``loads`` and ``dropped`` together are every round, once.
    loads: tuple[RoundLoad | None, ...] = ()
    set_aside: tuple[RoundLoad, ...] = ()
    dropped: tuple[RoundLoad, ...] = ()
    rounds_taken: int = 0
    processes: tuple[int, ...] = ()  # which worker process each kept sample came from
    # Each process's rounds, where several were pooled (empty: one process, these counts)
    by_process: tuple[ProcessRounds, ...] = ()

    @property
    def load_checked(self) -> bool:
        return bool(self.loads) and all(load is not None for load in self.loads)

    def canary_median(self) -> float | None:
        canaries = [load.canary_s for load in self.loads if load is not None]
        return float(np.median(canaries)) if canaries else None

    def process_rounds(self) -> tuple[ProcessRounds, ...]:
        return self.by_process or (ProcessRounds(self.rounds_taken, len(self.set_aside)),)

    def contended(self, max_set_aside: float) -> bool:
        """Too many of its rounds were taken while something else used the machine, in any
        one of its processes (the pooled counts could hide a process that had to keep its
        contended rounds)."""
        return any(p.too_contended(max_set_aside) for p in self.process_rounds())

    def to_summary(self) -> TimingSummary:
        """The row's timing fields, in milliseconds."""
        s, ms = self.summary, 1e3
        return TimingSummary(
            median_ms=s.median * ms, p90_ms=s.p90 * ms, p99_ms=s.p99 * ms, min_ms=s.min * ms,
            mean_ms=s.mean * ms, stdev_ms=s.stdev * ms, iqr_ms=s.iqr * ms,
            ci95_low_ms=s.ci95_low * ms, ci95_high_ms=s.ci95_high * ms, noisy=s.noisy,
            stop_reason=self.stop_reason, rounds=s.n, calls_per_round=self.calls_per_round,
            samples_ms=[x * ms for x in self.samples_s])


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


Failure = Callable[[Hashable, BackendError], None]  # (timer key, what went wrong)


def measure_interleaved(timers: Mapping[Hashable, TimerLike], config: TimingConfig,
                        on_round: Callable[[int], None] | None = None,
                        on_failure: Failure | None = None, meter: LoadMeter | None = None,
                        process: int = 0) -> dict[Hashable, Measurement]:
    """Measure all timers round-robin, in a seeded random order each round.

    The machine drifts between minutes; interleaving makes the drift hit every backend alike,
    and keeps round r of every backend paired for drift-cancelling ratios.

    With a ``meter``, every round is accounted for: a round during which work outside the
    run took more than ``config.max_foreign_cores`` is set aside, all its backends' samples
    with it (so the pairs stay whole), and taken again; set-aside time does not count
    against the budget, up to once more the budget. Should fewer than three rounds be clean,
    every round is kept and the measurement says it was contended. The budget ends no
    measurement before it has the rounds a 95% CI needs (``min_ci_samples``).

    A timer that raises ``BackendError`` (its backend crashed, hung or raised) is dropped and
    reported to ``on_failure``; the others go on. Without ``on_failure`` the error propagates.
    """
    live = dict(timers)

    def attempt(name: Hashable, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except BackendError as exc:
            if on_failure is None:
                raise
            del live[name]
            on_failure(name, exc)
            return None

    round_s = config.min_round_s if meter is None else \
        max(config.min_round_s, config.min_metered_s / max(len(live), 1))
    for name, timer in list(live.items()):
        attempt(name, lambda t=timer: (t.warm_up(config.warmup_s), t.calibrate(round_s)))
    rng = np.random.default_rng(config.seed + process)
    names = list(live)
    rounds: list[tuple[dict[Hashable, float], RoundLoad | None]] = []
    budget = config.budget_s * len(names)
    start = time.perf_counter()
    aside_s = 0.0
    reason = "max_rounds"
    fewest = min_ci_samples()

    def clean(load: RoundLoad | None) -> bool:
        return load is None or load.foreign_cores <= config.max_foreign_cores

    def kept(name: Hashable) -> list[float]:
        return [taken[name] for taken, load in rounds if clean(load) and name in taken]

    for r in range(config.max_rounds):
        account = MeteredRound(meter, config.settle_s) if meter is not None else None
        taken: dict[Hashable, float] = {}
        for idx in rng.permutation(len(names)):
            name = names[idx]
            if name in live:
                time.sleep(config.settle_s)
                seconds = attempt(name, live[name].round)
                if seconds is not None:
                    taken[name] = seconds
        load = account.end() if account is not None else None
        rounds.append((taken, load))
        if not clean(load):
            aside_s += load.wall_s
        if on_round is not None:
            on_round(r + 1)
        if not live:
            break
        clean_rounds = sum(clean(load) for _, load in rounds)
        if clean_rounds and all(_converged(kept(n), config) for n in live):
            reason = "ci"
            break
        spent = time.perf_counter() - start
        if clean_rounds >= fewest and spent - min(aside_s, budget) >= budget:
            reason = "budget"
            break
        if spent >= 2 * budget and r + 1 >= fewest:  # retakes used up: the row is contended
            reason = "budget"
            break
    enough = sum(clean(load) for _, load in rounds) >= 3
    used = [(taken, load) for taken, load in rounds if clean(load) or not enough]
    result = {}
    for name, timer in live.items():
        values = [taken[name] for taken, _ in used]
        result[name] = Measurement(
            samples_s=tuple(values), calls_per_round=timer.calls_per_round,
            stop_reason="ci" if _converged(values, config) else reason,
            summary=summarize(values), loads=tuple(load for _, load in used),
            set_aside=tuple(load for _, load in rounds if not clean(load)),
            dropped=tuple(load for _, load in rounds if not clean(load) and enough),
            rounds_taken=len(rounds), processes=(process,) * len(values))
    return result


def combine(parts: Sequence[Measurement], target_ci: float) -> Measurement:
    """One measurement from those of several worker processes, each sample labelled with
    its process, so its CI spans what differs between processes as well as between rounds.
    It stopped on "ci" only if that CI, not just each process's own, is within ``target_ci``."""
    if len(parts) == 1:
        return parts[0]
    samples = tuple(x for m in parts for x in m.samples_s)
    processes = tuple(p for m in parts for p in m.processes)
    summary = summarize(samples, processes)
    stops = [m.stop_reason for m in parts]
    if any(s != "ci" for s in stops):
        reason = next(s for s in stops if s != "ci")
    else:
        reason = "ci" if summary.ci_half_width_fraction <= target_ci else "processes"
    return Measurement(
        samples_s=samples, calls_per_round=parts[0].calls_per_round, stop_reason=reason,
        summary=summary, loads=tuple(x for m in parts for x in m.loads),
        set_aside=tuple(x for m in parts for x in m.set_aside),
        dropped=tuple(x for m in parts for x in m.dropped),
        rounds_taken=sum(m.rounds_taken for m in parts), processes=processes,
        by_process=tuple(p for m in parts for p in m.process_rounds()))

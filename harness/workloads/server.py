"""Server: queries arrive at random (Poisson, LoadGen's Server scenario); the figure is the
highest offered rate at which LoadGen's 99th-percentile latency stays under the bound and
the test is VALID.

In each worker process the rate is searched for (``harness.workloads.rate_search``), LoadGen
judging every test: from half the warmed-up backend's capacity (``first_rate``), doubling or
halving until one test passes and one fails, then bisecting to within ``PRECISION``. A later process
starts from the earlier one's answer, with a finer bracket. With ``full``, the search's
tests stay short and the answer is then confirmed by a test of MLPerf's own length, a step
lower each time it is not VALID. The row reports the process with the lowest rate: a rate
every process held.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from harness.core.results import RowFigure
from harness.workloads.base import (
    DAY_S,
    Alone,
    AloneContext,
    Probe,
    Shape,
    at_most,
    non_negative_number,
    positive_number,
    setting,
)
from harness.workloads.columns import Column, fmt
from harness.workloads.loadgen_sut import Capacity, TestResult
from harness.workloads.rate_search import Search, find_peak
from harness.workloads.serving import P50, P90, P99, LoadGenFields, Serving

PRECISION = 0.05  # the search stops once a pass and a fail are within 5% of each other
MAX_TRIALS = 12  # tests per search, at most
REFINE_FACTOR = 1.25  # a later process's bracket around the earlier one's answer
MIN_RATE = 50.0  # queries/s: a slower backend is not searched further (tests grow long)
CONFIRM_TRIES = 3  # full-length tests, each a step lower, before a full search gives up
# LoadGen and the batcher cost tens of microseconds of Python a query, which the warm-up's
# timing does not see; a first test far above what they sustain takes long to drain its
# backlog, so the search starts no higher than this and doubles up from there.
FIRST_RATE_CAP = 2000.0


@dataclass(frozen=True)
class _Process:
    """What one worker process found: the rate it held, and the test reported for it."""

    rate: float | None  # None: no rate held the bound
    reported: TestResult
    tests: tuple[tuple[float, bool, TestResult], ...]  # (rate, full length, result) in order
    converged: bool


@dataclass(frozen=True)
class SearchTrial:
    """One test of a process's rate search."""

    process: int
    offered_qps: float
    full: bool  # a full-length test
    valid: bool  # LoadGen's verdict
    scheduled_qps: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class ServerFields:
    """What a server row adds: the rate found under the bound, and the search that found it."""

    latency_bound_ms: float
    max_qps: float | None  # the worst process's rate; None: no rate held the bound
    max_qps_by_process: list[float | None]
    search: list[SearchTrial]


@dataclass(frozen=True)
class Server(Serving):
    name: ClassVar[str] = "server"
    row_records: ClassVar[tuple[type, ...]] = (LoadGenFields, ServerFields)
    summary: ClassVar[str] = ("LoadGen Server: Poisson arrivals; the highest rate whose p99 "
                              "latency stays under the bound")
    error_mode: ClassVar[str] = "server"
    scenario: ClassVar[str] = "Server"
    rank_by: ClassVar[RowFigure | None] = RowFigure("max_qps", higher_is_better=True)
    # Its answer times are taken at each run's own rate: runs compare by the rate.
    compare_by: ClassVar[RowFigure | None] = RowFigure("max_qps", higher_is_better=True)
    latency_bound_ms: float = setting(5.0, at_most(positive_number, DAY_S * 1e3),
                                      f"a number of milliseconds > 0, at most {DAY_S * 1000} (a day)")
    max_wait_ms: float = setting(0.5, at_most(non_negative_number, DAY_S * 1e3),
                                 f"a number of milliseconds >= 0, at most {DAY_S * 1000} (a day)")

    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1e3

    def intra_op_threads(self, cores: int) -> int:
        """One core fewer than the machine has (at least one). Queries arrive while the
        backend computes: LoadGen's threads, which issue and complete every query, and the
        batcher run in the backend's process beside its pool, as part of the system under
        test. With every core in the pool, a pool thread spinning after a call holds the
        core the next query waits for."""
        return max(1, cores - 1)

    def first_rate(self, capacity: Capacity) -> float:
        """Half of what the backend could answer in full batches, or one at a time where a
        full batch alone takes more than half the bound; at most ``FIRST_RATE_CAP``."""
        if capacity.max_batch_s <= self.latency_bound_ms / 2e3:
            rate = 0.5 * capacity.max_batch / capacity.max_batch_s
        else:
            rate = 0.5 / capacity.batch1_s
        return min(rate, FIRST_RATE_CAP)

    def measure(self, ctx: AloneContext, probes: Sequence[Probe], shape: Shape) -> Alone:
        found: list[_Process] = []
        for process, probe in enumerate(probes):
            earlier = next((f.rate for f in reversed(found) if f.rate is not None), None)
            found.append(self._search(ctx, probe, shape, process, earlier))
        worst = min(range(len(found)), key=lambda p: -1.0 if found[p].rate is None else found[p].rate)
        every = [result for f in found for _, _, result in f.tests]
        search = [SearchTrial(p, rate, full, result.valid, result.scheduled_qps,
                              result.percentile_ms("99.00"))
                  for p, f in enumerate(found) for rate, full, result in f.tests]
        converged = all(f.converged for f in found)
        return self.alone(ctx, shape, [f.reported for f in found], worst, every,
                          "converged" if converged else "max_trials",
                          ServerFields(self.latency_bound_ms, found[worst].rate,
                                       [f.rate for f in found], search))

    def _search(self, ctx: AloneContext, probe: Probe, shape: Shape, process: int,
                earlier: float | None) -> _Process:
        capacity = self.warm_up(ctx, probe, shape)
        tests: list[tuple[float, bool, TestResult]] = []
        number = itertools.count(1)

        def judge(rate: float, full: bool = False) -> tuple[bool, TestResult]:
            label = f"{next(number):02d}-{rate:.0f}qps{'-full' if full else ''}"
            test = self.new_test(ctx, shape, self.log_dir(ctx, shape, process, label), full=full,
                                 target_qps=rate, latency_bound_s=self.latency_bound_ms / 1e3)
            result = self.run_test(probe, test)
            tests.append((rate, full, result))
            return result.valid, result

        search: Search[TestResult] = find_peak(
            judge, earlier or self.first_rate(capacity),
            factor=2.0 if earlier is None else REFINE_FACTOR, precision=PRECISION,
            max_trials=MAX_TRIALS, min_rate=MIN_RATE)
        best = search.best
        if best is None:
            lowest = min(search.trials, key=lambda t: t.rate)
            return _Process(None, lowest.result, tuple(tests), search.converged)
        if not self.full:
            return _Process(best.rate, best.result, tuple(tests), search.converged)
        rate = best.rate
        for _ in range(CONFIRM_TRIES):
            valid, result = judge(rate, full=True)
            if valid:
                return _Process(rate, result, tuple(tests), search.converged)
            rate /= 1 + PRECISION
        return _Process(None, result, tuple(tests), search.converged)

    def figure_columns(self) -> tuple[Column, ...]:
        return (Column("bound ms", "right", lambda r: fmt(r.get("latency_bound_ms"), "g")),
                Column("max q/s", "right", lambda r: fmt(r.get("max_qps"), ",.0f")),
                P50, P90, P99)



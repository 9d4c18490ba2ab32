"""Serving: MLPerf LoadGen's scenarios against a dynamic batcher in front of each backend.

What the four serving workloads (``server``, ``single-stream``, ``multi-stream``,
``offline``) share. Each measures every backend on its own (an ``AloneWorkload``): in each
of the backend's worker processes it warms the backend up at every batch size the batcher
can form, then runs LoadGen tests there (``harness.workloads.loadgen_sut``), one or a
search's worth. The row reports the test of the process that fared worst, so its figure is
one that every process held.

* **Queries** are sine windows at the row's seq_len (a library of ``LIBRARY_SIZE``, the
  same for every backend); a row's batch size is the most queries the batcher runs in one
  call.
* **Answers are checked**: every answer of every test against the float64 reference's,
  within the run's tolerance, so a backend that is fast but wrong under load fails its row.
* **Length**: by default each test is short (``duration_s``, at least ``SHORT_MIN_QUERIES``
  queries); ``full`` uses MLPerf's own minimums (LoadGen's built-in mlperf.conf: 600 s).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.core.model import validate_input
from harness.core.results import Check
from harness.core.shapes import NON_NEGATIVE
from harness.workloads.base import (
    DAY_S,
    Alone,
    AloneContext,
    AloneWorkload,
    CheckContext,
    Checked,
    HandleLike,
    Probe,
    Sessions,
    Shape,
    at_most,
    is_bool,
    one_window_check,
    positive_number,
    setting,
)
from harness.workloads.batching import Batching
from harness.workloads.columns import HEAD, NOTES, Column, agreement_tone, fmt
from harness.workloads.forward import FORWARD
from harness.workloads.loadgen_sut import (
    Capacity,
    LoadGenTest,
    TestResult,
    WarmUp,
    loadgen_missing,
    loadgen_version,
)

LIBRARY_SIZE = 1024  # sine windows in LoadGen's query sample library
# A short test's least number of queries: LoadGen's early stopping passes a p99 only after
# 459 queries with none over the bound, and allows a few over it only after about 1000.
SHORT_MIN_QUERIES = 1024


def _answers(row: dict) -> str:
    """✓/✗, the largest error, and how many answers were checked (and wrong)."""
    if row.get("agrees") is None:
        return "—"
    err = row.get("max_abs_err")
    wrong, checked = row.get("responses_wrong"), row.get("responses_checked")
    mark = "✓" if row["agrees"] else "✗"
    tail = "" if checked is None else f" ({checked:,}" + (f", {wrong:,} wrong)" if wrong else ")")
    return f"{mark} {'nan' if err is None else f'{err:.1e}'}{tail}"


def _verdict(row: dict) -> str:
    valid = row.get("loadgen_valid")
    return "—" if valid is None else "VALID" if valid else "INVALID"


def _verdict_tone(row: dict) -> str | None:
    valid = row.get("loadgen_valid")
    return None if valid is None else "ok" if valid else "bad"


def _batches(row: dict) -> str:
    formed = row.get("batches_formed")
    if not formed:
        return "—"
    sizes = [size for size, _ in formed]
    return f"{fmt(row.get('mean_batch'), '.1f')} ({min(sizes)}–{max(sizes)})"


MAX_BATCH = Column("max batch", "right", lambda r: str(r["batch_size"]))
P50 = Column("p50 ms", "right", lambda r: fmt(r.get("loadgen_p50_ms"), ".3f"))
P90 = Column("p90 ms", "right", lambda r: fmt(r.get("loadgen_p90_ms"), ".3f"))
P99 = Column("p99 ms", "right", lambda r: fmt(r.get("loadgen_p99_ms"), ".3f"))
VERDICT = Column("LoadGen", "left", _verdict, tone=_verdict_tone)
BATCHES = Column("mean batch (range)", "right", _batches)
ANSWERS = Column("answers agree (max err, n)", "left", _answers, tone=agreement_tone)


@dataclass(frozen=True)
class LoadGenFields:
    """What every serving row adds: its reported LoadGen test, and the answers checked."""

    loadgen_scenario: str
    # how long the batcher held a query for others to join it
    max_wait_ms: float = field(metadata=NON_NEGATIVE)
    full: bool  # MLPerf's own minimum duration and query count
    min_duration_s: float | None  # LoadGen's effective minimums
    min_query_count: int | None
    loadgen_valid: bool
    loadgen_invalid_reason: str | None
    loadgen_p50_ms: float | None = field(metadata=NON_NEGATIVE)
    loadgen_p90_ms: float | None = field(metadata=NON_NEGATIVE)
    loadgen_p99_ms: float | None = field(metadata=NON_NEGATIVE)
    loadgen_p999_ms: float | None = field(metadata=NON_NEGATIVE)
    loadgen_mean_ms: float | None = field(metadata=NON_NEGATIVE)
    completed_qps: float | None = field(metadata=NON_NEGATIVE)
    batches_formed: list[tuple[int, int]]  # [batch size, batches formed of that size]
    mean_batch: float | None
    responses_checked: int  # over every test of the row
    responses_wrong: int
    loadgen_logs: str | None  # where the reported test's logs were kept
    loadgen_version: str | None
    loadgen_result: dict  # every result_* record of the reported test's detail log


@dataclass(frozen=True)
class OneTestFields:
    """What a row of one test per process adds: each process's figure."""

    figure_by_process: list[float | None]  # None: that process's test had no figure


@dataclass(frozen=True)
class Serving(AloneWorkload):
    """A LoadGen scenario; subclasses say which, and what a test of it is at a shape."""

    scenario: ClassVar[str]  # LoadGen's name for it
    check_label: ClassVar[str | None] = "answers under load"
    keeps_files: ClassVar[bool] = True
    # Every test's minimum length: MLPerf's own (600 s), or ``duration_s``.
    full: bool = setting(False, is_bool, "true or false")
    duration_s: float = setting(1.0, at_most(positive_number, DAY_S),
                                f"a number of seconds > 0, at most {DAY_S} (a day)")

    # -- where the backend runs ----------------------------------------------------------
    def outputs(self, sessions: Sessions, payload: WarmUp | LoadGenTest) -> Capacity | TestResult:
        validate_input(payload.windows, sessions.input_size)
        return payload.run(sessions.window)

    # -- the parent's side -------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        return loadgen_missing()

    def check_shapes(self, timed: list[Shape]) -> list[Shape]:
        """The one-window check at every largest batch and at batch 1, the sizes the
        batcher forms most (every answer under load is checked besides)."""
        return sorted({*timed, *((1, seq_len) for _, seq_len in timed)}, key=lambda s: (s[1], s[0]))

    def check(self, ctx: CheckContext, handle: HandleLike, backend: str, dtype: str) -> Checked:
        return Checked(one_window_check(ctx, handle, FORWARD, backend, dtype))

    def max_wait_s(self) -> float:
        """How long the batcher lets the oldest query wait for company (Server waits)."""
        return 0.0

    def library(self, ctx: CheckContext, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        """The query sample library at ``seq_len`` and the float64 reference's answers."""
        shape = (LIBRARY_SIZE, seq_len)
        windows = ctx.inputs("serving", "sine", shape)
        expected = ctx.memo(("serving", shape), lambda: ctx.reference.forward(windows))
        return windows, expected

    def new_test(self, ctx: AloneContext, shape: Shape, log_dir: Path | None, *, full: bool | None = None,
                 **targets: Any) -> LoadGenTest:
        windows, expected = self.library(ctx.check, shape[1])
        return LoadGenTest(
            scenario=self.scenario, windows=windows, expected=expected,
            tolerance=ctx.check.tolerance, batching=Batching(shape[0], self.max_wait_s()),
            full=self.full if full is None else full, min_duration_s=self.duration_s,
            min_query_count=SHORT_MIN_QUERIES, log_dir=None if log_dir is None else str(log_dir),
            **targets)

    def warm_up(self, ctx: AloneContext, probe: Probe, shape: Shape) -> Capacity:
        windows, _ = self.library(ctx.check, shape[1])
        return probe.run(WarmUp(windows, shape[0]))

    def log_dir(self, ctx: AloneContext, shape: Shape, process: int, label: str) -> Path | None:
        """Where one test's LoadGen logs go: a folder per row, process and test."""
        if ctx.files_dir is None:
            return None
        row = f"{self.name}-{ctx.backend}-{ctx.device}-{ctx.dtype}-b{shape[0]}-s{shape[1]}"
        return ctx.files_dir / "loadgen" / row / f"p{process}" / label

    def run_test(self, probe: Probe, test: LoadGenTest) -> TestResult:
        return probe.run(test, test.timeout_s())

    def check_of(self, ctx: AloneContext, shape: Shape, result: TestResult) -> Check:
        answers = result.answers
        return Check(ctx.backend, *shape, "sine", answers.max_abs_err, answers.max_rel_err,
                     answers.agrees, mode=self.name, dtype=ctx.dtype)

    def alone(self, ctx: AloneContext, shape: Shape, reported: list[TestResult],
              worst: int, every: list[TestResult], stop_reason: str, own: Any) -> Alone:
        """The row: each process's reported test's answer times as samples, the worst
        process's test as the figures, every test's answers as checks, and the scenario's
        ``own`` fields (one of its ``row_records``)."""
        headline = reported[worst]
        samples = tuple(s for result in reported for s in result.answer_s)
        processes = tuple(p for p, result in enumerate(reported) for _ in result.answer_s)
        sizes = headline.batch_sizes
        formed = sum(sizes.values())
        percentile = {p: headline.percentile_ms(p) for p in ("50.00", "90.00", "99.00", "99.90")}
        return Alone(samples, processes, stop_reason=stop_reason,
                     checks=tuple(self.check_of(ctx, shape, r) for r in every),
                     fields={**asdict(LoadGenFields(
                         self.scenario, self.max_wait_s() * 1e3, self.full, headline.min_duration_s,
                         headline.min_query_count, headline.valid, headline.invalid_reason,
                         percentile["50.00"], percentile["90.00"], percentile["99.00"],
                         percentile["99.90"], headline.mean_ms, headline.completed_qps,
                         [[size, count] for size, count in sizes.items()],
                         sum(s * c for s, c in sizes.items()) / formed if formed else None,
                         sum(r.answers.checked for r in every), sum(r.answers.wrong for r in every),
                         headline.log_dir, loadgen_version(), headline.loadgen)),
                         **asdict(own)})

    def columns(self, focus: str) -> tuple[Column, ...]:
        return (*HEAD[:3], MAX_BATCH, HEAD[4], *self.figure_columns(), VERDICT, BATCHES, ANSWERS,
                NOTES)

    def figure_columns(self) -> tuple[Column, ...]:
        """The scenario's own figures, between the row's identity and LoadGen's verdict."""
        return (P50, P90, P99)


@dataclass(frozen=True)
class OneTest(Serving):
    """A scenario measured by one LoadGen test per worker process; the row reports the
    process whose figure (``figure``) was the worst."""

    higher_is_better: ClassVar[bool] = False
    row_records: ClassVar[tuple[type, ...]] = (LoadGenFields, OneTestFields)

    @abstractmethod
    def targets(self, capacity: Capacity, shape: Shape) -> dict[str, Any]:
        """The test's targets (LoadGen's expected latency or rate), from the warm-up."""

    @abstractmethod
    def figure(self, result: TestResult) -> float | None:
        """The scenario's figure of one test (a latency, or a rate)."""

    def measure(self, ctx: AloneContext, probes: Sequence[Probe], shape: Shape) -> Alone:
        results = []
        for process, probe in enumerate(probes):
            capacity = self.warm_up(ctx, probe, shape)
            test = self.new_test(ctx, shape, self.log_dir(ctx, shape, process, self.name),
                                 **self.targets(capacity, shape))
            results.append(self.run_test(probe, test))
        figures = [self.figure(r) for r in results]

        def badness(p: int) -> float:
            value = figures[p]
            if value is None:
                return math.inf
            return -value if self.higher_is_better else value

        worst = max(range(len(results)), key=badness)
        return self.alone(ctx, shape, results, worst, results, "loadgen", self.own_fields(figures))

    def own_fields(self, figures: list[float | None]) -> OneTestFields:
        """The row's own fields, from each process's figure (and a scenario's settings)."""
        return OneTestFields(figures)

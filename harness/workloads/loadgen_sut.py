"""One MLPerf LoadGen test against a backend, run where the backend lives.

LoadGen (``mlperf_loadgen``, from the ``mlcommons-loadgen`` package) generates the queries
of a scenario, times each from its scheduled issue to its completion, and judges the test
VALID or INVALID by MLPerf's rules. The system under test here is a dynamic batcher
(``harness.workloads.batching``) in front of one backend session:

* LoadGen's own thread runs the test and hands queries to the batcher;
* this process's main thread, the one that prepared and checked the session (a CUDA graph
  or another thread-bound runtime is called from the thread that made it), takes batches
  from the batcher, runs each through the session, reads the answers back to the host, and
  completes the queries; every answer is kept and, once the test is over, checked against
  the float64 reference's (so checking costs no query any time).

A backend that raises stops being called: the test's remaining queries are completed
unanswered, so that LoadGen can finish, and the error is raised when it has.

The results come from LoadGen's detail log, whose lines are JSON records (``:::MLLOG {...}``),
and from the batcher's own clock: the time each answer took from reaching the system under
test to its completion, which leaves out LoadGen's own issue delay.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import Session
from harness.core.agreement import Tolerance, compare, within
from harness.core.errors import BackendError
from harness.workloads.batching import Batching, BatchQueue

INSTALL_LINE = "pip install -e '.[serving]' (or: pip install mlcommons-loadgen)"
# LoadGen's built-in mlperf.conf keys its rules by model name; this model is none of
# MLPerf's, so the rules that apply are its entries for any model ("*").
MODEL_NAME = "lstm-harness"
DETAIL_LOG = "mlperf_log_detail.txt"
# LoadGen's latency percentiles, as its detail log names them.
PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")
# The answer times a test keeps: a test of MLPerf's length answers about a million queries,
# so past this many they are kept evenly spaced through the test.
MAX_ANSWER_TIMES = 20_000


def loadgen_missing() -> str | None:
    """None if LoadGen can be imported here, else a one-line reason with the install line."""
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError:
        return f"MLPerf LoadGen (module mlperf_loadgen) is not installed: {INSTALL_LINE}"
    return None


def loadgen_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlcommons-loadgen")
    except PackageNotFoundError:
        return None


def answer(session: Session, windows: np.ndarray) -> np.ndarray:
    """The session's answers to ``windows``, read back to the host as float64."""
    y = session.run(session.to_native(windows))
    session.synchronize()
    return session.to_numpy(y)


@dataclass(frozen=True)
class Capacity:
    """What a warmed-up backend takes per call at batch 1 and at the largest batch."""

    batch1_s: float
    max_batch_s: float
    max_batch: int

    def queries_per_s(self) -> float:
        """The most queries per second it could answer, ignoring every latency bound."""
        return max(1.0 / self.batch1_s, self.max_batch / self.max_batch_s)


@dataclass(frozen=True)
class WarmUp:
    """Call the backend once at every batch size the batcher can form (a runtime may build
    kernels on the first call at a shape, which no test should time), then time batch 1 and
    the largest batch."""

    windows: np.ndarray
    max_batch: int
    repeats: int = 5

    def run(self, session: Session) -> Capacity:
        n = len(self.windows)
        for size in range(1, self.max_batch + 1):
            answer(session, self.windows[np.arange(size) % n])

        def median_s(size: int) -> float:
            batch = self.windows[np.arange(size) % n]
            times = []
            for _ in range(self.repeats):
                start = time.perf_counter()
                answer(session, batch)
                times.append(time.perf_counter() - start)
            return float(np.median(times))

        return Capacity(median_s(1), median_s(self.max_batch), self.max_batch)


@dataclass(frozen=True)
class Answers:
    """Every answer of a test against the float64 reference."""

    checked: int
    wrong: int
    max_abs_err: float
    max_rel_err: float

    @property
    def agrees(self) -> bool:
        return self.checked > 0 and self.wrong == 0


def check_answers(indices: list[np.ndarray], answers: list[np.ndarray], expected: np.ndarray,
                  tolerance: Tolerance) -> Answers:
    """Every answer (batch by batch, with the library indices it answered) against the
    float64 reference's answer to the same window."""
    if not answers:
        return Answers(0, 0, 0.0, 0.0)
    index = np.concatenate(indices)
    if any(a.shape[1:] != expected.shape[1:] for a in answers):
        return Answers(len(index), len(index), float("inf"), float("inf"))
    actual, wanted = np.concatenate(answers), expected[index]
    result = compare(actual, wanted, tolerance)
    ok = within(actual, wanted, tolerance).reshape(len(index), -1).all(axis=1)
    return Answers(len(index), int((~ok).sum()), result.max_abs_err, result.max_rel_err)


@dataclass(frozen=True)
class TestResult:
    """What one LoadGen test found."""

    scenario: str
    valid: bool  # LoadGen's verdict: VALID
    invalid_reason: str | None
    scheduled_qps: float | None  # the rate LoadGen offered (Server)
    completed_qps: float | None  # samples completed per second
    latency_ms: dict[str, float]  # LoadGen's percentile ("50.00", ..., "99.90") -> ms
    mean_ms: float | None
    max_ms: float | None
    queries: int | None
    min_duration_s: float | None  # LoadGen's effective minimums
    min_query_count: int | None
    # per answer (evenly spaced, at most MAX_ANSWER_TIMES): reaching the system under test
    # to its completion
    answer_s: tuple[float, ...]
    batch_sizes: dict[int, int]  # batch size -> batches formed of that size
    answers: Answers
    log_dir: str | None  # where LoadGen's logs were kept; None: nowhere
    loadgen: dict = field(default_factory=dict)  # every result_* record of the detail log

    def percentile_ms(self, percentile: str) -> float | None:
        return self.latency_ms.get(percentile)


@dataclass(frozen=True)
class LoadGenTest:
    """One LoadGen test as the parent asks the backend's worker to run it."""

    scenario: str  # LoadGen's: "SingleStream", "MultiStream", "Server" or "Offline"
    windows: np.ndarray  # the query sample library: sine windows (N, seq_len, 1), float32
    expected: np.ndarray  # the float64 reference's answer to each window, (N, output)
    tolerance: Tolerance
    batching: Batching
    full: bool  # MLPerf's own minimum duration and query count, else those below
    min_duration_s: float
    min_query_count: int
    target_qps: float | None = None  # Server: the rate offered; Offline: the rate expected
    latency_bound_s: float | None = None  # Server: the bound on LoadGen's percentile latency
    expected_latency_s: float | None = None  # SingleStream, MultiStream: sizes the test
    samples_per_query: int | None = None  # MultiStream
    log_dir: str | None = None  # where LoadGen writes its logs; None: a temporary folder

    def timeout_s(self) -> float:
        """A generous limit on the whole test: its minimum length twice over, and a minute."""
        duration = 600.0 if self.full else self.min_duration_s
        rate = self.target_qps or (1.0 / self.expected_latency_s if self.expected_latency_s else 0.0)
        by_count = self.min_query_count / rate if rate else 0.0
        return 2.0 * max(duration, by_count) + 60.0

    def settings(self, lg: Any) -> Any:
        settings = lg.TestSettings()
        # MLPerf's own rules first (seeds, percentiles, minimums), then this test's targets.
        if settings.FromConfig("", MODEL_NAME, self.scenario, 0) != 0:
            raise BackendError("LoadGen could not read its built-in mlperf.conf")
        settings.scenario = getattr(lg.TestScenario, self.scenario)
        settings.mode = lg.TestMode.PerformanceOnly
        settings.performance_sample_count_override = len(self.windows)
        if not self.full:
            settings.min_duration_ms = max(1, round(self.min_duration_s * 1e3))
            settings.min_query_count = self.min_query_count
        if self.target_qps is not None:
            settings.server_target_qps = self.target_qps
            settings.offline_expected_qps = self.target_qps
        if self.latency_bound_s is not None:
            settings.server_target_latency_ns = round(self.latency_bound_s * 1e9)
        if self.expected_latency_s is not None:
            settings.single_stream_expected_latency_ns = round(self.expected_latency_s * 1e9)
            settings.multi_stream_expected_latency_ns = round(self.expected_latency_s * 1e9)
        if self.samples_per_query is not None:
            settings.multi_stream_samples_per_query = self.samples_per_query
        return settings

    def run(self, session: Session) -> TestResult:
        if self.log_dir is not None:
            Path(self.log_dir).mkdir(parents=True, exist_ok=True)
            return self._run(session, Path(self.log_dir))
        with tempfile.TemporaryDirectory(prefix="lstm-harness-loadgen-") as tmp:
            return self._run(session, Path(tmp))

    def _run(self, session: Session, log_dir: Path) -> TestResult:
        import mlperf_loadgen as lg

        windows = self.windows
        queue = BatchQueue(self.batching)
        answered: list[np.ndarray] = []  # the library indices of each batch answered ...
        answers: list[np.ndarray] = []  # ... and its answers, checked once the test is over
        answer_s: list[float] = []
        failure: list[BaseException] = []
        output = lg.LogOutputSettings()
        output.outdir = str(log_dir)
        output.copy_summary_to_stdout = False
        log_settings = lg.LogSettings()
        log_settings.log_output = output
        log_settings.enable_trace = False
        sut = lg.ConstructSUT(lambda samples: queue.put((s.id, s.index) for s in samples),
                              lambda: None)
        n = len(windows)
        qsl = lg.ConstructQSL(n, n, lambda indices: None, lambda indices: None)

        def drive() -> None:
            try:
                # An audit.config in the working directory would change the test: LoadGen is
                # pointed at one in the log folder, which never exists.
                lg.StartTestWithLogSettings(sut, qsl, self.settings(lg), log_settings,
                                            str(log_dir / "audit.config"))
            except BaseException as exc:  # noqa: BLE001 - raised below, in this thread
                failure.append(exc)
            finally:
                queue.close()

        driver = threading.Thread(target=drive, name="loadgen", daemon=True)
        driver.start()
        try:
            while (batch := queue.next_batch()) is not None:
                indices = np.fromiter((q.index for q in batch), dtype=np.intp, count=len(batch))
                if not failure:
                    try:
                        answers.append(answer(session, windows[indices]))
                        answered.append(indices)
                    except Exception as exc:  # noqa: BLE001 - LoadGen must finish first
                        failure.append(exc)
                done = time.perf_counter()
                lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in batch])
                answer_s.extend(done - q.arrived_s for q in batch)
        finally:
            driver.join()
            lg.DestroySUT(sut)
            lg.DestroyQSL(qsl)
        if failure:
            raise failure[0]
        stride = max(1, -(-len(answer_s) // MAX_ANSWER_TIMES))  # ceil: 1 up to the cap
        return self._result(read_detail_log(log_dir / DETAIL_LOG), tuple(answer_s[::stride]),
                            dict(sorted(queue.sizes.items())),
                            check_answers(answered, answers, self.expected, self.tolerance),
                            str(log_dir) if self.log_dir is not None else None)

    def _result(self, log: dict[str, Any], answer_s: tuple[float, ...], sizes: dict[int, int],
                answers: Answers, log_dir: str | None) -> TestResult:
        def ms(key: str) -> float | None:
            value = log.get(key)
            return None if value is None else value / 1e6

        # Multi-stream reports per-query latencies under their own keys.
        per_query = "per_query_" if self.scenario == "MultiStream" else ""
        latency = {p: value for p in PERCENTILES
                   if (value := ms(f"result_{p}_percentile_{per_query}latency_ns")) is not None}
        # Samples per second (Server, Offline), or queries per second (SingleStream).
        completed = next((log[key] for key in ("result_completed_samples_per_sec",
                                               "result_samples_per_second",
                                               "result_qps_with_loadgen_overhead") if key in log), None)
        min_duration = log.get("effective_min_duration_ms")
        return TestResult(
            scenario=self.scenario, valid=log.get("result_validity") == "VALID",
            invalid_reason=invalid_reason(log),
            scheduled_qps=log.get("result_scheduled_samples_per_sec"), completed_qps=completed,
            latency_ms=latency, mean_ms=ms(f"result_mean_{per_query}latency_ns"),
            max_ms=ms(f"result_max_{per_query}latency_ns"), queries=log.get("result_query_count"),
            min_duration_s=None if min_duration is None else min_duration / 1e3,
            min_query_count=log.get("effective_min_query_count"), answer_s=answer_s,
            batch_sizes=sizes, answers=answers, log_dir=log_dir,
            loadgen={k: v for k, v in log.items() if k.startswith("result_")})


# LoadGen's conditions for VALID, as its detail log records them, in words.
CONDITIONS = {"result_perf_constraints_met": "the latency bound was missed",
              "result_min_duration_met": "the test ran shorter than its minimum duration",
              "result_min_queries_met": "the test issued fewer than its minimum queries",
              "early_stopping_met": "early stopping was not met (too few queries under the bound "
                                    "to trust the percentile)"}


def invalid_reason(log: dict[str, Any]) -> str | None:
    """Why LoadGen judged a test INVALID: its own advice, and each condition that failed."""
    if log.get("result_validity") == "VALID":
        return None
    reasons = [text for key, text in CONDITIONS.items() if log.get(key) is False]
    advice = (log.get("result_invalid_reason") or "").strip()
    return "; ".join([*reasons, *([f"LoadGen: {advice}"] if advice else [])]) or None


def read_detail_log(path: Path) -> dict[str, Any]:
    """Key -> value of every record in LoadGen's detail log (the last, where one repeats)."""
    records: dict[str, Any] = {}
    prefix = ":::MLLOG "
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(prefix):
            record = json.loads(line[len(prefix):])
            records[record["key"]] = record.get("value")
    return records

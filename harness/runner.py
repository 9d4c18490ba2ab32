"""The runner: prepare every backend, prove it agrees with the reference, then time it.

Order of work, per run:
  1. prepare each backend (timed, memory sampled) and make its first call;
  2. check agreement with the float64 reference on the check grid and the timed shapes,
     on real sine windows and on random inputs, fresh inputs for every check;
  3. for each timed shape, measure all backends round-robin (``harness.timing``) and
     compute their speedups against eager pair by pair.
A backend that is unavailable or fails becomes rows that say why; the others go on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from backends.base import Backend, Target
from backends.reference import ReferenceModel
from backends.registry import Registry
from harness.agreement import Tolerance, compare
from harness.data import random_batch, sine_batch
from harness.errors import BackendError
from harness.handles import Handle, LocalHandle, describe
from harness.isolation import WorkerHandle
from harness.model import LSTMPredictor, validate_input
from harness.results import Check, Row, RunResult
from harness.roofline import lstm_forward_flops
from harness.settings import ProcessSettings
from harness.stats import paired_ratio, throughput
from harness.timing import Measurement, TimingConfig, measure_interleaved

BASELINE = "eager"
REFERENCE = "reference"
Shape = tuple[int, int]  # (batch_size, seq_len)


@dataclass(frozen=True)
class RunConfig:
    backends: tuple[str, ...]
    device: str = "cpu"
    dtype: str = "fp32"
    batch_sizes: tuple[int, ...] = (1, 64, 1024)
    seq_lens: tuple[int, ...] = (50,)
    check_batch_sizes: tuple[int, ...] = (1, 64, 1024)
    check_seq_lens: tuple[int, ...] = (50, 200)
    tolerance: Tolerance = field(default_factory=lambda: Tolerance(1e-5, 1e-4))
    timing: TimingConfig = field(default_factory=TimingConfig)
    workdir: Path = Path("artifacts")
    scenario: str = "default"
    seed: int = 0
    isolate: bool = True  # each backend in its own worker process (harness.isolation)
    backend_timeout_s: float = 600.0  # per call into an isolated backend, preparation included

    @property
    def timed_shapes(self) -> list[Shape]:
        return [(b, s) for s in self.seq_lens for b in self.batch_sizes]

    @property
    def check_shapes(self) -> list[Shape]:
        grid = [(b, s) for s in self.check_seq_lens for b in self.check_batch_sizes]
        return grid + [shape for shape in self.timed_shapes if shape not in grid]


Events = Callable[[str, str], None]  # (backend, phase message)
OnRows = Callable[["RunResult"], None]  # the result so far, after each completed shape


@dataclass
class _Prepared:
    """A prepared backend and what was learnt about it before timing (runner-private)."""

    handle: Handle
    infer_rss_mb: float = 0.0
    cuda_max_mem_mb: float | None = None
    failure: str | None = None


class Runner:
    def __init__(self, model: LSTMPredictor, config: RunConfig, registry: Registry,
                 settings: ProcessSettings, on_event: Events | None = None) -> None:
        self.model = model
        self.config = config
        self.registry = registry
        self.settings = settings
        self._event = on_event or (lambda backend, message: None)
        self.reference = ReferenceModel(model)
        self.target = Target(device=config.device, dtype=config.dtype, workdir=config.workdir,
                             threads=settings.intra_op_threads,
                             ort_allow_spinning=settings.ort_allow_spinning)
        self._check_seed = config.seed

    # -- inputs -------------------------------------------------------------------------
    def _fresh_inputs(self, kind: str, batch: int, seq_len: int) -> np.ndarray:
        """New inputs for every call, so a backend that caches its last answer is caught."""
        self._check_seed += 1
        if kind == "sine":
            x = sine_batch(batch, seq_len, self._check_seed)
        else:
            x = random_batch(batch, seq_len, self.model.config.input_size, self._check_seed)
        return validate_input(x, self.model.config.input_size)

    # -- phases -------------------------------------------------------------------------
    def _prepare(self, name: str) -> _Prepared | str:
        backend = self.registry.create(name)
        reason = backend.unavailable_reason(self.target)
        if reason:
            return f"unavailable: {reason}"
        self._event(name, "prepare")
        batch, seq_len = self.config.timed_shapes[0]
        try:
            handle = self._open(backend, sine_batch(batch, seq_len, self.config.seed))
        except Exception as exc:  # noqa: BLE001 - any backend failure becomes a failed row
            self._event(name, f"failed: {describe(exc)}")
            return f"failed: {describe(exc)}"
        return _Prepared(handle)

    def _open(self, backend: Backend, first_batch: np.ndarray) -> Handle:
        """The one place that decides where a backend runs: a worker process, or here."""
        if self.config.isolate:
            return WorkerHandle.open(backend, self.model, self.target, first_batch, self.settings,
                                     self.config.backend_timeout_s)
        return LocalHandle.open(backend, self.model, self.target, first_batch)

    def _check(self, name: str, prepared: _Prepared) -> list[Check]:
        self._event(name, "check")
        checks = []
        handle = prepared.handle
        try:
            handle.begin_memory()
            for batch, seq_len in self.config.check_shapes:
                for kind in ("sine", "random"):
                    x = self._fresh_inputs(kind, batch, seq_len)
                    y = handle.predict(x)
                    result = compare(y, self.reference.forward(x), self.config.tolerance)
                    # Determinism: the same input once more must give the same bits.
                    repeat = handle.predict(x) if kind == "random" else None
                    checks.append(Check(
                        name, batch, seq_len, kind, result.max_abs_err, result.max_rel_err,
                        result.agrees,
                        deterministic=None if repeat is None else _bitwise_equal(y, repeat),
                        repeat_max_diff=None if repeat is None else _max_diff(y, repeat)))
            prepared.infer_rss_mb, prepared.cuda_max_mem_mb = handle.end_memory()
        except Exception as exc:  # noqa: BLE001
            prepared.failure = f"failed: during the agreement check, {describe(exc)}"
        return checks

    def _measure(self, shape: Shape, prepared: dict[str, _Prepared],
                 refused: dict[str, str]) -> dict[str, Measurement]:
        """Time every prepared backend at ``shape``; one that fails moves to ``refused``."""
        batch, seq_len = shape

        def drop(name: str, exc: BaseException) -> None:
            reason = describe(exc)
            self._event(name, f"failed: {reason}")
            refused[name] = f"failed: while timing batch={batch} seq_len={seq_len}, {reason}"
            prepared.pop(name).handle.close()

        timers = {}
        for name, p in list(prepared.items()):
            try:
                timers[name] = p.handle.timer(
                    [sine_batch(batch, seq_len, self.config.seed + 1000 + i)
                     for i in range(self.config.timing.n_inputs)])
            except Exception as exc:  # noqa: BLE001
                drop(name, exc)
        for name in timers:
            self._event(name, f"time batch={batch} seq_len={seq_len}")
        # The float64 reference is the comparator, not a runtime anyone ships: it is timed
        # on its own, after the others, so its slow BLAS rounds do not disturb their pairing.
        solo = {n: timers.pop(n) for n in list(timers) if n == REFERENCE}
        measurements = {}
        for group in (timers, solo):
            if group:
                measurements.update(measure_interleaved(group, self.config.timing, on_failure=drop))
        return measurements

    # -- the run ------------------------------------------------------------------------
    def run(self, peak_gflops: float | None = None, on_rows: OnRows | None = None) -> RunResult:
        """The whole run. ``on_rows`` sees the result so far after every completed shape.

        Every worker is closed on the way out, by an exception or Ctrl-C included.
        """
        prepared: dict[str, _Prepared] = {}
        try:
            return self._run(prepared, peak_gflops, on_rows or (lambda result: None))
        finally:
            for p in prepared.values():
                p.handle.close()

    def _run(self, prepared: dict[str, _Prepared], peak_gflops: float | None,
             on_rows: OnRows) -> RunResult:
        cfg = self.config
        base = {"device": cfg.device, "dtype": cfg.dtype, "scenario": cfg.scenario}
        rows: list[Row] = []
        checks: list[Check] = []
        refused: dict[str, str] = {}
        for name in cfg.backends:
            outcome = self._prepare(name)
            if isinstance(outcome, str):
                refused[name] = outcome
            else:
                prepared[name] = outcome
        for name, p in prepared.items():
            checks += self._check(name, p)
        for name in [n for n, p in prepared.items() if p.failure]:
            refused[name] = prepared[name].failure
            prepared.pop(name).handle.close()

        for shape in cfg.timed_shapes:
            measurements = self._measure(shape, prepared, refused) if prepared else {}
            for name in cfg.backends:
                row = Row(backend=name, batch_size=shape[0], seq_len=shape[1],
                          **{**base, "dtype": "fp64" if name == REFERENCE else cfg.dtype})
                if name in refused:
                    status, _, reason = refused[name].partition(": ")
                    rows.append(replace(row, status=status, reason=reason))
                    continue
                rows.append(self._row(row, prepared[name], measurements, checks, peak_gflops))
            on_rows(self._result(rows, checks))
        diagnostics = {}
        for name, p in prepared.items():
            try:
                diagnostics[name] = p.handle.diagnostics()
            except BackendError as exc:
                self._event(name, f"no diagnostics: {exc}")
        rows = [replace(r, **_diag_fields(diagnostics.get(r.backend, {}))) for r in rows]
        return self._result(rows, checks)

    def _result(self, rows: list[Row], checks: list[Check]) -> RunResult:
        cfg = self.config
        return RunResult(environment={}, scenario={}, model={},
                         tolerance={"dtype": cfg.dtype, "atol": cfg.tolerance.atol,
                                    "rtol": cfg.tolerance.rtol},
                         rows=tuple(rows), checks=tuple(checks))

    def _row(self, row: Row, p: _Prepared, measurements: dict[str, Measurement],
             checks: list[Check], peak_gflops: float | None) -> Row:
        m = measurements[row.backend]
        s = m.summary
        shape_checks = [c for c in checks if c.backend == row.backend
                        and (c.batch_size, c.seq_len) == (row.batch_size, row.seq_len)]
        repeats = [c for c in shape_checks if c.deterministic is not None]
        seqs_s, steps_s = throughput(row.batch_size, row.seq_len, s.median)
        flops = lstm_forward_flops(self.model.config, row.seq_len) * row.batch_size
        gflops = flops / s.median / 1e9
        speedup = None
        if BASELINE in measurements and row.backend != REFERENCE:
            speedup = paired_ratio(np.array(measurements[BASELINE].samples_s),
                                   np.array(m.samples_s))
        ms = 1e3
        return replace(
            row,
            median_ms=s.median * ms, p90_ms=s.p90 * ms, p99_ms=s.p99 * ms, min_ms=s.min * ms,
            mean_ms=s.mean * ms, stdev_ms=s.stdev * ms, iqr_ms=s.iqr * ms,
            ci95_low_ms=s.ci95_low * ms, ci95_high_ms=s.ci95_high * ms, noisy=s.noisy,
            stop_reason=m.stop_reason, rounds=s.n, calls_per_round=m.calls_per_round,
            throughput_seq_s=seqs_s, throughput_steps_s=steps_s,
            speedup_vs_eager=speedup.median if speedup else None,
            speedup_ci95_low=speedup.ci95_low if speedup else None,
            speedup_ci95_high=speedup.ci95_high if speedup else None,
            max_abs_err=max(c.max_abs_err for c in shape_checks),
            max_rel_err=max(c.max_rel_err for c in shape_checks),
            agrees=all(c.agrees for c in shape_checks),
            deterministic=all(c.deterministic for c in repeats) if repeats else None,
            repeat_max_diff=max(c.repeat_max_diff for c in repeats) if repeats else None,
            prepare_s=p.handle.prepare_s, first_call_ms=p.handle.first_call_ms,
            prepare_rss_mb=p.handle.prepare_rss_mb, infer_rss_mb=p.infer_rss_mb,
            peak_rss_mb=max(p.handle.prepare_rss_mb, p.infer_rss_mb),
            cuda_max_mem_mb=p.cuda_max_mem_mb,
            gflops=gflops, pct_peak=100.0 * gflops / peak_gflops if peak_gflops else None,
            samples_ms=[x * ms for x in m.samples_s],
        )


def _bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    with np.errstate(invalid="ignore"):
        return float(np.max(np.abs(a - b), initial=0.0))


def _diag_fields(diagnostics: dict) -> dict:
    keys = ("graphs", "graph_breaks", "recompiles", "artifact_bytes", "isolation_startup_s")
    return {k: diagnostics[k] for k in keys if k in diagnostics}


def benchmark(model: LSTMPredictor, model_info: dict, config: RunConfig, registry: Registry,
              settings: ProcessSettings, environment: dict, scenario: dict,
              on_event: Events | None = None, peak_gflops: float | None = None,
              on_rows: OnRows | None = None) -> RunResult:
    """Run the benchmark and attach the context every result must carry.

    ``on_rows`` receives the partial result, context attached, after every completed shape.
    """
    environment = {**environment, "peak_gflops": peak_gflops}

    def with_context(result: RunResult) -> RunResult:
        return replace(result, environment=environment, scenario=scenario, model=model_info)

    partial = (lambda result: on_rows(with_context(result))) if on_rows else None
    return with_context(Runner(model, config, registry, settings, on_event).run(peak_gflops, partial))

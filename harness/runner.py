"""The runner: prepare every backend, prove it agrees with the reference, then time it.

Order of work, per run:
  1. prepare each backend (timed, memory sampled) and make its first call;
  2. check agreement with the float64 reference on the check grid and the timed shapes,
     on real sine windows and on random inputs, fresh inputs for every check;
  3. for each timed shape, measure all backends round-robin (``harness.timing``) and
     compute their speedups against eager pair by pair.
A backend that is unavailable or fails becomes rows that say why; the others go on.

The mode says what is checked and timed in 2 and 3 besides the one-window check:
``forward`` one window per call; ``streaming`` one sample into a live (h, c) stream, checked
step by step (outputs, h and c) against the reference and timed against re-running the window;
``rollout`` a forecast of ``horizon`` steps feeding predictions back, checked step by step
against the float64 forecast and against the true sine, timed per full rollout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from backends.base import Backend, Target, feedback_rollout
from backends.reference import ReferenceModel
from backends.registry import Registry
from harness.agreement import RolloutAgreement, Tolerance, compare, compare_rollout, rollout_tolerance
from harness.data import random_batch, sine_batch, sine_forecast_batch
from harness.errors import BackendError, BackendUnavailableError, InputError
from harness.handles import Handle, LocalHandle, TimerLike, describe
from harness.isolation import WorkerHandle
from harness.memory import MemoryUse
from harness.model import LSTMPredictor, validate_input
from harness.results import Check, Row, RunResult
from harness.roofline import lstm_forward_flops
from harness.settings import ProcessSettings
from harness.stats import Ratio, paired_ratio, throughput
from harness.timing import Measurement, TimingConfig, measure_interleaved

BASELINE = "eager"
REFERENCE = "reference"
WINDOW = ":window"  # suffix of the streaming mode's whole-window timers
MODES = ("forward", "streaming", "rollout")
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
    mode: str = "forward"
    horizon: int = 200  # rollout mode: steps forecast
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
    memory: MemoryUse = MemoryUse(0.0)
    failure: str | None = None
    rollouts: dict[Shape, _Rollout] = field(default_factory=dict)


@dataclass(frozen=True)
class _Rollout:
    agreement: RolloutAgreement
    mse_vs_truth: float


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
                             ort_allow_spinning=settings.ort_allow_spinning,
                             allow_tf32=settings.cuda_allow_tf32)
        self._check_seed = config.seed
        self._forecasts: dict[Shape, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if config.mode not in MODES:
            raise InputError(f"unknown mode {config.mode!r}; expected one of {', '.join(MODES)}")
        if config.mode == "rollout" and model.config.output_size != model.config.input_size:
            raise InputError(f"a rollout feeds predictions back as inputs, so output_size "
                             f"({model.config.output_size}) must equal input_size "
                             f"({model.config.input_size})")

    def _dtype(self, name: str) -> str:
        """The dtype a backend computes in: the reference is float64 whatever the run's dtype."""
        return "fp64" if name == REFERENCE else self.config.dtype

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
            handle = self._open(backend, sine_batch(batch, seq_len, self.config.seed),
                                with_step=self.config.mode == "streaming")
        except BackendUnavailableError as exc:
            return f"unavailable: {exc}"
        except Exception as exc:  # noqa: BLE001 - any backend failure becomes a failed row
            self._event(name, f"failed: {describe(exc)}")
            return f"failed: {describe(exc)}"
        return _Prepared(handle)

    def _open(self, backend: Backend, first_batch: np.ndarray, with_step: bool) -> Handle:
        """The one place that decides where a backend runs: a worker process, or here."""
        if self.config.isolate:
            return WorkerHandle.open(backend, self.model, self.target, first_batch, self.settings,
                                     self.config.backend_timeout_s, with_step=with_step)
        return LocalHandle.open(backend, self.model, self.target, first_batch, with_step=with_step)

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
                        result.agrees, dtype=self._dtype(name),
                        deterministic=None if repeat is None else _bitwise_equal(y, repeat),
                        repeat_max_diff=None if repeat is None else _max_diff(y, repeat)))
            if self.config.mode == "streaming":
                checks += self._check_stream(name, prepared)
            elif self.config.mode == "rollout":
                checks += self._check_rollout(name, prepared)
            prepared.memory = handle.end_memory()
        except Exception as exc:  # noqa: BLE001
            prepared.failure = f"failed: during the agreement check, {describe(exc)}"
        return checks

    def _check_stream(self, name: str, prepared: _Prepared) -> list[Check]:
        """Streaming the window sample by sample must reproduce the windowed pass: the output
        at every step, and the final h and c, against the float64 reference."""
        checks = []
        for batch, seq_len in self.config.timed_shapes:
            for kind in ("sine", "random"):
                x = self._fresh_inputs(kind, batch, seq_len)
                results = [compare(a, e, self.config.tolerance) for a, e in
                           zip(prepared.handle.stream(x), self.reference.stream(x), strict=True)]
                checks.append(Check(name, batch, seq_len, kind,
                                    max(r.max_abs_err for r in results),
                                    max(r.max_rel_err for r in results),
                                    all(r.agrees for r in results), mode="streaming",
                                    dtype=self._dtype(name)))
        return checks

    def _forecast_inputs(self, shape: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sine windows, their true continuation and the float64 reference forecast; the same
        for every backend at a shape (computed once: the reference forecast is slow)."""
        if shape not in self._forecasts:
            windows, truth = sine_forecast_batch(*shape, self.config.horizon, self.config.seed + 7)
            self._forecasts[shape] = (windows, truth,
                                      feedback_rollout(self.reference.forward, windows,
                                                       self.config.horizon))
        return self._forecasts[shape]

    def _check_rollout(self, name: str, prepared: _Prepared) -> list[Check]:
        checks = []
        tolerance = rollout_tolerance(self.config.tolerance)
        for shape in self.config.timed_shapes:
            windows, truth, expected = self._forecast_inputs(shape)
            forecast = prepared.handle.rollout(windows, self.config.horizon)
            agreement = compare_rollout(forecast, expected, tolerance)
            prepared.rollouts[shape] = _Rollout(agreement, float(np.mean((forecast - truth) ** 2)))
            # Relative to the forecast's peak: a sine crosses zero, where pointwise ratios explode.
            rel = agreement.max_abs_err / max(float(np.abs(expected).max()), np.finfo(float).tiny)
            checks.append(Check(name, *shape, "sine", agreement.max_abs_err, rel, agreement.agrees,
                                mode="rollout", dtype=self._dtype(name)))
        return checks

    def _timers(self, name: str, p: _Prepared, shape: Shape) -> dict[str, TimerLike]:
        """The mode's timers for one backend; streaming adds a whole-window timer."""
        batch, seq_len = shape
        cfg = self.config
        windows = [sine_batch(batch, seq_len, cfg.seed + 1000 + i) for i in range(cfg.timing.n_inputs)]
        if cfg.mode == "forward":
            return {name: p.handle.timer(windows)}
        if cfg.mode == "rollout":
            return {name: p.handle.rollout_timer(windows, cfg.horizon)}
        # The next samples of the first window's series, one per call.
        series = sine_batch(batch, seq_len + cfg.timing.n_inputs, cfg.seed + 1000)
        samples = [series[:, seq_len + i] for i in range(cfg.timing.n_inputs)]
        return {name: p.handle.step_timer(series[:, :seq_len], samples),
                name + WINDOW: p.handle.timer(windows)}

    def _measure(self, shape: Shape, prepared: dict[str, _Prepared],
                 refused: dict[str, str]) -> dict[str, Measurement]:
        """Time every prepared backend at ``shape``; one that fails moves to ``refused``."""
        batch, seq_len = shape

        def drop(timer_name: str, exc: BaseException) -> None:
            name = timer_name.removesuffix(WINDOW)
            if name not in prepared:  # its other timer (streaming) failed first
                return
            reason = describe(exc)
            self._event(name, f"failed: {reason}")
            refused[name] = f"failed: while timing batch={batch} seq_len={seq_len}, {reason}"
            prepared.pop(name).handle.close()

        timers: dict[str, TimerLike] = {}
        for name, p in list(prepared.items()):
            try:
                timers.update(self._timers(name, p, shape))
            except Exception as exc:  # noqa: BLE001
                drop(name, exc)
        mode = "" if self.config.mode == "forward" else f" ({self.config.mode})"
        for name in prepared:
            self._event(name, f"time batch={batch} seq_len={seq_len}{mode}")
        # The float64 reference is the comparator, not a runtime anyone ships: it is timed
        # on its own, after the others, so its slow BLAS rounds do not disturb their pairing.
        solo = {n: timers.pop(n) for n in list(timers) if n.removesuffix(WINDOW) == REFERENCE}
        measurements: dict[str, Measurement] = {}
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
        base = {"device": cfg.device, "dtype": cfg.dtype, "scenario": cfg.scenario, "mode": cfg.mode}
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
                          **{**base, "dtype": self._dtype(name)})
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
        return RunResult(environment={}, scenario={}, model={},
                         tolerance=self._tolerance_record(),
                         rows=tuple(rows), checks=tuple(checks))


    def _tolerance_record(self) -> dict:
        tol = self.config.tolerance
        record = {"dtype": self.config.dtype, "atol": tol.atol, "rtol": tol.rtol}
        if self.config.mode == "rollout":
            band = rollout_tolerance(tol)
            record["rollout"] = {"atol": band.atol, "rtol": band.rtol}
        return record

    def _transfer_fields(self, p: _Prepared, shape: Shape) -> dict:
        """Host-to-device and device-to-host copy times, measured beside the timed calls."""
        try:
            h2d, d2h = p.handle.transfer_ms(sine_batch(*shape, self.config.seed))
        except BackendError:
            return {}
        return {"h2d_ms": h2d, "d2h_ms": d2h}

    def _row(self, row: Row, p: _Prepared, measurements: dict[str, Measurement],
             checks: list[Check], peak_gflops: float | None) -> Row:
        m = measurements[row.backend]
        shape = (row.batch_size, row.seq_len)
        shape_checks = [c for c in checks if c.backend == row.backend
                        and (c.batch_size, c.seq_len) == shape]
        one_step = [c for c in shape_checks if c.mode == "forward"]
        repeats = [c for c in shape_checks if c.deterministic is not None]
        speedup = None
        if BASELINE in measurements and row.backend != REFERENCE:
            speedup = paired_ratio(np.array(measurements[BASELINE].samples_s),
                                   np.array(m.samples_s))
        row = replace(
            row, **_timing_fields(m), **_speedup_fields(speedup),
            max_abs_err=max(c.max_abs_err for c in one_step),
            max_rel_err=max(c.max_rel_err for c in one_step),
            agrees=all(c.agrees for c in shape_checks),
            deterministic=all(c.deterministic for c in repeats) if repeats else None,
            repeat_max_diff=max(c.repeat_max_diff for c in repeats) if repeats else None,
            prepare_s=p.handle.prepare_s, first_call_ms=p.handle.first_call_ms,
            prepare_rss_mb=p.handle.prepare_rss_mb, infer_rss_mb=p.memory.rss_mb,
            peak_rss_mb=max(p.handle.prepare_rss_mb, p.memory.rss_mb),
            cuda_max_mem_mb=p.memory.cuda_peak_mb, gpu_mem_growth_mb=p.memory.device_growth_mb,
            **self._transfer_fields(p, shape),
        )
        median_s = m.summary.median
        if self.config.mode == "streaming":
            window_s = measurements[row.backend + WINDOW].summary.median
            stream = [c for c in shape_checks if c.mode == "streaming"]
            return replace(row, step_ms=median_s * 1e3, window_ms=window_s * 1e3,
                           step_vs_window=median_s / window_s,
                           throughput_steps_s=row.batch_size / median_s,
                           max_abs_err=max(c.max_abs_err for c in stream),
                           max_rel_err=max(c.max_rel_err for c in stream))
        if self.config.mode == "rollout":
            rollout = p.rollouts[shape]
            return replace(row, horizon=self.config.horizon,
                           drift_horizon=rollout.agreement.drift_horizon,
                           max_abs_err_rollout=rollout.agreement.max_abs_err,
                           mse_vs_truth=rollout.mse_vs_truth,
                           rollout_err=list(rollout.agreement.step_err),
                           throughput_steps_s=row.batch_size * self.config.horizon / median_s)
        seqs_s, steps_s = throughput(row.batch_size, row.seq_len, median_s)
        gflops = lstm_forward_flops(self.model.config, row.seq_len) * row.batch_size / median_s / 1e9
        return replace(row, throughput_seq_s=seqs_s, throughput_steps_s=steps_s, gflops=gflops,
                       pct_peak=100.0 * gflops / peak_gflops if peak_gflops else None)


def _timing_fields(m: Measurement) -> dict:
    s, ms = m.summary, 1e3
    return dict(median_ms=s.median * ms, p90_ms=s.p90 * ms, p99_ms=s.p99 * ms, min_ms=s.min * ms,
                mean_ms=s.mean * ms, stdev_ms=s.stdev * ms, iqr_ms=s.iqr * ms,
                ci95_low_ms=s.ci95_low * ms, ci95_high_ms=s.ci95_high * ms, noisy=s.noisy,
                stop_reason=m.stop_reason, rounds=s.n, calls_per_round=m.calls_per_round,
                samples_ms=[x * ms for x in m.samples_s])


def _speedup_fields(speedup: Ratio | None) -> dict:
    return dict(speedup_vs_eager=speedup.median if speedup else None,
                speedup_ci95_low=speedup.ci95_low if speedup else None,
                speedup_ci95_high=speedup.ci95_high if speedup else None)


def _bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    with np.errstate(invalid="ignore"):
        return float(np.max(np.abs(a - b), initial=0.0))


def _diag_fields(diagnostics: dict) -> dict:
    keys = ("graphs", "graph_breaks", "recompiles", "artifact_bytes", "exporter", "isolation_startup_s")
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

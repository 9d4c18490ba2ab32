"""The runner: prepare every backend, prove it agrees with the reference, then time it.

Order of work, per run:
  1. open a handle per backend, one at a time: prepare it (timed, memory sampled) and make
     its first call;
  2. start each backend again in more fresh worker processes (``TimingConfig.processes``),
     loading the files the first one built, all at once (their start-up is not measured);
     meanwhile let the workload check every first process's agreement with the float64
     reference through it, then check the later ones at the timed shapes;
  3. for each timed shape and each process in turn, time every backend's workload timers
     round-robin (``harness.core.timing``), accounting for the machine's load in every
     round, then pool the processes' rounds into a row, with speedups against eager pair by
     pair and CIs that span the processes. A workload that measures each backend on its own
     (an ``AloneWorkload``) measures them one after the other instead, through a probe per
     worker process that accounts for the machine's load over each of its requests.
A backend that is unavailable or fails becomes rows that say why; the others go on; a
workload that cannot run here makes every row say why.

The runner knows no workload by name: what is checked, what is timed and what a row adds
are the workload's (``harness.workloads``); where a backend runs is the handle's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from backends.base import Backend, Target
from backends.reference import ReferenceModel
from backends.registry import BASELINE, Registry
from harness.core.agreement import worst
from harness.core.data import sine_batch
from harness.core.errors import BackendError, BackendUnavailableError
from harness.core.load import (
    LoadMeter,
    MeteredRound,
    ProcessShare,
    RoundLoad,
    busiest,
    canary_threads,
    process_times,
)
from harness.core.memory import MemoryUse
from harness.core.model import LSTMPredictor
from harness.core.results import (
    Check,
    ColdStart,
    Identity,
    LoadSummary,
    Outcome,
    Row,
    RowAgreement,
    RunResult,
    RunVerdict,
    Speedup,
    Verdict,
)
from harness.core.roofline import Peak
from harness.core.settings import ProcessSettings
from harness.core.stats import paired_ratio, summarize
from harness.core.timing import (
    Measurement,
    ProcessRounds,
    TimerKey,
    TimerLike,
    combine,
    measure_interleaved,
)
from harness.engine.events import Event, OnEvent, Phase
from harness.engine.handles import CopyTimes, Facts, Handle, LocalHandle, describe
from harness.engine.isolation import WorkerHandle
from harness.engine.plan import RunConfig
from harness.workloads import task
from harness.workloads.base import (
    Alone,
    AloneContext,
    AloneWorkload,
    CheckContext,
    Checked,
    RowContext,
    Shape,
    Task,
    TimedWorkload,
)

OnRows = Callable[[RunResult], None]  # the result so far, after each completed shape
COPY_TIMES = CopyTimes()
Measured = dict[str, dict[str, Measurement]]  # backend -> timer role -> measurement
T = TypeVar("T")


@dataclass(frozen=True)
class _Opening:
    """A backend on its way to open (runner-private): ``ready`` waits for it, and
    ``abandon`` stops a worker that will not be needed after all."""

    ready: Callable[[], Handle | Outcome]
    abandon: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class _Found:
    """What measuring one backend at one shape gave its row (runner-private)."""

    measurement: Measurement  # the row's timing and load account
    fields: dict  # the workload's own fields
    speedup: Speedup | None = None


@dataclass
class _Live:
    """A backend that opened, in each of its worker processes, and what was learnt about it
    (runner-private). The first process carries the cold start, memory and diagnostics."""

    backend: Backend
    handles: list[Handle]
    checked: Checked = field(default_factory=lambda: Checked([]))
    memory: MemoryUse = MemoryUse(0.0)
    diagnostics: dict = field(default_factory=dict)

    def close(self) -> None:
        for handle in self.handles:
            handle.close()


class _Watch:
    """The processes outside the run, and how much CPU each used while it was timing."""

    def __init__(self) -> None:
        self.cpu_s: dict[int, tuple[str, float]] = {}
        self.wall_s = 0.0

    def over(self, own: set[int], measure: Callable[[], T]) -> T:
        before, start = process_times(), time.perf_counter()
        result = measure()
        wall = time.perf_counter() - start
        for share in busiest(before, process_times(), wall, own, limit=50):
            name, cpu = self.cpu_s.get(share.pid, (share.name, 0.0))
            self.cpu_s[share.pid] = (name, cpu + share.cores * wall)
        self.wall_s += wall
        return result

    def top(self, limit: int = 10) -> tuple[ProcessShare, ...]:
        if not self.wall_s:
            return ()
        shares = [ProcessShare(pid, name, cpu / self.wall_s) for pid, (name, cpu) in self.cpu_s.items()]
        return tuple(sorted(shares, key=lambda p: -p.cores)[:limit])


class MeteredProbe:
    """One worker process of a backend as an ``AloneWorkload`` measures it: each run is one
    request executed there, and the machine's load is accounted over it as over a timed
    round (the canary before it, the CPU used outside the run during it)."""

    def __init__(self, handle: Handle, task: Task, meter: LoadMeter | None, settle_s: float) -> None:
        self._handle = handle
        self._task = task
        self._meter = meter
        self._settle_s = settle_s
        self.loads: list[RoundLoad] = []
        self.runs = 0

    def run(self, payload: Any, timeout_s: float | None = None) -> Any:
        account = MeteredRound(self._meter, self._settle_s) if self._meter is not None else None
        value = self._handle.outputs(self._task, payload, timeout_s)
        self.runs += 1
        load = account.end() if account is not None else None
        if load is not None:
            self.loads.append(load)
        return value


def speedup_over(base: Measurement, own: Measurement) -> Speedup:
    """The baseline's time over this backend's, round by round (the rounds of one process are
    interleaved, so each pair shares the machine's drift), with a CI drawn over the processes
    as well as their rounds."""
    ratio = paired_ratio(np.array(base.samples_s), np.array(own.samples_s), own.processes)
    return Speedup(ratio.median, ratio.ci95_low, ratio.ci95_high)


def alone_measurement(alone: Alone, probes: list[MeteredProbe], max_foreign_cores: float) -> Measurement:
    """A row's measurement from what an ``AloneWorkload`` found: its samples, and each probe
    run as a round of the load account (a run that outside work made contended is kept, and
    counted against the row, never taken again)."""
    contended = [[load for load in probe.loads if load.foreign_cores > max_foreign_cores]
                 for probe in probes]
    return Measurement(
        samples_s=alone.samples_s, calls_per_round=1, stop_reason=alone.stop_reason,
        summary=summarize(alone.samples_s, alone.processes),
        loads=tuple(load for probe in probes for load in probe.loads),
        set_aside=tuple(load for aside in contended for load in aside),
        rounds_taken=sum(probe.runs for probe in probes), processes=alone.processes,
        by_process=tuple(ProcessRounds(probe.runs, len(aside))
                         for probe, aside in zip(probes, contended, strict=True)))


class Runner:
    def __init__(self, model: LSTMPredictor, config: RunConfig, registry: Registry,
                 settings: ProcessSettings, on_event: OnEvent | None = None,
                 model_sha256: str | None = None) -> None:
        self.model = model
        self.model_sha256 = model_sha256  # the weights file's hash, which every row carries
        self.config = config
        self.registry = registry
        self.settings = settings
        self._event = on_event or (lambda event: None)
        config.workload.refuse_model(model.config)
        self.reference = ReferenceModel(model)
        self.target = Target(device=config.device, dtype=config.dtype, workdir=config.workdir,
                             threads=settings.intra_op_threads,
                             ort_allow_spinning=settings.ort_allow_spinning,
                             allow_tf32=settings.cuda_allow_tf32,
                             shapes=tuple(config.timed_shapes))
        self._watch = _Watch()
        self._checked: list[Checked] = []  # every worker's checks, in the order made
        self.peak_gflops: float | None = None  # set by run

    def run(self, peak_gflops: float | None = None, on_rows: OnRows | None = None) -> RunResult:
        """The whole run. ``on_rows`` sees the result so far after every completed shape.

        Every worker is closed on the way out, by an exception or Ctrl-C included.
        """
        live: dict[str, _Live] = {}
        self.peak_gflops = peak_gflops
        try:
            return self._run(live, on_rows or (lambda result: None))
        finally:
            for backend in live.values():
                backend.close()

    # -- phases -------------------------------------------------------------------------
    def _open(self, backend: Backend, target: Target) -> Handle | Outcome:
        return self._start(backend, target).ready()

    def _start(self, backend: Backend, target: Target) -> _Opening:
        """Begin opening ``backend``: an isolated backend's worker is spawned at once, and the
        opening's ``ready`` waits for its preparation (a local one is prepared then)."""
        reason = backend.unavailable_reason(target)
        if reason:
            return _Opening(lambda: Outcome.unavailable(reason))
        first = sine_batch(*self.config.timed_shapes[0], self.config.seed, self.model.config.input_size)
        with_step = self.config.workload.needs_step_model
        if not self.config.isolate:
            return _Opening(lambda: self._prepared(backend, lambda: LocalHandle.open(
                backend, self.model, target, first, with_step=with_step)))
        try:
            worker = WorkerHandle.start(backend, self.model, target, first, self.settings,
                                        self.config.backend_timeout_s, with_step=with_step)
        except Exception as exc:  # noqa: BLE001 - the worker did not spawn: its rows say why
            failure = self._failed(backend, exc)
            return _Opening(lambda: failure)
        return _Opening(lambda: self._prepared(backend, worker.ready), worker.stop)

    def _prepared(self, backend: Backend, prepare: Callable[[], Handle]) -> Handle | Outcome:
        self._event(Event(backend.name, Phase.PREPARE))
        try:
            return prepare()
        except BackendUnavailableError as exc:
            return Outcome.unavailable(str(exc))
        except Exception as exc:  # noqa: BLE001 - any backend failure becomes a failed row
            return self._failed(backend, exc)

    def _failed(self, backend: Backend, exc: Exception) -> Outcome:
        self._event(Event(backend.name, Phase.FAILED, reason=describe(exc)))
        return Outcome.failed(describe(exc))

    def _check(self, backend: Backend, handle: Handle, ctx: CheckContext) -> Checked | Outcome:
        self._event(Event(backend.name, Phase.CHECK))
        try:
            return task.judge(self.config.workload, ctx, handle, backend.name,
                              backend.computes_in(self.config.dtype))
        except Exception as exc:  # noqa: BLE001
            return Outcome.failed(f"during the agreement check, {self._failed(backend, exc).reason}")

    def _checked_process(self, backend: Backend, handle: Handle, ctx: CheckContext
                         ) -> tuple[Checked, Facts] | Outcome:
        """Check a worker, then ask its facts, which ends its memory window: past the checks
        the window would sample memory on a thread of its own through every later request
        (a serving measurement's LoadGen tests among them)."""
        checked = self._check(backend, handle, ctx)
        if isinstance(checked, Outcome):
            return checked
        try:
            facts = handle.facts()
        except BackendError as exc:
            return Outcome.failed(describe(exc))
        self._checked.append(checked)
        return checked, facts

    def _check_processes(self, live: dict[str, _Live], refused: dict[str, Outcome],
                         ctx: CheckContext) -> None:
        """Check every backend's first worker process on the whole grid, then its further
        ones (``TimingConfig.processes``) at the timed shapes, before their rounds count.

        The further ones load the files the first one built. Their start-up and preparation
        are not measured (the first one's are, each alone), so on the CPU they all start at
        once, before the first ones are checked, and keep both cores busy through checks
        that would otherwise leave one idle. On CUDA they start after: a first worker's
        device-memory figure can be the whole device's, which their contexts would join."""
        pending: dict[str, list[_Opening]] = {name: [] for name in live}
        start_early = self.config.device != "cuda"

        def start_later() -> None:
            for _ in range(1, self.config.timing.processes):
                for name, backend in live.items():
                    target = replace(self.target, reuse=backend.handles[0].info.artifacts)
                    pending[name].append(self._start(backend.backend, target))

        def drop(name: str, failure: Outcome) -> None:
            refused[name] = failure
            live.pop(name).close()
            for opening in pending.pop(name, []):
                opening.abandon()

        try:
            if start_early:
                start_later()
            for name, backend in list(live.items()):
                done = self._checked_process(backend.backend, backend.handles[0], ctx)
                if isinstance(done, Outcome):
                    drop(name, done)
                else:
                    backend.checked, backend.memory = done[0], done[1].memory
            if not start_early:
                start_later()
            at_timed_shapes = ctx.at(self.config.timed_shapes)
            for _ in range(1, self.config.timing.processes):
                for name in list(live):
                    failure = self._another_process(live[name], pending[name].pop(0).ready(),
                                                    at_timed_shapes)
                    if failure is not None:
                        drop(name, failure)
        finally:  # Ctrl-C or an error on the way: no worker left behind
            for openings in pending.values():
                for opening in openings:
                    opening.abandon()

    def _another_process(self, live: _Live, handle: Handle | Outcome, ctx: CheckContext
                         ) -> Outcome | None:
        """``handle``, one more worker of ``live``'s backend, checked before it joins it."""
        if isinstance(handle, Outcome):
            return Outcome(handle.status, f"in worker process {len(live.handles) + 1}: {handle.reason}")
        live.handles.append(handle)
        done = self._checked_process(live.backend, handle, ctx)
        if isinstance(done, Outcome):
            return Outcome.failed(f"in worker process {len(live.handles)}: {done.reason}")
        checked, _ = done
        live.checked = Checked([*live.checked.checks, *checked.checks], live.checked.fields)
        return None

    def _measure_process(self, workload: TimedWorkload, shape: Shape, live: dict[str, _Live],
                         refused: dict[str, Outcome], process: int) -> Measured:
        """Time every live backend's ``process``-th worker at ``shape``; a backend that fails
        moves to ``refused``."""
        cfg = self.config

        def drop(key: TimerKey, exc: BaseException) -> None:
            if key.backend in live:  # else its other timer failed first
                self._drop(key.backend, shape, exc, live, refused)

        payloads = workload.timer_payloads(shape, cfg.seed, cfg.timing.n_inputs,
                                           self.model.config.input_size)
        interleaved: dict[TimerKey, TimerLike] = {}
        solo: dict[TimerKey, TimerLike] = {}
        for name, backend in list(live.items()):
            group = interleaved if backend.backend.interleaved else solo
            for role, payload in payloads.items():
                key = TimerKey(name, role)
                try:
                    group[key] = backend.handles[process].timer(workload, role, payload)
                except Exception as exc:  # noqa: BLE001
                    drop(key, exc)
                    break
        for name in live:
            self._event(Event(name, Phase.TIME, shape=shape, workload=workload.name))
        own = {os.getpid(), *(h.info.pid for b in live.values() for h in b.handles)}
        meter = LoadMeter(own)
        timing = replace(cfg.timing, budget_s=cfg.timing.budget_s / cfg.timing.processes)
        measured: Measured = {}
        # Backends that are not interleaved (the float64 reference) are timed on their own,
        # after the others, so their slow rounds do not disturb the others' pairing.
        for group in (interleaved, solo):
            if group:
                found = self._watch.over(own, lambda g=group: measure_interleaved(
                    g, timing, on_failure=drop, meter=meter if meter.available else None,
                    process=process))
                for key, m in found.items():
                    measured.setdefault(key.backend, {})[key.role] = m
        return measured

    def _drop(self, name: str, shape: Shape, exc: BaseException, live: dict[str, _Live],
              refused: dict[str, Outcome]) -> None:
        reason = describe(exc)
        self._event(Event(name, Phase.FAILED, reason=reason))
        refused[name] = Outcome.failed(f"while timing batch={shape[0]} seq_len={shape[1]}, {reason}")
        live.pop(name).close()

    def _measure_timed(self, workload: TimedWorkload, shape: Shape, live: dict[str, _Live],
                       refused: dict[str, Outcome]) -> dict[str, _Found]:
        """Every process's round-robin at ``shape``, pooled per backend, with its speedup."""
        parts: dict[str, dict[str, list[Measurement]]] = {}
        for process in range(self.config.timing.processes):
            if not live:
                break
            for name, roles in self._measure_process(workload, shape, live, refused, process).items():
                for role, m in roles.items():
                    parts.setdefault(name, {}).setdefault(role, []).append(m)
        measured = {name: {role: combine(ms, self.config.timing.target_ci) for role, ms in roles.items()}
                    for name, roles in parts.items() if name in live}
        context = RowContext(self.model.config, self.peak_gflops)
        found = {}
        for name, mine in measured.items():
            primary = mine[workload.primary]
            speedup = None
            if BASELINE in measured and live[name].backend.interleaved:
                speedup = speedup_over(measured[BASELINE][workload.primary], primary)
            found[name] = _Found(primary, workload.row_fields(shape, mine, context), speedup)
        return found

    def _measure_alone(self, workload: AloneWorkload, shape: Shape, live: dict[str, _Live],
                       refused: dict[str, Outcome], ctx: CheckContext) -> dict[str, _Found]:
        """Each backend on its own at ``shape``, one after the other, the others idle; the
        answers it checked while measuring join its checks."""
        cfg = self.config
        found = {}
        for name, backend in list(live.items()):
            self._event(Event(name, Phase.TIME, shape=shape, workload=workload.name))
            own = {os.getpid(), *(h.info.pid for b in live.values() for h in b.handles)}
            meter = LoadMeter(own)
            probes = [MeteredProbe(handle, workload, meter if meter.available else None,
                                   cfg.timing.settle_s) for handle in backend.handles]
            alone_ctx = AloneContext(ctx, name, cfg.device, backend.backend.computes_in(cfg.dtype),
                                     cfg.files_dir)
            try:
                alone = self._watch.over(own, lambda c=alone_ctx, p=probes: workload.measure(c, p, shape))
            except Exception as exc:  # noqa: BLE001 - any failure becomes a failed row
                self._drop(name, shape, exc, live, refused)
                continue
            backend.checked = Checked([*backend.checked.checks, *alone.checks], backend.checked.fields)
            found[name] = _Found(alone_measurement(alone, probes, cfg.timing.max_foreign_cores),
                                 alone.fields)
            self._event(Event(name, Phase.DONE, shape=shape, workload=workload.name))
        return found

    # -- the run ------------------------------------------------------------------------
    def _run(self, live: dict[str, _Live], on_rows: OnRows) -> RunResult:
        cfg, workload = self.config, self.config.workload
        backends = {name: self.registry.create(name) for name in cfg.backends}

        def identity(name: str, shape: Shape) -> Identity:
            dtype = backends[name].computes_in(cfg.dtype)
            return Identity(name, cfg.device, dtype, *shape, cfg.scenario, workload.name,
                            self.model_sha256, **self.model.config.to_dict(),
                            run_dtype=None if dtype == cfg.dtype else cfg.dtype)

        reason = workload.unavailable_reason()
        if reason is not None:
            return self._result([Row(identity(name, shape), Outcome.unavailable(reason))
                                 for shape in cfg.timed_shapes for name in backends], None, [])
        ctx = CheckContext(self.reference, cfg.tolerance, self.model.config.input_size, cfg.seed,
                           cfg.check_shapes, cfg.timed_shapes, cfg.task_budget)
        refused: dict[str, Outcome] = {}
        for name, backend in backends.items():
            handle = self._open(backend, self.target)
            if isinstance(handle, Outcome):
                refused[name] = handle
            else:
                live[name] = _Live(backend, [handle])
        self._check_processes(live, refused, ctx)
        # Every check made, a backend's that failed in a later process included.
        checks = [c for b in self._checked for c in b.checks]

        timed: list[tuple[Row, Measurement | None]] = []  # every row so far, and its timing
        for shape in cfg.timed_shapes:
            if isinstance(workload, AloneWorkload):
                before = {name: len(b.checked.checks) for name, b in live.items()}
                found = self._measure_alone(workload, shape, live, refused, ctx)
                checks += [c for name, b in live.items() for c in b.checked.checks[before[name]:]]
            else:
                found = self._measure_timed(workload, shape, live, refused)
            for name in backends:
                if name in refused:
                    timed.append((Row(identity(name, shape), refused[name]), None))
                else:
                    timed.append(self._row(identity(name, shape), live[name], found[name]))
            on_rows(self._result(*self._judged(timed), checks))
        diagnostics = {}
        for name, backend in live.items():
            try:
                diagnostics[name] = backend.handles[0].facts().diagnostics
            except BackendError:
                pass  # the row already says how the backend failed
        rows, canary_best_s = self._judged(timed)
        rows = [replace(r, diagnostics=diagnostics.get(r.backend, {})) for r in rows]
        return self._result(rows, canary_best_s, checks)

    def _judged(self, timed: list[tuple[Row, Measurement | None]]
                ) -> tuple[list[Row], float | None]:
        """The rows with their load accounts, each row's canary judged against the fastest
        row's (a row's median canary: one round's canary jitters by tens of percent), and that
        fastest median canary."""
        medians = [median for _, m in timed if m is not None and (median := m.canary_median())]
        best = min(medians) if medians else None
        return [row if m is None else
                replace(row, load=load_summary(m, self.config.timing.max_set_aside, best))
                for row, m in timed], best

    def _result(self, rows: list[Row], canary_best_s: float | None, checks: list[Check]
                ) -> RunResult:
        cfg, tol = self.config, self.config.tolerance
        record = {"dtype": cfg.dtype, "atol": tol.atol, "rtol": tol.rtol,
                  **cfg.workload.tolerance_record(tol), **task.record(cfg.task_budget)}
        verdict = RunVerdict.of(tuple(rows), cfg.timing.max_foreign_cores, cfg.timing.max_set_aside,
                                cfg.timing.max_canary_spread, canary_best_s,
                                self._watch.top(), canary_threads())
        checks = [replace(c, model_sha256=self.model_sha256) for c in checks]
        return RunResult(environment={}, scenario={}, model={}, tolerance=record,
                         rows=tuple(rows), checks=tuple(checks), verdict=verdict)

    def _row(self, identity: Identity, live: _Live, found: _Found) -> tuple[Row, Measurement]:
        shape = (identity.batch_size, identity.seq_len)
        primary = found.measurement
        checks = [c for c in live.checked.checks if (c.batch_size, c.seq_len) == shape]
        info, memory = live.handles[0].info, live.memory
        cold = ColdStart(
            isolation_startup_s=info.startup_s, prepare_s=info.prepare_s,
            first_call_ms=info.first_call_ms, prepare_rss_mb=info.prepare_rss_mb,
            infer_rss_mb=memory.rss_mb, peak_rss_mb=max(info.prepare_rss_mb, memory.rss_mb),
            cuda_max_mem_mb=memory.cuda_peak_mb, gpu_mem_growth_mb=memory.device_growth_mb,
            gpu_mem_scope=memory.device_scope,
            **self._copy_times(live.handles[0], shape))
        fields = {**live.checked.fields.get(shape, {}), **found.fields}
        return Row(identity, timing=primary.to_summary(), speedup=found.speedup,
                   agreement=row_agreement(checks, self.config.workload.error_mode),
                   cold_start=cold, workload=fields), primary

    def _copy_times(self, handle: Handle, shape: Shape) -> dict:
        """Host-to-device and device-to-host copy times, measured beside the timed calls."""
        try:
            h2d, d2h = handle.outputs(COPY_TIMES, sine_batch(*shape, self.config.seed,
                                                             self.model.config.input_size))
        except BackendError:
            return {}
        return {"h2d_ms": h2d, "d2h_ms": d2h}


def load_summary(m: Measurement, max_set_aside: float, best_canary: float | None) -> LoadSummary:
    """The row's account of the machine: its verdict, the outside load over every round it
    took, and the canary's time against the run's best."""
    processes = len(set(m.processes)) or 1
    if not m.load_checked:
        return LoadSummary(Verdict.UNCHECKED, None, None, len(m.set_aside), processes,
                           samples_process=list(m.processes))
    every = [load.foreign_cores for load in (*m.loads, *m.dropped)]
    canary = [load.canary_s / best_canary for load in m.loads] if best_canary else []
    return LoadSummary(
        verdict=Verdict.CONTENDED if m.contended(max_set_aside) else Verdict.VALID,
        foreign_load=float(np.mean(every)),
        canary_rel=m.canary_median() / best_canary if best_canary else None,
        rounds_set_aside=len(m.set_aside), processes=processes,
        samples_foreign_load=[load.foreign_cores for load in m.loads],
        samples_canary_rel=canary, samples_process=list(m.processes))


def row_agreement(checks: list[Check], error_mode: str) -> RowAgreement:
    """A row's agreement: every check at its shape must agree; its errors are those of the
    workload's ``error_mode`` checks."""
    shown = [c for c in checks if c.mode == error_mode] or checks
    repeats = [c for c in checks if c.deterministic is not None]
    return RowAgreement(
        max_abs_err=worst(c.max_abs_err for c in shown), max_rel_err=worst(c.max_rel_err for c in shown),
        agrees=all(c.agrees for c in checks),
        deterministic=all(c.deterministic for c in repeats) if repeats else None,
        repeat_max_diff=worst(c.repeat_max_diff for c in repeats) if repeats else None)


def benchmark(model: LSTMPredictor, model_info: dict, config: RunConfig, registry: Registry,
              settings: ProcessSettings, environment: dict, scenario: dict,
              on_event: OnEvent | None = None, peak: Peak | None = None,
              on_rows: OnRows | None = None) -> RunResult:
    """Run the benchmark and attach the context every result must carry.

    ``on_rows`` receives the partial result, context attached, after every completed shape.
    """
    peak_gflops = peak.gflops if peak else None
    environment = {**environment, "peak_gflops": peak_gflops,
                   "peak": peak.to_dict() if peak else None}

    def with_context(result: RunResult) -> RunResult:
        return replace(result, environment=environment, scenario=scenario, model=model_info)

    partial = (lambda result: on_rows(with_context(result))) if on_rows else None
    runner = Runner(model, config, registry, settings, on_event, model_info.get("weights_sha256"))
    return with_context(runner.run(peak_gflops, partial))

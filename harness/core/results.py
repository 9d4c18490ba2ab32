"""Result records: one Row per backend x device x dtype x shape, and the run around them.

A row is assembled from parts, each owned by one concern: who was measured (identity),
whether it could be (outcome), what the clock saw (timing), against eager (speedup), what
the float64 reference said (agreement), what preparing it cost (cold start), the fields the
workload adds, and the backend's own diagnostics. ``to_dict`` flattens the parts into the
documented JSON keys; the backend's diagnostics stay nested under ``diagnostics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from harness.core.load import ProcessShare, canary_spread, past_limit, pooled_canaries
from harness.core.shapes import COUNT, NON_NEGATIVE, between
from harness.core.targets import DEFAULT_MODE

# 2: backend diagnostics nested under "diagnostics" (all of them, none dropped); fields of
# one workload appear only on that workload's rows.
# 3: every row names its model (weights SHA-256 and sizes), and rows of several models may
# share a run, whose "model" block then lists them.
# 4: the canary runs on every intra-op thread, and the verdict says on how many.
# harness.io.sources migrates 1, 2 and 3.
SCHEMA_VERSION = 4


class Status(StrEnum):
    OK = "ok"
    UNAVAILABLE = "unavailable"  # the backend cannot serve this target; the reason says why
    FAILED = "failed"  # it tried and broke: crashed, hung, raised


@dataclass(frozen=True)
class Outcome:
    status: Status = Status.OK
    reason: str | None = None

    @classmethod
    def unavailable(cls, reason: str) -> Outcome:
        return cls(Status.UNAVAILABLE, reason)

    @classmethod
    def failed(cls, reason: str) -> Outcome:
        return cls(Status.FAILED, reason)


@dataclass(frozen=True)
class RowFigure:
    """A row key that rows are ranked or compared by, and which way is better."""

    key: str
    higher_is_better: bool = False


@dataclass(frozen=True)
class Identity:
    backend: str = field(metadata=between(1))
    device: str = field(metadata=between(1))
    dtype: str = field(metadata=between(1))
    batch_size: int = field(metadata=COUNT)
    seq_len: int = field(metadata=COUNT)
    scenario: str = "default"
    mode: str = DEFAULT_MODE
    # The model: the SHA-256 of its weights file (None where it is not known) and its sizes.
    model_sha256: str | None = None
    input_size: int = field(default=1, metadata=COUNT)
    hidden_size: int = field(default=64, metadata=COUNT)
    num_layers: int = field(default=1, metadata=COUNT)
    output_size: int = field(default=1, metadata=COUNT)
    # The dtype the run asked for, where the row computes in another: eager times in fp32
    # beside int8 rows (torch has no int8 eager LSTM) and the reference in fp64 beside any,
    # and a scenario of several dtypes has such a row once per run. None: the row's own dtype.
    run_dtype: str | None = None


@dataclass(frozen=True)
class TimingSummary:
    """What the clock saw for a row, in milliseconds per call (per step, per rollout: the
    workload says what one call is)."""

    median_ms: float = field(metadata=NON_NEGATIVE)
    # None: the raw samples were not kept (a pytest-benchmark save)
    p90_ms: float | None = field(metadata=NON_NEGATIVE)
    p99_ms: float | None = field(metadata=NON_NEGATIVE)
    min_ms: float = field(metadata=NON_NEGATIVE)
    mean_ms: float = field(metadata=NON_NEGATIVE)
    stdev_ms: float = field(metadata=NON_NEGATIVE)
    iqr_ms: float = field(metadata=NON_NEGATIVE)
    ci95_low_ms: float | None = field(metadata=NON_NEGATIVE)
    ci95_high_ms: float | None = field(metadata=NON_NEGATIVE)
    noisy: bool
    stop_reason: str
    rounds: int = field(metadata=COUNT)
    calls_per_round: int | None = field(metadata=COUNT)
    samples_ms: list[float] = field(default_factory=list, metadata=NON_NEGATIVE)


class Verdict(StrEnum):
    """Whether a measurement can be trusted as taken on a quiet machine."""

    VALID = "valid"  # every round's outside load was measured, and few had to be set aside
    CONTENDED = "contended"  # work outside the run took the machine during too many rounds
    UNSTEADY = "unsteady"  # the host kept changing the machine's speed (a run's verdict only)
    UNCHECKED = "unchecked"  # the load could not be measured here (not Linux)


# The verdicts under which no speed is believed: the report marks them, `run` exits 3 on them
# and `compare` applies no regression gate to a run that carries one.
UNTRUSTED = frozenset({Verdict.CONTENDED, Verdict.UNSTEADY})


@dataclass(frozen=True)
class LoadSummary:
    """What the machine did while a row was timed (``harness.core.load``)."""

    verdict: Verdict
    foreign_load: float | None  # cores used outside the run, mean over every round taken
    canary_rel: float | None  # the canary's median time over the run's best (1: as fast)
    rounds_set_aside: int  # rounds taken again because outside work took the machine
    processes: int  # worker processes whose rounds make up the row
    samples_foreign_load: list[float | None] = field(default_factory=list)  # per sample
    samples_canary_rel: list[float | None] = field(default_factory=list)  # per sample
    samples_process: list[int] = field(default_factory=list)  # per sample

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": str(self.verdict)}

    def rescaled(self, factor: float) -> LoadSummary:
        """The canary figures against another best, ``factor`` times faster than this one's."""
        return replace(self, canary_rel=None if self.canary_rel is None else self.canary_rel * factor,
                       samples_canary_rel=[None if c is None else c * factor
                                           for c in self.samples_canary_rel])


@dataclass(frozen=True)
class Speedup:
    """Eager's time over this backend's, the median of per-round ratios, with its 95% CI."""

    speedup_vs_eager: float = field(metadata=NON_NEGATIVE)
    speedup_ci95_low: float = field(metadata=NON_NEGATIVE)
    speedup_ci95_high: float = field(metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class RowAgreement:
    """Agreement with the float64 reference at the row's shape, over every check there."""

    max_abs_err: float = field(metadata=NON_NEGATIVE)
    max_rel_err: float = field(metadata=NON_NEGATIVE)
    agrees: bool
    # the same input twice: bitwise-identical outputs, and the largest difference if not
    deterministic: bool | None = None
    repeat_max_diff: float | None = field(default=None, metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class ColdStart:
    """Preparing the backend, its first call, and the memory it took."""

    # spawning the backend's worker, when isolated
    isolation_startup_s: float | None = field(default=None, metadata=NON_NEGATIVE)
    prepare_s: float | None = field(default=None, metadata=NON_NEGATIVE)
    first_call_ms: float | None = field(default=None, metadata=NON_NEGATIVE)
    peak_rss_mb: float | None = None
    prepare_rss_mb: float | None = None
    infer_rss_mb: float | None = None
    cuda_max_mem_mb: float | None = None
    gpu_mem_growth_mb: float | None = None  # device-reported (NVML), sees ORT's CUDA arena
    gpu_mem_scope: str | None = None  # "process" or "device": what gpu_mem_growth_mb covers
    # copying one input batch to where run() wants it, and reading one output batch back
    h2d_ms: float | None = field(default=None, metadata=NON_NEGATIVE)
    d2h_ms: float | None = field(default=None, metadata=NON_NEGATIVE)


ROW_PARTS = (Identity, Outcome, TimingSummary, LoadSummary, Speedup, RowAgreement, ColdStart)
# Every documented key that is not a workload's: present on every row, null where unknown.
ROW_KEYS = tuple(f.name for part in ROW_PARTS for f in fields(part))


@dataclass(frozen=True)
class Row:
    identity: Identity
    outcome: Outcome = Outcome()
    timing: TimingSummary | None = None
    load: LoadSummary | None = None
    speedup: Speedup | None = None
    agreement: RowAgreement | None = None
    cold_start: ColdStart | None = None
    workload: Mapping[str, Any] = field(default_factory=dict)  # the workload's own fields
    diagnostics: Mapping[str, Any] = field(default_factory=dict)  # the backend's own facts

    def __post_init__(self) -> None:
        clash = sorted(set(self.workload) & (set(ROW_KEYS) | {"diagnostics"}))
        if clash:
            raise ValueError(f"workload fields {clash} would overwrite documented row keys")

    @property
    def backend(self) -> str:
        return self.identity.backend

    @property
    def failed(self) -> bool:
        """Broke, or answered wrongly: either fails the run."""
        return self.outcome.status is Status.FAILED or (
            self.agreement is not None and not self.agreement.agrees)

    def to_dict(self) -> dict:
        data = {**dict.fromkeys(ROW_KEYS), "samples_ms": []}
        for part in (self.identity, self.outcome, self.timing, self.speedup, self.agreement,
                     self.cold_start):
            if part is not None:
                data.update(asdict(part))
        if self.load is not None:
            data.update(self.load.to_dict())
        data["status"] = str(self.outcome.status)
        data.update(self.workload)
        data["diagnostics"] = dict(self.diagnostics)
        return data


@dataclass(frozen=True)
class Check:
    """One agreement check of one backend on one input batch."""

    backend: str = field(metadata=between(1))
    batch_size: int = field(metadata=COUNT)
    seq_len: int = field(metadata=COUNT)
    inputs: str  # "sine" or "random"
    max_abs_err: float = field(metadata=NON_NEGATIVE)
    max_rel_err: float = field(metadata=NON_NEGATIVE)
    agrees: bool
    mode: str = DEFAULT_MODE  # the workload whose check this is
    dtype: str = "fp32"
    # set where the same input was run twice (the random inputs of every shape); the repeat
    # is judged against the reference too, and counts in ``agrees`` and the errors
    deterministic: bool | None = None
    repeat_max_diff: float | None = None
    model_sha256: str | None = None  # the model checked: its weights file's SHA-256

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RunVerdict:
    """The run's verdict: valid only when every timed row is, and the host held the
    machine's speed steady through the run."""

    verdict: Verdict
    rows_contended: int
    max_foreign_cores: float  # the threshold a round was judged against
    max_set_aside: float
    max_canary_spread: float  # the spread above which the run is unsteady
    # The canary's spread over every kept timed round of the run (None: too few rounds to
    # judge), how many rounds that was, and the canary time (s) the rows' are relative to.
    canary_spread: float | None
    canary_rounds: int
    canary_best_s: float | None
    busiest: tuple[ProcessShare, ...] = ()  # the busiest processes outside the run
    canary_threads: int | None = None  # the threads the canary ran on

    @classmethod
    def of(cls, rows: tuple[Row, ...], max_foreign_cores: float, max_set_aside: float,
           max_canary_spread: float, canary_best_s: float | None,
           busiest: tuple[ProcessShare, ...] = (), canary_threads: int | None = None
           ) -> RunVerdict | None:
        """``rows``' canaries must all be relative to ``canary_best_s``. None when no row
        was timed (every backend failed before its rounds): there is nothing to judge."""
        verdicts = [r.load.verdict for r in rows if r.load is not None]
        if not verdicts:
            return None
        contended = sum(v is Verdict.CONTENDED for v in verdicts)
        canaries = pooled_canaries(r.load.samples_canary_rel for r in rows if r.load is not None)
        spread = canary_spread(canaries)
        verdict = Verdict.CONTENDED if contended else \
            Verdict.UNCHECKED if Verdict.UNCHECKED in verdicts else \
            Verdict.UNSTEADY if past_limit(spread, max_canary_spread) else Verdict.VALID
        return cls(verdict, contended, max_foreign_cores, max_set_aside, max_canary_spread,
                   spread, len(canaries), canary_best_s, busiest, canary_threads)

    @property
    def host_unsteady(self) -> bool:
        """The canary's spread passed its limit, whatever came first in the verdict (a
        contended run may also have been timed on an unsteady host)."""
        return past_limit(self.canary_spread, self.max_canary_spread)

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": str(self.verdict)}


@dataclass(frozen=True)
class RunResult:
    environment: dict
    scenario: dict
    model: dict
    tolerance: dict
    rows: tuple[Row, ...]
    checks: tuple[Check, ...]
    verdict: RunVerdict | None = None

    @property
    def contended(self) -> bool:
        return self.verdict is not None and self.verdict.verdict is Verdict.CONTENDED

    @property
    def unsteady(self) -> bool:
        return self.verdict is not None and self.verdict.host_unsteady

    @property
    def failed(self) -> bool:
        """A disagreement or a failed backend makes the whole run fail."""
        return any(r.failed for r in self.rows) or any(not c.agrees for c in self.checks)

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "environment": self.environment,
            "scenario": self.scenario,
            "model": self.model,
            "tolerance": self.tolerance,
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "rows": [r.to_dict() for r in self.rows],
            "checks": [c.to_dict() for c in self.checks],
        }


def merge_models(models: list[dict]) -> dict:
    """The results' ``model`` block: the one model's record, or ``{"models": [...]}``, each
    model once, where the runs covered several."""
    unique = list({m.get("weights_sha256"): m for m in models}.values())
    return unique[0] if len(unique) == 1 else {"models": unique}


BackendIdentity = tuple[str, str, str | None]  # backend, dtype, the model's weights SHA-256


def backend_identity(row_or_check: dict) -> BackendIdentity:
    return (row_or_check["backend"], row_or_check.get("dtype", "fp32"),
            row_or_check.get("model_sha256"))


def wrong_answers(result: dict) -> set[BackendIdentity]:
    """Every backend (at a dtype, for a model) that answered wrongly anywhere in a results
    dict: a failed row, or a failed agreement check at any shape, timed or not. A row's own
    ``agrees`` covers only its shape; a run fails on any of these."""
    rows = (r for r in result.get("rows", [])
            if r.get("status") == "failed" or r.get("agrees") is False)
    checks = (c for c in result.get("checks", []) if not c.get("agrees", True))
    return {backend_identity(x) for x in (*rows, *checks)}


def models_of(result: dict) -> list[dict]:
    """Every model record of a results dict, whether it covered one model or several."""
    block = result.get("model") or {}
    return list(block["models"]) if "models" in block else [block] if block else []


def for_model(result: dict, sha256: str) -> dict:
    """The rows and checks of one model, and its record as the ``model`` block; a results
    dict with the same shape as a run of that model alone."""
    record = next((m for m in models_of(result) if m.get("weights_sha256") == sha256), {})
    return {**result, "model": record,
            "rows": [r for r in result.get("rows", []) if r.get("model_sha256") == sha256],
            "checks": [c for c in result.get("checks", []) if c.get("model_sha256") == sha256]}


def _relative_to(row: Row, own_best_s: float | None, best_s: float | None) -> Row:
    """``row`` with its canaries relative to ``best_s`` instead of its own run's best."""
    if row.load is None or not own_best_s or not best_s:
        return row
    return replace(row, load=row.load.rescaled(own_best_s / best_s))


def merge_results(results: list[RunResult]) -> RunResult:
    """One result from the runs of a scenario's models x devices x dtypes: rows and checks
    side by side (each row carries its model, device and dtype), the first run's context,
    every model and every tolerance. Every row's canary is made relative to the fastest of
    all the runs, so that a host that changed speed between them shows."""
    first = results[0]
    tolerance = dict(first.tolerance)
    if len({r.tolerance["dtype"] for r in results}) > 1:
        tolerance["by_dtype"] = {r.tolerance["dtype"]: r.tolerance for r in results}
    best = min((r.verdict.canary_best_s for r in results if r.verdict and r.verdict.canary_best_s),
               default=None)
    rows = tuple(_relative_to(row, r.verdict.canary_best_s if r.verdict else None, best)
                 for r in results for row in r.rows)
    verdict = None
    if first.verdict is not None:
        busiest: dict[int, ProcessShare] = {}
        for process in (p for r in results if r.verdict for p in r.verdict.busiest):
            if process.pid not in busiest or process.cores > busiest[process.pid].cores:
                busiest[process.pid] = process
        verdict = RunVerdict.of(rows, first.verdict.max_foreign_cores, first.verdict.max_set_aside,
                                first.verdict.max_canary_spread, best,
                                tuple(sorted(busiest.values(), key=lambda p: -p.cores)[:10]),
                                first.verdict.canary_threads)
    return RunResult(environment=first.environment, scenario=first.scenario,
                     model=merge_models([r.model for r in results]), tolerance=tolerance, rows=rows,
                     checks=tuple(c for r in results for c in r.checks), verdict=verdict)

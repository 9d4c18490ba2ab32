"""The workload contract: what a run checks and times, on one side or the other of a handle.

A workload is a small frozen value. It travels to the backend's worker process the way a
backend class does, and its two sides meet there only through a handle:

* in the parent, ``check`` asks the handle for outputs and judges them against the float64
  reference;
* where the backend runs, ``outputs`` uses the prepared sessions.

How its rows are measured is one of two kinds:

* a ``TimedWorkload`` has timers (``timer_payloads`` in the parent, ``timer`` where the
  backend runs), which the engine times round-robin across every backend, and turns their
  measurements into its own fields of a row (``row_fields``);
* an ``AloneWorkload`` measures each backend on its own (``measure``): a measurement that
  needs the machine to itself, such as a load generator driving a server, cannot be
  interleaved. Each of its measurements is a request executed where the backend runs, and
  the engine accounts for the machine's load over each one as it does over a round.

The engine knows no workload by name: adding one is a file here and a line in
``harness.workloads.WORKLOADS``.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from backends.base import Session
from backends.reference import ReferenceModel
from harness.core.agreement import Agreement, TaskBudget, Tolerance, compare, worst
from harness.core.data import random_batch, sine_batch
from harness.core.errors import InputError
from harness.core.model import ModelConfig, validate_input
from harness.core.results import Check, RowFigure
from harness.core.targets import DEFAULT_MODE
from harness.core.timing import Measurement, Timer, TimerLike
from harness.workloads.columns import Column

Shape = tuple[int, int]  # (batch_size, seq_len)
PRIMARY = "main"  # the role of the timer whose figures are the row's


@dataclass(frozen=True)
class Sessions:
    """The prepared sessions of one backend, where the backend runs."""

    window: Session
    step: Session | None
    input_size: int
    state_shape: tuple[int, int]  # (num_layers, hidden_size) of the step model's states

    def require_step(self) -> Session:
        if self.step is None:
            raise RuntimeError("this handle was opened without a step model")
        return self.step

    def window_timer(self, batches: list[np.ndarray]) -> Timer:
        """Times one forward pass per call, inputs placed on the device beforehand."""
        session = self.window
        inputs = [session.to_native(validate_input(b, self.input_size)) for b in batches]
        return Timer(session.run, inputs, sync=session.synchronize,
                     cuda_events=session.uses_current_cuda_stream)


class Task(Protocol):
    """Anything a handle can run where the backend lives: a workload, or a probe."""

    def outputs(self, sessions: Sessions, payload: Any) -> Any: ...


class HandleLike(Protocol):
    def outputs(self, task: Task, payload: Any, timeout_s: float | None = None) -> Any: ...
    def timer(self, task: TimedWorkload, role: str, payload: Any) -> TimerLike: ...


class Probe(Protocol):
    """One worker process of a backend, as an ``AloneWorkload`` measures it: ``run`` executes
    the workload's ``outputs`` on ``payload`` where the backend lives, the machine's load
    accounted over the call; ``timeout_s`` may extend the handle's limit for a long call."""

    def run(self, payload: Any, timeout_s: float | None = None) -> Any: ...


class CheckContext:
    """The parent's side of every agreement check in a run.

    Inputs are seeded by what they are for (purpose, kind, shape), so every backend is
    checked on the same inputs and the float64 reference computes each answer once. Within
    one backend every call still gets inputs of its own, so a backend that answers with a
    cached output is caught. Seeds start above the run's seed, which the first call and the
    timers use.
    """

    def __init__(self, reference: ReferenceModel, tolerance: Tolerance, input_size: int,
                 seed: int, check_shapes: list[Shape], timed_shapes: list[Shape],
                 task_budget: TaskBudget | None = None) -> None:
        self.reference = reference
        self.tolerance = tolerance
        self.task_budget = task_budget  # None: the run's dtype is not judged on the task
        self.input_size = input_size
        self.check_shapes = check_shapes  # the one-window check's grid
        self.timed_shapes = timed_shapes
        self._seed = seed
        self._seeds: dict[Hashable, int] = {}
        self._memo: dict[Hashable, Any] = {}

    def at(self, check_shapes: list[Shape]) -> CheckContext:
        """The same context (inputs, seeds, the reference's answers) checking other shapes."""
        other = copy.copy(self)
        other.check_shapes = list(check_shapes)
        return other

    def seed(self, key: Hashable) -> int:
        return self._seed + 1 + self._seeds.setdefault(key, len(self._seeds))

    def inputs(self, purpose: str, kind: str, shape: Shape) -> np.ndarray:
        """Real sine windows (``kind`` "sine", one channel per input, as the harness trains
        on) or standard-normal ones ("random")."""
        batch, seq_len = shape
        seed = self.seed((purpose, kind, shape))
        if kind == "sine":
            return sine_batch(batch, seq_len, seed, self.input_size)
        return random_batch(batch, seq_len, self.input_size, seed)

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per run for ``key``: the reference's answers are slow."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def compare(self, actual: np.ndarray, expected: np.ndarray) -> Agreement:
        return compare(actual, expected, self.tolerance)


@dataclass(frozen=True)
class Checked:
    """What checking one backend found: its checks, and per shape the row fields learnt."""

    checks: list[Check]
    fields: dict[Shape, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class RowContext:
    model: ModelConfig
    peak_gflops: float | None


def setting(default: Any, check: Callable[[Any], bool], expected: str) -> Any:
    """A workload's setting: a dataclass field whose value ``check`` accepts, described in
    words as ``expected``; scenario files and flags are checked against it."""
    return field(default=default, metadata={"check": check, "expected": expected})


def positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class SettingError(InputError):
    """A workload setting with a value it does not accept, or one it does not have."""

    def __init__(self, key: str, expected: str, got: Any) -> None:
        super().__init__(f"{key!r} must be {expected}, got {got!r}")
        self.key, self.expected, self.got = key, expected, got


def settings_of(cls: type[Workload]) -> dict[str, str]:
    """Setting name -> what it accepts, in words."""
    return {f.name: f.metadata["expected"] for f in fields(cls) if "check" in f.metadata}


def make_workload(cls: type[Workload], params: Mapping[str, Any]) -> Workload:
    """The workload with ``params`` as its settings, each checked first."""
    known = {f.name: f for f in fields(cls) if "check" in f.metadata}
    for key, value in params.items():
        if key not in known:
            allowed = ", ".join(known) or "none"
            raise SettingError(key, f"a setting of mode {cls.name!r} (its settings: {allowed})",
                               value)
        if not known[key].metadata["check"](value):
            raise SettingError(key, known[key].metadata["expected"], value)
    return cls(**params)


def is_number(value: Any) -> bool:
    """A finite int or float (TOML has inf and nan; no setting means either)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def at_most(check: Callable[[Any], bool], limit: float) -> Callable[[Any], bool]:
    """``check``, and no more than ``limit``."""
    return lambda value: check(value) and value <= limit


# LoadGen, the dynamic batcher and the worker pipes take times as 64-bit nanosecond counts,
# and a test of a day is far beyond any run: durations and bounds stop there.
DAY_S = 86_400
# Steps and windows past these would hold more than the machine has (a forecast of a million
# steps at batch 1024 is 8 GB), long before anything useful.
MAX_STEPS = 100_000


def positive_number(value: Any) -> bool:
    return is_number(value) and value > 0


def non_negative_number(value: Any) -> bool:
    return is_number(value) and value >= 0


def is_bool(value: Any) -> bool:
    return isinstance(value, bool)


class Workload(ABC):
    """What every workload has: its checks, its columns, its answer where the backend runs."""

    name: ClassVar[str]
    summary: ClassVar[str]
    needs_step_model: ClassVar[bool] = False
    # The check mode whose errors a row shows as max_abs_err and max_rel_err.
    error_mode: ClassVar[str] = DEFAULT_MODE
    # How the checks table labels this workload's own checks (None: not shown apart).
    check_label: ClassVar[str | None] = None
    # The figure its tables rank rows by within a shape, best first; None: the scenario's
    # focus decides.
    rank_by: ClassVar[RowFigure | None] = None
    # The figure `compare` compares its rows by, where two runs' samples are not taken under
    # the same conditions; None: the samples are compared.
    compare_by: ClassVar[RowFigure | None] = None
    # The frozen dataclasses its own fields of a row are built from; a results file's rows
    # of this mode are held to them when read back.
    row_records: ClassVar[tuple[type, ...]] = ()
    # Whether it writes files of its own (LoadGen's logs) into the run's files folder.
    keeps_files: ClassVar[bool] = False

    # -- the parent's side -------------------------------------------------------------
    @abstractmethod
    def check_shapes(self, timed: list[Shape]) -> list[Shape]:
        """The shapes of the one-window agreement check."""

    @abstractmethod
    def check(self, ctx: CheckContext, handle: HandleLike, backend: str, dtype: str) -> Checked:
        """``backend``'s agreement with the float64 reference; ``dtype`` labels the checks."""

    @abstractmethod
    def columns(self, focus: str) -> tuple[Column, ...]:
        """The table's columns for rows of this workload; ``focus`` is the scenario's."""

    def unavailable_reason(self) -> str | None:
        """None if this workload can run here, else a one-line reason (with the install
        line for a missing library); every row of a run of it then says so."""
        return None

    def intra_op_threads(self, cores: int) -> int:
        """The backends' intra-op threads where the command does not say (``--threads``):
        every physical core."""
        return cores

    def refuse_model(self, model: ModelConfig) -> None:  # noqa: B027 - most accept any model
        """Raise InputError when this workload cannot run ``model`` at all."""

    def tolerance_record(self, tolerance: Tolerance) -> dict:
        """What the results' tolerance block adds for this workload."""
        return {}

    def caption(self, tolerance: dict) -> str | None:
        """A line under the checks table explaining this workload's own band."""
        return None

    # -- where the backend runs ----------------------------------------------------------
    @abstractmethod
    def outputs(self, sessions: Sessions, payload: Any) -> Any:
        """The backend's answer to ``payload``, as float64 arrays."""


class TimedWorkload(Workload):
    """A workload whose timers the engine times round-robin across every backend."""

    primary: ClassVar[str] = PRIMARY  # the timer role whose figures are the row's

    @abstractmethod
    def timer_payloads(self, shape: Shape, seed: int, n_inputs: int, input_size: int
                       ) -> dict[str, Any]:
        """Role -> what that timer runs on at ``shape`` for a model of ``input_size``
        inputs. The primary role is the row's."""

    @abstractmethod
    def row_fields(self, shape: Shape, measured: Mapping[str, Measurement],
                   context: RowContext) -> dict:
        """The workload's own fields of a row, from its timers' measurements."""

    @abstractmethod
    def timer(self, sessions: Sessions, role: str, payload: Any) -> Timer:
        """A timer for ``role`` at the payload's shape (where the backend runs)."""


@dataclass(frozen=True)
class AloneContext:
    """What an ``AloneWorkload`` knows of the backend it measures, beside its probes."""

    check: CheckContext  # the run's reference, tolerance, seeded inputs and memo
    backend: str
    device: str
    dtype: str  # the dtype the backend computes in, as its checks are labelled
    files_dir: Path | None  # where the workload may keep files of its own; None: nowhere


@dataclass(frozen=True)
class Alone:
    """What measuring one backend on its own found at one shape."""

    samples_s: tuple[float, ...]  # what the clock saw, in seconds; the workload says of what
    processes: tuple[int, ...]  # which worker process each sample came from
    fields: dict  # the workload's own fields of the row
    stop_reason: str  # why measuring stopped, in the workload's words
    checks: tuple[Check, ...] = ()  # answers checked while it measured


class AloneWorkload(Workload):
    """A workload that measures each backend on its own, through a probe per worker process."""

    @abstractmethod
    def measure(self, ctx: AloneContext, probes: Sequence[Probe], shape: Shape) -> Alone:
        """Measure one backend at ``shape``, through its worker processes' probes."""


def window_payloads(shape: Shape, seed: int, n_inputs: int, input_size: int) -> list[np.ndarray]:
    """The inputs every timer rotates through: real sine windows, seeded per run."""
    batch, seq_len = shape
    return [sine_batch(batch, seq_len, seed + 1000 + i, input_size) for i in range(n_inputs)]


def one_window_check(ctx: CheckContext, handle: HandleLike, task: Task, backend: str,
                     dtype: str) -> list[Check]:
    """The forward pass on sine and random windows at every shape, against the reference.

    Every random input is run twice: ``deterministic`` says whether the two answers are
    bitwise equal, and the repeat is judged against the reference as well (on CUDA the
    first call at a new shape records a graph and only the repeat replays it)."""
    checks = []
    for shape in ctx.check_shapes:
        for kind in ("sine", "random"):
            x = ctx.inputs("window", kind, shape)
            expected = ctx.memo(("window", kind, shape), lambda x=x: ctx.reference.forward(x))
            y = handle.outputs(task, x)
            result = ctx.compare(y, expected)
            repeat = None
            if kind == "random":
                again = handle.outputs(task, x)
                second = ctx.compare(again, expected)
                repeat = (_bitwise_equal(y, again), _max_diff(y, again))
                result = Agreement(worst((result.max_abs_err, second.max_abs_err)),
                                   worst((result.max_rel_err, second.max_rel_err)),
                                   result.agrees and second.agrees)
            checks.append(Check(backend, *shape, kind, result.max_abs_err, result.max_rel_err,
                                result.agrees, dtype=dtype,
                                deterministic=None if repeat is None else repeat[0],
                                repeat_max_diff=None if repeat is None else repeat[1]))
    return checks


def _bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    with np.errstate(invalid="ignore"):
        return float(np.max(np.abs(a - b), initial=0.0))

"""The task check: for dtypes below fp32, does the model still do its job?

An elementwise band says how far a backend's numbers are from the float64 reference; for
int8 that distance is the scheme's, and no tolerance says whether it matters. This check
asks the task instead, at each timed shape: sine windows whose true continuation is known,
forecast ``TASK_HORIZON`` steps by feeding predictions back, calls made at the row's batch
size (dynamic int8 quantises each call's activations together, so its error depends on
what is batched). Its first step is the next-step prediction. Both mean squared errors
against the true sine are compared with the fp32 model's on the same windows, computed
exactly (the float64 reference on the fp32 weights); the row agrees only if neither ratio
exceeds the run's ``TaskBudget``.

It lives with the workloads and joins any of them (``judge``): the runner passes on the run's
budget (None for fp32) without knowing the dtypes it applies to or the workload it joins.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from backends.base import feedback_rollout
from harness.core.agreement import TaskBudget
from harness.core.data import sine_forecast_batch
from harness.core.model import validate_input
from harness.core.results import Check
from harness.core.targets import JUDGED_ON_TASK
from harness.workloads.base import CheckContext, Checked, HandleLike, Sessions, Workload
from harness.workloads.columns import Column, fmt

TASK_WINDOWS = 64  # at least this many windows per shape, so one window's luck does not decide
TASK_HORIZON = 50  # steps forecast; the first is the next-step prediction
MODE = "task"  # the checks' mode


@dataclass(frozen=True)
class ChunkedForecast:
    """Where the backend runs: forecast every window, ``batch`` windows per call."""

    batch: int
    horizon: int

    def outputs(self, sessions: Sessions, windows: np.ndarray) -> np.ndarray:
        windows = validate_input(windows, sessions.input_size)
        return np.concatenate([sessions.window.rollout(windows[i:i + self.batch], self.horizon)
                               for i in range(0, len(windows), self.batch)])


@dataclass(frozen=True)
class TaskScore:
    """Mean squared errors against the true sine: next step and whole forecast."""

    next_mse: float
    rollout_mse: float

    @classmethod
    def of(cls, forecast: np.ndarray, truth: np.ndarray) -> TaskScore:
        with np.errstate(invalid="ignore", over="ignore"):
            return cls(float(np.mean((forecast[:, 0] - truth[:, 0]) ** 2)),
                       float(np.mean((forecast - truth) ** 2)))


@dataclass(frozen=True)
class TaskFields:
    """What the task check adds to a row computing below fp32: its forecasts' errors against
    the true sine, beside the fp32 model's, and whether the cost is within the budget."""

    task_mse: float
    task_mse_fp32: float
    accuracy_cost: float  # task_mse / task_mse_fp32
    task_rollout_mse: float
    task_rollout_mse_fp32: float
    rollout_accuracy_cost: float  # task_rollout_mse / task_rollout_mse_fp32
    task_agrees: bool


def windows_for(batch: int) -> int:
    """Whole calls at the row's batch size, at least TASK_WINDOWS windows."""
    return math.ceil(TASK_WINDOWS / batch) * batch


def judge(workload: Workload, ctx: CheckContext, handle: HandleLike, backend: str,
          dtype: str) -> Checked:
    """What the runner asks of a backend: the workload's own check, and the task check where
    the run has a task budget and the backend computes below fp32."""
    own = workload.check(ctx, handle, backend, dtype)
    # A backend computing in fp32 or above (eager as the fp32 baseline of an int8 run, the
    # float64 reference) is the model the task is measured against.
    if ctx.task_budget is None or dtype not in JUDGED_ON_TASK:
        return own
    task = task_check(ctx, handle, ctx.task_budget, backend, dtype)
    fields = {shape: {**own.fields.get(shape, {}), **task.fields.get(shape, {})}
              for shape in {*own.fields, *task.fields}}
    return Checked([*own.checks, *task.checks], fields)


def record(budget: TaskBudget | None) -> dict:
    """What the results' tolerance block says of the task check."""
    if budget is None:
        return {}
    return {"task": {**budget.to_dict(), "windows": TASK_WINDOWS, "horizon": TASK_HORIZON}}


def task_check(ctx: CheckContext, handle: HandleLike, budget: TaskBudget, backend: str,
               dtype: str) -> Checked:
    """The task check at every timed shape: a check each, and the row fields it learnt."""
    checks, fields = [], {}
    for batch, seq_len in ctx.timed_shapes:
        n = windows_for(batch)
        # Seeded by seq_len alone: a larger count's windows extend a smaller one's, so the
        # fp32 model's forecasts are computed once per length, for the most windows needed.
        most = max(windows_for(b) for b, s in ctx.timed_shapes if s == seq_len)
        windows, truth, fp32 = ctx.memo((MODE, seq_len, most), lambda s=seq_len, m=most: _fp32(ctx, m, s))
        windows, truth, fp32 = windows[:n], truth[:n], fp32[:n]
        forecast = handle.outputs(ChunkedForecast(batch, TASK_HORIZON), windows)
        score, base = TaskScore.of(forecast, truth), TaskScore.of(fp32, truth)
        cost, rollout_cost = score.next_mse / base.next_mse, score.rollout_mse / base.rollout_mse
        agrees = budget.allows(cost) and budget.allows(rollout_cost)
        with np.errstate(invalid="ignore"):
            err = float(np.max(np.abs(forecast - truth), initial=0.0))
        checks.append(Check(backend, batch, seq_len, "sine", err,
                            err / max(float(np.abs(truth).max()), np.finfo(float).tiny), agrees,
                            mode=MODE, dtype=dtype))
        fields[(batch, seq_len)] = asdict(TaskFields(
            score.next_mse, base.next_mse, cost, score.rollout_mse, base.rollout_mse,
            rollout_cost, agrees))
    return Checked(checks, fields)


def _fp32(ctx: CheckContext, n: int, seq_len: int) -> tuple[np.ndarray, ...]:
    windows, truth = sine_forecast_batch(n, seq_len, TASK_HORIZON, ctx.seed((MODE, seq_len)),
                                         ctx.input_size)
    return windows, truth, feedback_rollout(ctx.reference.forward, windows, TASK_HORIZON)


def table_columns(workload: Workload, rows: list[dict], focus: str) -> tuple[Column, ...]:
    """The workload's columns, with the task's before the notes where rows carry them."""
    columns = workload.columns(focus)
    if not any(row.get("accuracy_cost") is not None for row in rows):
        return columns
    return (*columns[:-1], TASK_MSE, ACCURACY_COST, columns[-1])


def _cost(row: dict) -> str:
    cost, rollout = row.get("accuracy_cost"), row.get("rollout_accuracy_cost")
    if cost is None:
        return "—"
    return f"{fmt(cost, '.2f', '×')} / {fmt(rollout, '.2f', '×')}"


def _cost_tone(row: dict) -> str | None:
    agrees = row.get("task_agrees")
    return None if agrees is None else "ok" if agrees else "bad"


# Shown where rows were judged on the task: their MSE against the true sine over the fp32
# model's, next step / whole forecast.
ACCURACY_COST = Column("accuracy cost (1-step / rollout)", "right", _cost, tone=_cost_tone)
TASK_MSE = Column("task MSE", "right", lambda r: fmt(r.get("task_mse"), ".2e"))


def caption(tolerance: dict) -> str | None:
    """The line under the checks table that states the budget, where one applied."""
    budgets = {b["max_mse_ratio"] for t in (tolerance, *tolerance.get("by_dtype", {}).values())
               if (b := t.get("task"))}
    if not budgets:
        return None
    ratios = ", ".join(f"{r:g}" for r in sorted(budgets))
    return (f"task budget: MSE against the true sine, next step and over a {TASK_HORIZON}-step "
            f"forecast, at most {ratios}× the fp32 model's on the same windows")

"""How results become tables, for every format alike: which columns (the workload's own),
which rows in which order, the agreement summary, the captions.

The formats (console, Markdown, HTML) differ only in how they draw these cells.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import inf

from harness.core.load import past_limit
from harness.core.model import ModelConfig
from harness.core.results import RowFigure, models_of
from harness.core.targets import DEFAULT_MODE, REFERENCE_DTYPE
from harness.workloads import WORKLOADS, drawn_as, task
from harness.workloads.base import Workload
from harness.workloads.columns import Column


def workload_of(mode: str, workloads: Mapping[str, type[Workload]] = WORKLOADS) -> Workload:
    """The workload that draws rows of ``mode``."""
    return drawn_as(mode, workloads)()


Workloads = Mapping[str, type[Workload]]


def columns_for(rows: list[dict], focus: str = "median",
                workloads: Workloads = WORKLOADS) -> tuple[Column, ...]:
    """The columns of one table: its rows' workload's, shaped by the scenario's focus."""
    mode = rows[0].get("mode", DEFAULT_MODE) if rows else DEFAULT_MODE
    return task.table_columns(workload_of(mode, workloads), rows, focus)


MEDIAN = RowFigure("median_ms")
BY_FOCUS = {"median": MEDIAN, "tail": RowFigure("p99_ms"),
            "throughput": RowFigure("throughput_seq_s", higher_is_better=True)}


def sort_rows(rows: list[dict], by: RowFigure = MEDIAN) -> list[dict]:
    """Group by shape; within a shape the best first by ``by``, then unavailable and failed
    rows."""
    sign = -1.0 if by.higher_is_better else 1.0
    return sorted(rows, key=lambda r: (r["seq_len"], r["batch_size"], r.get(by.key) is None,
                                       sign * (r.get(by.key) or 0.0)))


def focus(result: dict) -> str:
    return result.get("scenario", {}).get("focus", "median")


_SIZES = tuple(ModelConfig().to_dict())


def model_label(row: dict) -> str:
    """The model a row or check was measured on: its sizes and the start of its weights'
    SHA-256 (``h128 L2 · 3f9a1c2e``)."""
    sizes = {k: row[k] for k in _SIZES if row.get(k) is not None}
    sha = row.get("model_sha256")
    label = ModelConfig(**sizes).label if sizes else "model"
    return f"{label} · {sha[:8]}" if sha else label


def several_models(items: list[dict]) -> bool:
    """Whether rows (or checks) of more than one model are among ``items``."""
    return len({item.get("model_sha256") for item in items}) > 1


def by_scenario(result: dict, workloads: Workloads = WORKLOADS) -> list[tuple[str, list[dict]]]:
    """Rows grouped into one table per scenario (and workload, and model where the run
    covered several), each sorted best first by its workload's ranking, else by the
    scenario's focus (fastest median by default)."""
    default = result.get("scenario", {}).get("name", "")
    rows = result.get("rows", [])
    per_model = several_models(rows)
    groups: dict[str, list[dict]] = {}
    for row in rows:
        name = row.get("scenario") or default
        mode = row.get("mode", DEFAULT_MODE)
        if mode != DEFAULT_MODE:
            name = f"{name} ({mode})"
        if per_model:
            name = f"{name} · {model_label(row)}"
        groups.setdefault(name, []).append(row)
    by_focus = BY_FOCUS.get(focus(result), MEDIAN)
    return [(name, sort_rows(rows, workload_of(rows[0].get("mode", DEFAULT_MODE), workloads).rank_by
                             or by_focus))
            for name, rows in groups.items()]


def shape_breaks(rows: list[dict]) -> list[bool]:
    """For each sorted row, whether it starts a new shape (a section break in a table)."""
    shapes = [(r["batch_size"], r["seq_len"]) for r in rows]
    return [i > 0 and shapes[i] != shapes[i - 1] for i in range(len(shapes))]


def _check_label(mode: str, workloads: Workloads) -> str | None:
    workload = workloads.get(mode)
    return workload.check_label if workload else mode


@dataclass(frozen=True)
class CheckLine:
    """The checks of one backend (and dtype, and kind of check)."""

    label: str
    passed: int
    total: int
    max_abs_err: float | None  # None: some check had no finite error
    max_rel_err: float | None
    shapes: tuple[tuple[int, int], ...]

    @property
    def all_passed(self) -> bool:
        return self.passed == self.total

    def cells(self) -> list[str]:
        return [self.label, f"{self.passed}/{self.total}",
                "nan" if self.max_abs_err is None else f"{self.max_abs_err:.1e}",
                "nan" if self.max_rel_err is None else f"{self.max_rel_err:.1e}",
                ", ".join(f"{b}×{s}" for b, s in self.shapes)]


def check_summary(result: dict, workloads: Workloads = WORKLOADS) -> list[CheckLine]:
    """Per backend (and model and dtype, where several ran, and kind of check beyond the
    one-window one): checks passed, worst absolute and relative error, shapes checked."""
    all_checks = result.get("checks", [])
    several_dtypes = len({c.get("dtype", "fp32") for c in all_checks} - {REFERENCE_DTYPE}) > 1
    per_model = several_models(all_checks)
    labels = {m.get("weights_sha256"): m for m in models_of(result)}
    by_backend: dict[str, list[dict]] = {}
    for check in all_checks:
        label = check["backend"]
        if per_model:
            model = labels.get(check.get("model_sha256"), {})
            label = f"{model.get('label', 'model')} · {str(check.get('model_sha256'))[:8]} {label}"
        if several_dtypes:
            label += f" {check.get('dtype', 'fp32')}"
        kind = _check_label(check.get("mode", DEFAULT_MODE), workloads)
        if kind:
            label += f" ({kind})"
        by_backend.setdefault(label, []).append(check)
    lines = []
    for label, checks in by_backend.items():
        errs = [c["max_abs_err"] for c in checks if c["max_abs_err"] is not None]
        rels = [c["max_rel_err"] for c in checks if c["max_rel_err"] is not None]
        lines.append(CheckLine(label, sum(bool(c["agrees"]) for c in checks), len(checks),
                               max(errs) if len(errs) == len(checks) else None,
                               max(rels) if len(rels) == len(checks) else None,
                               tuple(sorted({(c["batch_size"], c["seq_len"]) for c in checks}))))
    return lines


CHECK_HEADERS = ("backend", "checks passed", "max abs err", "max rel err", "shapes (batch×seq)")


def tolerance_caption(result: dict, workloads: Workloads = WORKLOADS) -> str | None:
    tol = result.get("tolerance") or {}
    if not tol:
        return None
    lines = [f"tolerance ({t.get('dtype')}): atol {t.get('atol')}, rtol {t.get('rtol')}"
             for t in tol.get("by_dtype", {tol.get("dtype"): tol}).values()]
    modes = dict.fromkeys(r.get("mode", DEFAULT_MODE) for r in result.get("rows", []))
    lines += [line for mode in modes if (line := workload_of(mode, workloads).caption(tol))]
    if line := task.caption(tol):
        lines.append(line)
    return "; ".join(lines)


def best_throughput(result: dict) -> list[list[str]]:
    """Per backend, device and dtype: the best sequences/s over the rows that have one, and where."""
    best: dict[tuple, dict] = {}
    for row in result.get("rows", []):
        key = (row["backend"], row["device"], row["dtype"])
        seqs = row.get("throughput_seq_s")
        if seqs and (key not in best or seqs > best[key]["throughput_seq_s"]):
            best[key] = row
    ranked = sorted(best.items(), key=lambda kv: -kv[1]["throughput_seq_s"])
    return [[*key, f"{row['throughput_seq_s']:,.0f}", f"{row['batch_size']}×{row['seq_len']}"]
            for key, row in ranked]


BEST_HEADERS = ("backend", "device", "dtype", "best seq/s", "at batch×seq")


def verdict_text(result: dict) -> str | None:
    """One line: was the machine quiet and steady while the run timed, and if not, why."""
    verdict = result.get("verdict")
    if not verdict:
        return None
    threshold = (f"outside work above {verdict['max_foreign_cores']:g} cores in more than "
                 f"{verdict['max_set_aside']:.0%} of its rounds")
    if verdict["verdict"] == "valid":
        return f"verdict: valid (no timed row had {threshold}; {_steadiness(verdict)})"
    if verdict["verdict"] == "unchecked":
        return ("verdict: unchecked (the machine's load cannot be read on this system)"
                + _unsteady_too(verdict))
    if verdict["verdict"] == "unsteady":
        return (f"verdict: UNSTEADY: the host kept changing this machine's speed while the run "
                f"timed ({_steadiness(verdict)}). Speedups taken on it differ between runs by "
                "more than their CIs: rerun when the host is steady")
    busiest = ", ".join(f"pid {p['pid']} {p['name']} ({p['cores']:.2f} cores)"
                        for p in verdict.get("busiest", [])[:3] if p["cores"] >= 0.05)
    return (f"verdict: CONTENDED: {verdict['rows_contended']} timed row(s) had {threshold}; "
            f"busiest outside processes: {busiest or 'none seen (the host itself?)'}. "
            "Their figures, speedups most of all, are not to be trusted: rerun on a quiet "
            "machine" + _unsteady_too(verdict))


def _unsteady_too(verdict: dict) -> str:
    """What a verdict that says something else first adds when the host was unsteady too."""
    if not past_limit(verdict.get("canary_spread"), verdict.get("max_canary_spread", inf)):
        return ""
    return f". The host was also unsteady ({_steadiness(verdict)})"


def _steadiness(verdict: dict) -> str:
    """What the canary said of the host (results files from before it was judged: nothing)."""
    if "max_canary_spread" not in verdict:
        return "the host's steadiness not judged"
    if verdict["canary_spread"] is None:
        return f"too few rounds ({verdict['canary_rounds']}) to judge the host's steadiness"
    threads = verdict.get("canary_threads")
    on = f" on {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    return (f"the canary GEMM's upper-quartile time {verdict['canary_spread']:.3f}× its "
            f"lower-quartile over {verdict['canary_rounds']} rounds{on}; unsteady above "
            f"{verdict['max_canary_spread']:g}×")


def title(result: dict, scenario: str) -> str:
    return f"lstm-harness · {scenario} · {result.get('environment', {}).get('device_name', '')}"

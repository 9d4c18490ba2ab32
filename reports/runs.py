"""Tables about runs rather than about one run: the history list and a comparison."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from harness.core.compare import Comparison, RowChange, Significance
from harness.core.targets import DEFAULT_MODE
from harness.io.history import RunInfo
from harness.workloads.columns import dtype_label, fmt
from reports.columns import model_label, several_models


def _tests_named(tests: set[Significance]) -> str:
    """Which test gave the p column, and to which rows where both did."""
    if len(tests) == 2:
        return (f"{Significance.BOOTSTRAP.value} (rows timed in several processes), "
                f"{Significance.RANK.value} (the others)")
    return next(iter(tests)).value if tests else "no row tested"


def history_table(runs: list[RunInfo], db: str) -> Table:
    table = Table(title=f"lstm-harness history · {db}", title_justify="left")
    for header in ("id", "date", "git commit", "device", "summary"):
        table.add_column(header, justify="right" if header == "id" else "left", no_wrap=header != "summary")
    for run in runs:
        table.add_row(str(run.id), run.created_at, (run.git_commit or "—")[:10], run.device or "—",
                      Text(run.summary, style="bold red" if run.failed else ""))
    return table


def _shape(row: dict) -> str:
    mode = row.get("mode", DEFAULT_MODE)
    return f"{row['batch_size']}×{row['seq_len']}" + ("" if mode == DEFAULT_MODE else f" {mode}")


_VERDICT_STYLE = {"agreement lost": "bold red", "slower": "bold red", "faster": "green",
                  "slower, within threshold": "yellow"}


def _change_row(change: RowChange, threshold: float) -> list:
    b, n = change.base, change.new
    test, figure = change.test, change.figure
    verdict = change.verdict(threshold)
    agree = f"{_agrees(b)} → {_agrees(n)}"
    if figure is not None:
        values = [fmt(figure.base, ",.4g", f" {figure.key}"), fmt(figure.new, ",.4g", f" {figure.key}"),
                  "—" if figure.worse_by is None else f"{(figure.new / figure.base - 1) * 100:+.1f}%",
                  "—"]
    else:
        values = [fmt(b.get("median_ms"), ".3f", " ms"), fmt(n.get("median_ms"), ".3f", " ms"),
                  "—" if test is None else f"{(test.ratio - 1) * 100:+.1f}%",
                  "—" if test is None or test.p_value is None else f"{test.p_value:.2g}"]
    return [*_identity(b), *values, agree,
            Text(verdict, style=_VERDICT_STYLE.get(verdict, ""))]


def _identity(row: dict) -> list[str]:
    return [row["backend"], row["device"], dtype_label(row), _shape(row)]


def _agrees(row: dict) -> str:
    if row.get("status", "ok") != "ok":
        return row["status"]
    return {True: "✓", False: "✗", None: "—"}[row.get("agrees")]


def comparison_table(comparison: Comparison, base_label: str, new_label: str,
                     threshold: float | None) -> Table:
    gate = 0.0 if threshold is None else threshold
    table = Table(title=f"compare · base {base_label} → new {new_label}", title_justify="left")
    # A model column only where the rows are of more than one model: rows match on it.
    every = [*(c.base for c in comparison.changes), *comparison.only_base, *comparison.only_new]
    models = several_models(every)
    for header in (*(["model"] if models else []), "backend", "device", "dtype", "shape", "base",
                   "new", "Δ", "p", "agrees", "verdict"):
        table.add_column(header, justify="right" if header in ("base", "new", "Δ", "p") else "left",
                         no_wrap=True)
    lead = (lambda row: [model_label(row)]) if models else (lambda row: [])
    for change in comparison.changes:
        table.add_row(*lead(change.base), *_change_row(change, gate))
    for side, rows in (("only in base", comparison.only_base), ("only in new", comparison.only_new)):
        for row in rows:
            table.add_row(*lead(row), *_identity(row), *["—"] * 5, Text(side, style="yellow"))
    gate_text = "no gate" if threshold is None else f"gate: slower by > {threshold:.0%} and significant"
    if comparison.untrusted and threshold is not None:
        gate_text = f"gate not applied: {' and '.join(f'{side} {v}' for side, v in comparison.untrusted)}"
    by_figure = ""
    if any(c.figure for c in comparison.changes):
        by_figure = ("; rows shown with their own figure (a server's highest rate, say) are one "
                     "number a side: untested, and never gated")
    tests = {c.test.method for c in comparison.changes if c.test is not None and c.test.p_value is not None}
    table.caption = (f"Δ: the median's change; p: {_tests_named(tests)}, two-sided, "
                     f"significant at {comparison.confidence:.0%} confidence "
                     f"(p < {1 - comparison.confidence:.2g}); {gate_text}{by_figure}")
    return table

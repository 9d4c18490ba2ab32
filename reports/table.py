"""The console tables: one per scenario and mode, backend x shape, best first within each
shape; the best throughput per backend when the scenario's focus is throughput; the checks."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from reports.columns import (
    BEST_HEADERS,
    CHECK_HEADERS,
    best_throughput,
    by_scenario,
    check_summary,
    columns_for,
    focus,
    shape_breaks,
    title,
    tolerance_caption,
)


def _styled(header: str, text: str, row: dict) -> Text | str:
    if header.startswith("agrees") and row.get("agrees") is not None:
        return Text(text, style="green" if row["agrees"] else "bold red")
    if header == "drifts at" and row.get("drift_horizon") is not None:
        return Text(text, style="bold red")
    if header == "agrees" and row.get("agrees") is not None:
        return Text(text, style="green" if row["agrees"] else "bold red")
    if header == "notes" and text:
        return Text(text, style="bold red" if row.get("status") == "failed" else "yellow")
    return text


def scenario_table(result: dict, scenario: str, rows: list[dict]) -> Table:
    table = Table(title=title(result, scenario), title_justify="left")
    columns = columns_for(rows, focus(result))
    for column in columns:
        table.add_column(column.header, justify=column.justify, no_wrap=True)
    for row, new_shape in zip(rows, shape_breaks(rows), strict=True):
        if new_shape:
            table.add_section()
        table.add_row(*(_styled(c.header, c.cell(row), row) for c in columns))
    return table


def results_table(result: dict) -> Group:
    """Every scenario's table, in the order the scenarios appear in the results."""
    return Group(*(scenario_table(result, name, rows) for name, rows in by_scenario(result)))


def best_throughput_table(result: dict) -> Table:
    table = Table(title="Best throughput per backend", title_justify="left")
    for header in BEST_HEADERS:
        table.add_column(header, no_wrap=True)
    for line in best_throughput(result):
        table.add_row(*line)
    return table


def tables_for(result: dict) -> list[Table | Group]:
    """What `run` prints: the results tables, the best throughput when the scenario's focus
    is throughput, and the agreement checks."""
    best = [best_throughput_table(result)] if focus(result) == "throughput" else []
    return [results_table(result), *best, checks_table(result)]


def checks_table(result: dict) -> Table:
    """Per backend: how many agreement checks passed, and the worst error seen."""
    table = Table(title="Agreement with the float64 reference", title_justify="left")
    for header in CHECK_HEADERS:
        table.add_column(header, no_wrap=True)
    for backend, passed, *rest in check_summary(result):
        done, total = passed.split("/")
        table.add_row(backend, Text(passed, style="green" if done == total else "bold red"), *rest)
    table.caption = tolerance_caption(result)
    return table

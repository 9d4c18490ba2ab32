"""The console tables: one per scenario and mode, backend x shape, best first within each
shape; the best throughput per backend when the scenario's focus is throughput; the checks."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from harness.workloads import WORKLOADS
from harness.workloads.columns import Column
from reports.columns import (
    BEST_HEADERS,
    CHECK_HEADERS,
    Workloads,
    best_throughput,
    by_scenario,
    check_summary,
    columns_for,
    focus,
    shape_breaks,
    title,
    tolerance_caption,
    verdict_text,
)

TONES = {"ok": "green", "bad": "bold red", "warn": "yellow"}


def _styled(column: Column, row: dict) -> Text | str:
    tone = column.tone(row)
    text = column.cell(row)
    return Text(text, style=TONES[tone]) if tone else text


def scenario_table(result: dict, scenario: str, rows: list[dict],
                   workloads: Workloads = WORKLOADS) -> Table:
    table = Table(title=title(result, scenario), title_justify="left")
    columns = columns_for(rows, focus(result), workloads)
    for column in columns:
        table.add_column(column.header, justify=column.justify, no_wrap=not column.wraps,
                         min_width=24 if column.wraps else None)
    for row, new_shape in zip(rows, shape_breaks(rows), strict=True):
        if new_shape:
            table.add_section()
        table.add_row(*(_styled(c, row) for c in columns))
    return table


def results_table(result: dict, workloads: Workloads = WORKLOADS) -> Group:
    """Every scenario's table, in the order the scenarios appear in the results."""
    return Group(*(scenario_table(result, name, rows, workloads)
                   for name, rows in by_scenario(result, workloads)))


def best_throughput_table(result: dict) -> Table:
    table = Table(title="Best throughput per backend", title_justify="left")
    for header in BEST_HEADERS:
        table.add_column(header, no_wrap=True)
    for line in best_throughput(result):
        table.add_row(*line)
    return table


def tables_for(result: dict, workloads: Workloads = WORKLOADS) -> list[Table | Group]:
    """What `run` prints: the results tables, the best throughput when the scenario's focus
    is throughput, and the agreement checks."""
    best = [best_throughput_table(result)] if focus(result) == "throughput" else []
    return [results_table(result, workloads), *best, checks_table(result, workloads)]


def report(result: dict, workloads: Workloads = WORKLOADS) -> list[Table | Group | Text]:
    """What `report` shows of a results file: the results, the checks, the verdict."""
    verdict = verdict_text(result)
    return [results_table(result, workloads), checks_table(result, workloads),
            *([Text(verdict)] if verdict else [])]


def checks_table(result: dict, workloads: Workloads = WORKLOADS) -> Table:
    """Per backend: how many agreement checks passed, and the worst error seen."""
    table = Table(title="Agreement with the float64 reference", title_justify="left")
    for header in CHECK_HEADERS:
        table.add_column(header, no_wrap=True)
    for line in check_summary(result, workloads):
        label, passed, *rest = line.cells()
        table.add_row(label, Text(passed, style=TONES["ok" if line.all_passed else "bad"]), *rest)
    table.caption = tolerance_caption(result, workloads)
    return table

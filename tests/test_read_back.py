"""A results file the reader accepts is drawn by every report format, whatever it leaves null.

The reader lets any row key but those that place a row be null or absent (a figure that was
not measured); the tables, the Markdown and the HTML page must then show a dash, not raise.
Each key is left out on its own, so that no other missing key hides a cell that reads it.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict

import pytest
from rich.console import Console

from harness.core.shapes import unshaped
from harness.io.sources import ROW_IDENTITY, as_results
from harness.workloads import WORKLOADS, row_records
from harness.workloads.multi_stream import MultiStreamFields
from harness.workloads.rollout import RolloutAccuracy, RolloutSpeed
from harness.workloads.server import SearchTrial, ServerFields
from harness.workloads.serving import LoadGenFields, OneTestFields
from harness.workloads.streaming import StreamingFields
from harness.workloads.task import TaskFields
from reports.html import render_html
from reports.markdown import render_markdown
from reports.table import report
from tests.results_fixture import make_results, measured_row, samples, undeclared

LOADGEN = LoadGenFields("Server", 0.5, False, 1.0, 1024, True, None, 0.2, 0.3, 0.5, 0.9, 0.25,
                        900.0, [(1, 700), (4, 50)], 1.2, 1024, 0, "logs/p0", "5.1", {})
# Each mode's own fields, built as its workload builds them (an int8 row carries the task's).
OWN = {
    "forward": asdict(TaskFields(1e-4, 9e-5, 1.11, 2e-3, 1.9e-3, 1.05, True)),
    "rollout": {**asdict(RolloutSpeed(40_000.0)),
                **asdict(RolloutAccuracy(20, 15, 0.02, 1e-3, [1e-6 * 2 ** k for k in range(14)]
                                         + [None] * 6))},
    "streaming": asdict(StreamingFields(0.05, 0.5, 0.1, 160_000.0)),
    "server": {**asdict(LOADGEN), **asdict(ServerFields(
        5.0, 800.0, [800.0], [SearchTrial(0, 400.0, False, True, 401.0, 0.4),
                              SearchTrial(0, 800.0, False, True, 797.0, None)]))},
    "single-stream": {**asdict(LOADGEN), **asdict(OneTestFields([0.3, None]))},
    "multi-stream": {**asdict(LOADGEN), **asdict(MultiStreamFields([0.7, None], 8))},
    "offline": {**asdict(LOADGEN), **asdict(OneTestFields([9_000.0]))},
}


def every_kind_of_row() -> dict:
    """The fixture's forward rows, and two rows of every mode (forward with the task check's
    fields), each carrying its own fields."""
    results = make_results()
    eager = samples(0.5, 30, 0.02, 1)
    rows = [measured_row(backend, 8, eager * 0.9, eager, scenario=mode, mode=mode, own=own)
            for mode, own in OWN.items() for backend in ("eager", "onnxruntime")]
    results["rows"] += [json.loads(json.dumps(r.to_dict())) for r in rows]
    return results


BASE = every_kind_of_row()
OPTIONAL = sorted({key for row in BASE["rows"] for key in row} - {*ROW_IDENTITY, "status", "mode"})


def without(key: str, how: str) -> dict:
    """``BASE`` with ``key`` null in every row (``how`` "null"), absent ("absent"), or in
    turns null and absent ("both": every kind of row has two that carry each key)."""
    data = json.loads(json.dumps(BASE))
    holders = [row for row in data["rows"] if key in row]
    for index, row in enumerate(holders):
        if how == "null" or (how == "both" and index % 2 == 0):
            row[key] = None
        else:
            del row[key]
    return as_results(data, "edited.json")


def console_text(data: dict) -> str:
    console = Console(file=io.StringIO(), width=300, color_system=None, markup=False)
    for part in report(data):
        console.print(part)
    return console.file.getvalue()


def test_every_kind_of_row_is_accepted_whole_and_declares_every_key_it_carries():
    data = as_results(json.loads(json.dumps(BASE)), "whole.json")
    assert {row["mode"] for row in data["rows"]} == set(OWN) == set(WORKLOADS)
    assert undeclared(data) == set()
    text = console_text(data)
    assert "1.2 (1–4)" in text  # a serving row's mean batch and its range
    assert "1.11× / 1.05×" in text  # the task check's costs


@pytest.mark.parametrize("how", ["null", "absent"])
@pytest.mark.parametrize("key", OPTIONAL)
def test_a_row_key_left_null_or_absent_is_drawn_in_the_console_and_markdown(key, how):
    data = without(key, how)
    assert console_text(data) and render_markdown(data)


@pytest.mark.slow
@pytest.mark.parametrize("key", OPTIONAL)
def test_a_row_key_left_null_or_absent_is_drawn_in_the_html_page(key):
    assert "<table" in render_html(without(key, "both"))


def test_every_built_in_row_record_is_made_of_json_values():
    records = {record for mode in WORKLOADS for record in row_records(mode)}
    assert len(records) >= 9 and {r.__name__: unshaped(r) for r in records if unshaped(r)} == {}

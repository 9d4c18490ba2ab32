"""Console and Markdown tables on a realistic results dict, and the JSON round trip."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from harness.core.errors import InputError
from harness.core.results import SCHEMA_VERSION
from harness.io.jsonio import write_json
from harness.io.sources import as_results, is_pytest_benchmark, load_results
from harness.workloads.forward import FORWARD
from reports.columns import by_scenario, verdict_text
from reports.markdown import render_markdown
from reports.table import checks_table, results_table
from tests.results_fixture import make_results

COLUMNS = FORWARD.columns("median")


def render(data: dict) -> str:
    console = Console(file=io.StringIO(), width=250, color_system=None)
    console.print(results_table(data))
    console.print(checks_table(data))
    return console.file.getvalue()


def body_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("│")]


def test_one_table_per_scenario_fastest_first_within_each_shape():
    data = make_results(rollout=True)
    groups = by_scenario(data)
    assert [name for name, _ in groups] == ["default", "rollout (rollout)"]
    default_rows = groups[0][1]
    for batch in (1, 64):
        shape = [r for r in default_rows if r["batch_size"] == batch]
        medians = [r["median_ms"] for r in shape if r["median_ms"] is not None]
        assert medians == sorted(medians) and len(medians) == 3
        # measured rows first, then the ones that say why they were not measured
        assert [r["status"] for r in shape][-2:] == ["unavailable", "failed"]
    text = render(data)
    assert "lstm-harness · default · Fixture CPU" in text
    assert "lstm-harness · rollout (rollout) · Fixture CPU" in text


def test_table_shows_every_column_and_the_reason_of_unmeasured_rows():
    data = make_results()
    text = render(data)
    for column in COLUMNS:
        assert column.header in text
    lines = body_lines(text.split("Agreement with")[0])
    assert len(lines) == 10  # 5 rows at each of 2 shapes
    assert lines[0].split("│")[1].strip() == "onnxruntime"  # fastest at batch 1
    assert "✓ 2.0e-07" in text and "✓ 4.0e-07" in text
    assert "unavailable: torch.compile needs a C++ compiler" in text
    assert "failed: RuntimeError: boom | twice" in text
    eager = next(r for r in data["rows"] if r["backend"] == "eager" and r["batch_size"] == 1)
    eager_line = next(line for line in lines if line.split("│")[1].strip() == "eager")
    cells = [c.strip() for c in eager_line.split("│")]
    assert cells[6] == f"{eager['median_ms']:.3f}" and cells[10] == "1.00× [1.00–1.00]"


def test_round_trip_through_json_renders_the_same_table(tmp_path):
    data = make_results()
    path = write_json(tmp_path / "results.json", data)
    again = load_results(path)
    assert again["schema_version"] == SCHEMA_VERSION
    assert again["rows"][0]["samples_ms"] == data["rows"][0]["samples_ms"]
    assert render(again) == render(data)


def test_markdown_is_one_pipe_table_per_scenario_with_escaped_reasons():
    md = render_markdown(make_results(rollout=True))
    tables = [block for block in md.split("### ") if block.startswith("lstm-harness")]
    assert len(tables) == 2
    lines = [line for line in tables[0].splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 10  # header, alignment, 5 rows at each of 2 shapes
    assert all(line.count(" | ") == len(COLUMNS) - 1 for line in lines if "\\|" not in line)
    assert lines[1].startswith("| :--- |") and "---:" in lines[1]
    assert "| failed: RuntimeError: boom \\| twice |" in md
    assert "### Agreement with the float64 reference" in md and "_tolerance (fp32)" in md


def test_a_newer_schema_or_a_foreign_file_is_refused_in_one_line(tmp_path):
    with pytest.raises(InputError, match=f"schema_version <= {SCHEMA_VERSION}, got 99"):
        as_results({**make_results(), "schema_version": 99}, "x.json")
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(InputError, match="expected a harness results file"):
        load_results(path)


def test_pytest_benchmark_files_are_detected():
    bench = {"machine_info": {"node": "x"}, "benchmarks": [], "version": "5.1.0"}
    assert is_pytest_benchmark(bench) and not is_pytest_benchmark(make_results())


def test_every_row_and_check_field_is_documented_in_the_schema():
    from dataclasses import fields
    from pathlib import Path

    from harness.core.results import ROW_KEYS, Check
    from harness.workloads import WORKLOADS, row_records

    doc = (Path(__file__).resolve().parent.parent / "docs" / "results-schema.md").read_text()
    assert f"(`schema_version` {SCHEMA_VERSION})" in doc
    own = {f.name for mode in WORKLOADS for record in row_records(mode) for f in fields(record)}
    missing = [k for k in (*ROW_KEYS, "diagnostics", *(f.name for f in fields(Check)), *sorted(own))
               if f"`{k}`" not in doc]
    assert missing == []


def test_a_version_1_file_is_migrated_keeping_every_backend_fact():
    v1 = make_results()
    v1["schema_version"] = 1
    v1["environment"]["ort_providers"] = ["CPUExecutionProvider"]
    for row in v1["rows"]:
        del row["diagnostics"]
        row.update(graphs=2, graph_breaks=0, recompiles=1, exporter=None)
    data = as_results(v1, "old.json")
    assert data["schema_version"] == SCHEMA_VERSION
    assert all(r["diagnostics"] == {"graphs": 2, "graph_breaks": 0, "recompiles": 1}
               and "graphs" not in r for r in data["rows"])
    assert data["environment"]["backends"] == {"onnxruntime": {"providers": ["CPUExecutionProvider"]}}
    assert render(data) == render(make_results())


def test_a_version_3_verdict_that_judged_its_canary_says_it_ran_on_one_thread():
    judged = {"verdict": "valid", "rows_contended": 0, "max_foreign_cores": 0.4,
              "max_set_aside": 0.25, "max_canary_spread": 1.06, "canary_spread": 1.02,
              "canary_rounds": 90, "canary_best_s": 1e-4, "busiest": []}
    v3 = {**make_results(), "schema_version": 3, "verdict": judged}
    data = as_results(v3, "old.json")
    assert data["schema_version"] == SCHEMA_VERSION and data["verdict"]["canary_threads"] == 1
    assert "over 90 rounds on 1 thread;" in verdict_text(data)
    # a verdict from before the canary was judged, or none at all, gets no thread count
    unjudged = {k: v for k, v in judged.items() if "canary" not in k}
    assert "canary_threads" not in as_results({**v3, "verdict": unjudged}, "older.json")["verdict"]
    assert as_results({**make_results(), "schema_version": 3}, "x.json").get("verdict") is None

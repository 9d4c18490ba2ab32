"""A fourth workload is one file and its registration: ``tests/plugins/noisy_workload.py``
runs through the CLI, the planner, the runner, the worker processes and the reports, and
none of them names it (or any other workload)."""

from __future__ import annotations

import ast
import json
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.workloads import load_workloads
from tests.conftest import FAST
from tests.plugins.noisy_workload import NoisyWindows

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "tests.plugins.noisy_workload"
# The layers that run a workload without knowing which: none may name one.
WORKLOAD_BLIND = ["harness/engine", "harness/io", "harness/cli", "reports"]


def _string_constants(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_no_engine_report_or_cli_module_names_a_workload():
    modes = set(load_workloads([PLUGIN]))
    assert {"forward", "streaming", "rollout", "server", "noisy"} <= modes
    named = {}
    for folder in WORKLOAD_BLIND:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if hits := modes & _string_constants(path):
                named[str(path.relative_to(ROOT))] = sorted(hits)
    assert named == {}


@pytest.mark.slow  # a run end to end, two backends in worker processes
def test_a_plugin_workload_runs_end_to_end(cached, tmp_path, capsys):
    scenario = tmp_path / "noisy.toml"
    scenario.write_text('name = "noisy-sensor"\nmode = "noisy"\nsigma = 0.25\n'
                        'backends = ["eager", "onnxruntime", "reference"]\n')
    out = tmp_path / "noisy.json"
    code = main(["run", "--plugin", PLUGIN, "--scenario", str(scenario), *FAST,
                 "--out", str(out), "--no-history"])
    assert code == 0
    result = json.loads(out.read_text())
    rows = {r["backend"]: r for r in result["rows"]}
    assert set(rows) == {"eager", "onnxruntime", "reference"}
    for row in rows.values():
        assert row["mode"] == "noisy" and row["status"] == "ok" and row["agrees"] is True
        assert row["noise_sigma"] == 0.25
        assert row["windows_per_s"] == pytest.approx(1 / (row["median_ms"] / 1e3), rel=1e-6)
    assert rows["onnxruntime"]["speedup_vs_eager"] > 0
    checks = [c for c in result["checks"] if c["mode"] == "noisy"]
    assert {c["backend"] for c in checks} == set(rows) and all(c["agrees"] for c in checks)
    assert result["scenario"]["sigma"] == 0.25
    table = capsys.readouterr().out
    assert "noise σ" in table and "windows/s" in table and "noisy-sensor (noisy)" in table
    # read back, its rows are held to the fields the plugin declares
    result["rows"][0]["windows_per_s"] = "many"
    out.write_text(json.dumps(result))
    assert main(["report", "--plugin", PLUGIN, str(out)]) == 2
    assert 'windows_per_s as number, got "many"' in " ".join(capsys.readouterr().err.split())


@dataclass(frozen=True)
class Tagged:
    tags: set[str]


@dataclass(frozen=True)
class Counted:
    counts: typing.List  # noqa: UP006 - a bare List names no items to check


@dataclass(frozen=True)
class Dangling:
    where: NotDefinedAnywhere  # noqa: F821 - the annotation names nothing


@pytest.mark.parametrize("record, fragment", [
    (Tagged, "tags: set[str]"),
    (Counted, "counts: typing.List"),
    (Dangling, "an annotation that cannot be resolved (name 'NotDefinedAnywhere' is not defined)"),
    (Tagged(set()), "it is not a dataclass"),
])
def test_a_plugin_workload_whose_row_records_json_cannot_hold_is_refused(record, fragment,
                                                                          monkeypatch, capsys):
    class Tagging(NoisyWindows):
        name = "tagging"
        row_records = (record,)

    plugin = types.ModuleType("tagging_plugin")
    plugin.WORKLOADS = [Tagging]
    monkeypatch.setitem(sys.modules, "tagging_plugin", plugin)
    assert main(["report", "--plugin", "tagging_plugin", "any.json"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "plugin 'tagging_plugin': expected the row_records of workload 'tagging' to be dataclasses" in err
    assert fragment in err and "Traceback" not in err


def test_a_plugin_workloads_setting_is_validated_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("harness.cli.run.open_models", pytest.fail)  # nothing may start
    scenario = tmp_path / "noisy.toml"
    scenario.write_text('mode = "noisy"\nsigma = -1\n')
    assert main(["run", "--plugin", PLUGIN, "--scenario", str(scenario)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sigma" in err and "a number >= 0" in err and "-1" in err

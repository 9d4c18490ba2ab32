"""Scenario presets, TOML scenario files and their errors, `harness scenarios`."""

import pytest

from backends.registry import load_registry
from harness.cli.main import main
from harness.core.errors import InputError
from harness.engine.plan import Overrides, plan
from scenarios import EXAMPLES_DIR, PRESETS, resolve
from scenarios.toml_file import load

EXAMPLES = sorted(EXAMPLES_DIR.glob("*.toml"))


def test_the_presets_the_issue_names_exist_and_default_is_unchanged():
    assert {"smoke", "latency", "throughput", "sweep", "streaming", "rollout", "default"} <= set(PRESETS)
    default = PRESETS["default"]
    assert (default.batch_sizes, default.seq_lens, default.mode) == ((1, 64, 1024), (50,), "forward")
    assert default.backends is None  # every default backend of the device
    assert load_registry().default_for("cpu") == ("eager", "torchscript", "compile",
                                                   "onnxruntime", "openvino", "aot-inductor")
    # torch's dynamic int8 serves int8 only, so only an int8 run includes it by default
    assert "torch-int8" in load_registry().default_for("cpu", "int8")
    assert max(PRESETS["throughput"].batch_sizes) == 4096 and PRESETS["latency"].batch_sizes == (1,)
    assert len(PRESETS["sweep"].batch_sizes) > 1 and len(PRESETS["sweep"].seq_lens) > 1
    assert PRESETS["streaming"].mode == "streaming" and PRESETS["rollout"].mode == "rollout"


def test_scenarios_command_lists_each_preset_on_one_line(capsys):
    assert main(["scenarios"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, scenario in PRESETS.items():
        [line] = [x for x in lines if x.split()[0] == name]
        assert scenario.mode in line


def test_example_files_parse():
    assert len(EXAMPLES) >= 2
    scenarios = {path.stem: load(path) for path in EXAMPLES}
    assert scenarios["long-forecast"].mode == "rollout"
    assert dict(scenarios["long-forecast"].params) == {"horizon": 400}
    # `extends` starts from a preset: edge-latency keeps latency's focus on the tail.
    assert scenarios["edge-latency"].focus == "tail"
    assert scenarios["edge-latency"].tolerance_overrides() == {"fp32": (1e-5, 1e-4)}


@pytest.mark.parametrize("text, fragments", [
    ("batch_size = [1]", ["unknown key 'batch_size'", "batch_sizes"]),
    ("batch_sizes = 4", ["'batch_sizes'", "non-empty list of integers >= 1", "got 4"]),
    ("batch_sizes = [1, 0]", ["'batch_sizes'", "got [1, 0]"]),
    ("mode = 'stream'", ["'mode'", "'forward', 'streaming', 'rollout'", "got 'stream'"]),
    ("horizon = 5", ["unknown key 'horizon'", "mode 'forward''s settings (check_grid)"]),
    ("mode = 'rollout'\nhorizon = 0", ["'horizon'", "an integer from 1 to 100000", "got 0"]),
    ("dtypes = ['fp8']", ["'dtypes'", "'fp32', 'bf16', 'fp16'", "got ['fp8']"]),
    ("devices = ['tpu']", ["'devices'", "'cpu', 'cuda', 'auto'"]),
    ("budget_s = 'fast'", ["'budget_s'", "a number > 0"]),
    ("mode = 'rollout'\nhorizon = true", ["'horizon'", "an integer from 1 to 100000", "got True"]),
    ("extends = 'nope'", ["'extends'", "'smoke'"]),
    ("[tolerances.fp8]\natol = 1\nrtol = 1", ["'tolerances.fp8'", "keyed by a dtype"]),
    ("[tolerances.fp32]\natol = 1e-5", ["'tolerances.fp32'", "exactly the keys 'atol' and 'rtol'"]),
    ("[tolerances.fp32]\natol = -1\nrtol = 0", ["'tolerances.fp32.atol'", "a number >= 0"]),
    ("mode = ", ["not valid TOML"]),
])
def test_a_wrong_key_type_or_value_names_the_file_key_and_allowed_values(tmp_path, text, fragments):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(InputError) as info:
        resolve(str(path))
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_unknown_scenario_name_lists_the_presets():
    with pytest.raises(InputError, match="unknown scenario 'fast'.*smoke"):
        resolve("fast")


def test_bad_scenario_file_on_the_command_line_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "typo.toml"
    path.write_text("batch_sizes = [1]\nseq_len = [50]\n")
    assert main(["run", "--scenario", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'seq_len'" in " ".join(err.split()) and "Traceback" not in err
    assert main(["run", "--scenario", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_file_without_a_name_is_named_after_the_file_and_keeps_other_defaults(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("batch_sizes = [2]\n")
    scenario = resolve(str(path))
    assert scenario.name == "mine" and scenario.batch_sizes == (2,)
    assert scenario.seq_lens == PRESETS["default"].seq_lens and scenario.mode == "forward"


def _row(backend: str, mode: str, **fields) -> dict:
    return {"backend": backend, "device": "cpu", "dtype": "fp32", "batch_size": 1, "seq_len": 50,
            "status": "ok", "mode": mode, "scenario": "s", **fields}


def _render(tables) -> str:
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=250, color_system=None)
    for table in tables:
        console.print(table)
    return console.file.getvalue()


def test_the_scenario_focus_and_mode_pick_the_columns_and_order():
    from reports.columns import best_throughput, by_scenario, columns_for
    from reports.table import tables_for

    rows = [_row("eager", "forward", median_ms=2.0, p90_ms=2.5, p99_ms=9.0, throughput_seq_s=500.0),
            _row("onnxruntime", "forward", median_ms=3.0, p90_ms=3.1, p99_ms=4.0,
                 throughput_seq_s=1000.0)]
    latency = {"scenario": {"name": "latency", "focus": "tail"}, "rows": rows}
    headers = [c.header for c in columns_for(rows, "tail")]
    assert headers.index("p90 ms") < headers.index("p99 ms") < headers.index("median ms")
    assert [r["backend"] for r in by_scenario(latency)[0][1]] == ["onnxruntime", "eager"]  # by p99
    by_median = {"scenario": {"name": "default"}, "rows": rows}
    assert [r["backend"] for r in by_scenario(by_median)[0][1]] == ["eager", "onnxruntime"]
    offline = {"scenario": {"name": "throughput", "focus": "throughput"}, "rows": rows}
    assert [line[0] for line in best_throughput(offline)] == ["onnxruntime", "eager"]
    assert "Best throughput per backend" in _render(tables_for(offline))
    assert "Best throughput per backend" not in _render(tables_for(by_median))
    modes = {"scenario": {"name": "s"}, "rows": [
        _row("eager", "streaming", step_ms=0.1, window_ms=0.4, step_vs_window=0.25),
        _row("eager", "rollout", horizon=200, drift_horizon=12, agrees=False)]}
    text = _render(tables_for(modes))
    assert "step / window" in text and "0.250×" in text
    assert "drifts at" in text and "step 12" in text and "✗" in text


def test_a_run_of_the_default_backends_leaves_out_the_comparator_unless_listed(tmp_path):
    registry = load_registry()
    for name in ("server", "single-stream", "default"):
        backends = plan(PRESETS[name], Overrides(devices=("cpu",)), registry,
                        workdir=tmp_path).configs[0].backends
        assert "reference" not in backends and "eager" in backends, name
        listed = plan(PRESETS[name], Overrides(devices=("cpu",), backends=("reference", "eager")),
                      registry, workdir=tmp_path).configs[0].backends
        assert listed == ("reference", "eager"), name


def test_without_isolation_each_backend_is_timed_in_one_process_and_the_run_says_so(tmp_path,
                                                                                    capsys):
    registry = load_registry()
    isolated = plan(PRESETS["default"], Overrides(), registry, workdir=tmp_path)
    assert isolated.configs[0].timing.processes == 2 and isolated.record()["isolate"] is True
    local = plan(PRESETS["default"], Overrides(), registry, workdir=tmp_path, isolate=False)
    # a second handle in this process is not a fresh process: its rounds would widen the CI
    # as if they were
    assert local.configs[0].timing.processes == 1
    assert local.record()["isolate"] is False and local.record()["timing"]["processes"] == 1
    assert main(["run", "--no-isolate", "--processes", "2"]) == 2
    assert ("expected --processes 1 with --no-isolate (every backend then runs in this one "
            "process), got --processes 2") in " ".join(capsys.readouterr().err.split())

"""The model axis: models in scenarios and plans, the model's identity in results, tables,
`compare` and `report`, and the speedup-against-hidden-size figure."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from backends.registry import load_registry
from harness.cli.main import main
from harness.core.compare import compare_results
from harness.core.errors import CheckpointError, InputError
from harness.core.model import LSTMPredictor, ModelConfig
from harness.core.results import for_model, merge_models, models_of
from harness.core.training import TrainConfig
from harness.engine.plan import DEFAULT_MODEL, Overrides, plan
from harness.io.sources import as_results
from reports import plots
from reports.columns import by_scenario, check_summary
from reports.html import render_html
from scenarios import PRESETS, resolve
from tests.results_fixture import MODEL, make_results, make_sweep, sweep_model

REGISTRY = load_registry()


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_a_scenario_lists_models_as_sizes_or_checkpoint_paths(tmp_path):
    path = _toml(tmp_path, "[[models]]\nhidden_size = 128\nnum_layers = 2\nepochs = 0\n"
                           "[[models]]\ncheckpoint = 'models/mine.pt'\n"
                           "[[models]]\ninput_size = 3\noutput_size = 2\n")
    scenario = resolve(str(path))
    assert scenario.models == (
        TrainConfig(model=ModelConfig(hidden_size=128, num_layers=2), epochs=0),
        tmp_path / "models" / "mine.pt",  # relative to the TOML file's folder
        TrainConfig(model=ModelConfig(input_size=3, output_size=2)))


@pytest.mark.parametrize("text, fragments", [
    ("models = 3", ["'models'", "a non-empty array of [[models]] tables"]),
    ("[[models]]\nhiden_size = 8", ["unknown key 'models[0].hiden_size'", "hidden_size"]),
    ("[[models]]\nhidden_size = 0", ["'models[0].hidden_size'", "an integer >= 1", "got 0"]),
    ("[[models]]\nepochs = -1", ["'models[0].epochs'", "an integer >= 0"]),
    ("[[models]]\ncheckpoint = 'a.pt'\nhidden_size = 8", ["'models[0]'", "not both"]),
    ("[[models]]\ncheckpoint = 3", ["'models[0].checkpoint'", "a path to a checkpoint file"]),
    ("processes = 0", ["'processes'", "an integer from 1 to 64"]),
])
def test_a_wrong_model_entry_names_the_file_and_key(tmp_path, text, fragments):
    path = _toml(tmp_path, text + "\n")
    with pytest.raises(InputError) as info:
        resolve(str(path))
    message = str(info.value)
    assert str(path) in message and all(f in message for f in fragments), message


def test_the_plan_has_one_run_per_model_device_and_dtype(tmp_path):
    models = (TrainConfig(model=ModelConfig(hidden_size=8), epochs=0),
              TrainConfig(model=ModelConfig(hidden_size=16, num_layers=2), epochs=0))
    scenario = replace(PRESETS["default"], models=models, dtypes=("fp32", "bf16"))
    the_plan = plan(scenario, Overrides(), REGISTRY, workdir=tmp_path)
    assert [(c.model, c.dtype) for c in the_plan.configs] == [
        (models[0], "fp32"), (models[0], "bf16"), (models[1], "fp32"), (models[1], "bf16")]
    # each model's artifacts in a folder of its own
    assert len({c.workdir for c in the_plan.configs}) == 4
    assert the_plan.configs[0].workdir.parent != the_plan.configs[2].workdir.parent
    assert [m["hidden_size"] for m in the_plan.record()["models"]] == [8, 16]
    # --checkpoint (or the size flags) replaces the scenario's models
    path = tmp_path / "m.pt"
    torch.save(LSTMPredictor().state_dict(), path)
    only = plan(scenario, Overrides(models=(path,)), REGISTRY, workdir=tmp_path)
    assert only.models == (path,) and only.record()["models"] == [{"checkpoint": str(path)}]
    assert plan(PRESETS["default"], Overrides(), REGISTRY).models == (DEFAULT_MODEL,)


def test_the_plan_refuses_a_missing_checkpoint_and_an_impossible_rollout_before_any_work(tmp_path):
    with pytest.raises(CheckpointError, match="which does not exist"):
        plan(PRESETS["default"], Overrides(models=(tmp_path / "gone.pt",)), REGISTRY)
    wide = TrainConfig(model=ModelConfig(output_size=2))
    with pytest.raises(InputError, match=r"output_size \(2\) must equal input_size \(1\)"):
        plan(PRESETS["rollout"], Overrides(models=(wide,)), REGISTRY)


def test_the_model_sweep_preset_is_the_issue_s_grid_sized_for_this_vm():
    sweep = PRESETS["model-sweep"]
    sizes = {(m.model.hidden_size, m.model.num_layers) for m in sweep.models}
    assert sizes == {(h, n) for h in (32, 64, 128, 256, 512) for n in (1, 2)}
    assert all(m.epochs == 0 for m in sweep.models)  # seeded weights: see the preset
    assert (sweep.batch_sizes, sweep.dtypes, sweep.devices) == ((1, 64), ("fp32",), ("cpu",))
    # every default CPU backend but the package-per-model one
    assert set(REGISTRY.default_for("cpu", "fp32")) - set(sweep.backends) == {"aot-inductor"}
    assert sweep.processes == 1 and dict(sweep.params) == {"check_grid": "timed"}
    the_plan = plan(sweep, Overrides(), REGISTRY)
    assert len(the_plan.configs) == 10 and the_plan.configs[0].timing.processes == 1
    assert the_plan.configs[0].check_shapes == [(1, 50), (64, 50)]
    assert the_plan.record()["check_grid"] == "timed"


# -- results ------------------------------------------------------------------------------
def test_a_version_2_file_gets_its_model_on_every_row_and_check_and_compares_to_a_new_one():
    new = make_results()
    old = json.loads(json.dumps(new))
    old["schema_version"] = 2
    old["model"] = {"weights_sha256": MODEL["model_sha256"], "val_mse": 1e-6,
                    "config": {"input_size": 1, "hidden_size": 64, "num_layers": 1, "output_size": 1}}
    for item in (*old["rows"], *old["checks"]):
        for key in (*MODEL, "model_sha256"):
            item.pop(key, None)
    migrated = as_results(old, "old.json")
    assert all({k: r[k] for k in MODEL} == MODEL for r in migrated["rows"])
    assert all(c["model_sha256"] == MODEL["model_sha256"] for c in migrated["checks"])
    comparison = compare_results(migrated, new)
    assert len(comparison.changes) == len(new["rows"]) and not comparison.only_new


def test_rows_of_another_model_never_match_in_compare():
    base = make_results()
    other = make_results(scale=0.5)
    for row in other["rows"]:
        row["model_sha256"] = "f" * 64
    comparison = compare_results(base, other)
    assert comparison.changes == ()
    assert len(comparison.only_base) == len(comparison.only_new) == len(base["rows"])


def test_the_model_block_names_one_model_or_lists_several():
    one = {"weights_sha256": "a" * 64, "label": "h64 L1"}
    two = {"weights_sha256": "b" * 64, "label": "h32 L2"}
    assert merge_models([one, one]) == one
    assert merge_models([one, two, one]) == {"models": [one, two]}
    sweep = make_sweep()
    assert len(models_of(sweep)) == 6 and models_of(make_results()) == [make_results()["model"]]
    only = for_model(sweep, sweep_model(128, 2)["model_sha256"])
    assert {(r["hidden_size"], r["num_layers"]) for r in only["rows"]} == {(128, 2)}
    assert only["model"]["label"] == "h128 L2" and len(only["checks"]) == 4


def test_one_model_keeps_today_s_tables_and_several_get_a_table_each():
    single = by_scenario(make_results())
    assert [name for name, _ in single] == ["default"]
    tables = by_scenario(make_sweep(hidden=(32, 128), layers=(1,)))
    assert [name for name, _ in tables] == ["model-sweep · h32 L1 · 00321aaa",
                                            "model-sweep · h128 L1 · 01281aaa"]
    assert all(len({r["hidden_size"] for r in rows}) == 1 for _, rows in tables)
    assert [line.label for line in check_summary(make_results())][:3] == \
        ["eager", "onnxruntime", "torchscript"]
    labels = [line.label for line in check_summary(make_sweep(hidden=(32, 128), layers=(1,)))]
    assert labels[0] == "h32 L1 · 00321aaa eager" and len(labels) == 4


def test_the_speedup_figure_needs_two_hidden_sizes_and_the_report_shows_it():
    assert plots.speedup_vs_hidden(make_results()["rows"]) is None
    png = plots.speedup_vs_hidden(make_sweep()["rows"])
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'id="fig-speedup-hidden"' in render_html(make_sweep())
    assert 'id="fig-speedup-hidden"' not in render_html(make_results())


# -- report --checkpoint ------------------------------------------------------------------
def _results_for(tmp_path: Path, sha: str) -> Path:
    data = make_sweep(hidden=(32, 128), layers=(1,))
    for item in (*data["rows"], *data["checks"]):
        if item["model_sha256"] == sweep_model(128, 1)["model_sha256"]:
            item["model_sha256"] = sha
    data["model"]["models"][1]["weights_sha256"] = sha
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    return path


def test_report_with_a_checkpoint_shows_that_model_s_rows_only(tmp_path, capsys):
    from harness.core.checkpoint import sha256_file

    model = tmp_path / "model.pt"
    torch.save(LSTMPredictor(ModelConfig(hidden_size=128)).state_dict(), model)
    results = _results_for(tmp_path, sha256_file(model))
    out = tmp_path / "one.md"
    assert main(["report", str(results), "--checkpoint", str(model), "--format", "md",
                 "--output", str(out)]) == 0
    text = out.read_text()
    assert "model-sweep" in text and "h32" not in text  # one model: today's single table
    assert text.count("| eager | cpu |") == 2  # batch 1 and 64


def test_report_refuses_results_of_other_models_in_one_line(tmp_path, capsys):
    model = tmp_path / "model.pt"
    torch.save(LSTMPredictor(ModelConfig(hidden_size=16)).state_dict(), model)
    results = _results_for(tmp_path, "c" * 64)
    assert main(["report", str(results), "--checkpoint", str(model)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"expected results measured on {model} (h16 L1, sha256 " in err
    assert "holds rows of h32 L1 (sha256 00321aaaaaaa…), h128 L1 (sha256 cccccccccccc…) only" in err

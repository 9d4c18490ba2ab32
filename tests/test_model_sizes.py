"""Models of any size through every backend and workload: input_size above 1, several
layers, an output_size of its own; the ONNX export, the streaming states and the float64
reference all follow the model's config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backends.base import Target, feedback_rollout
from backends.reference import ReferenceModel
from backends.registry import load_registry
from harness.cli.main import main
from harness.core.agreement import DEFAULT_TOLERANCES, compare, compare_rollout, rollout_tolerance
from harness.core.checkpoint import load_or_train
from harness.core.data import random_batch, sine_batch, sine_forecast_batch
from harness.core.errors import BackendUnavailableError
from harness.core.model import ModelConfig
from harness.core.training import TrainConfig
from harness.engine.handles import LocalHandle
from harness.workloads.base import CheckContext
from harness.workloads.forward import FORWARD
from harness.workloads.rollout import Rollout
from harness.workloads.streaming import Streaming
from tests.conftest import requires_cuda, skip_unless_usable

REGISTRY = load_registry()
TOL = DEFAULT_TOLERANCES["fp32"]
# Three channels in, two out, two layers; and two in, two out (a rollout feeds its
# predictions back, so it needs output_size == input_size), three layers.
WIDE = ModelConfig(input_size=3, hidden_size=8, num_layers=2, output_size=2)
ROLLING = ModelConfig(input_size=2, hidden_size=16, num_layers=3, output_size=2)


def _scenario(tmp_path: Path, mode: str, config: ModelConfig, extra: str = "") -> Path:
    sizes = "\n".join(f"{k} = {v}" for k, v in config.to_dict().items())
    path = tmp_path / f"{mode}.toml"
    path.write_text(f'mode = "{mode}"\nbatch_sizes = [1, 4]\nbudget_s = 0.05\nprocesses = 1\n'
                    f"{extra}\n[[models]]\n{sizes}\nepochs = 1\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("mode, config, extra", [
    ("forward", WIDE, 'check_grid = "timed"'),
    ("streaming", WIDE, ""),
    ("rollout", ROLLING, "horizon = 20"),
])
def test_every_cpu_backend_runs_and_agrees_for_a_model_of_its_own_size(tmp_path, mode, config,
                                                                         extra, capsys):
    out = tmp_path / "results.json"
    code = main(["run", "--scenario", str(_scenario(tmp_path, mode, config, extra)), "--out", str(out),
                 "--allow-contended", "--allow-unsteady", "--no-isolate",
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    assert data["model"]["config"] == config.to_dict() and data["model"]["source"] == "trained"
    assert np.isfinite(data["model"]["val_mse"])
    rows = data["rows"]
    assert {r["backend"] for r in rows} == set(REGISTRY.default_for("cpu"))
    for row in rows:
        assert row["status"] == "ok" and row["agrees"] is True and row["median_ms"] > 0, row
        assert {k: row[k] for k in config.to_dict()} == config.to_dict()
        assert row["model_sha256"] == data["model"]["weights_sha256"]
    assert all(c["agrees"] for c in data["checks"])
    kinds = {(c["mode"], c["inputs"]) for c in data["checks"]}
    assert ("forward", "sine") in kinds and ("forward", "random") in kinds
    onnx = next(r for r in rows if r["backend"] == "onnxruntime")
    assert onnx["diagnostics"]["artifact_bytes"] > 0


def _seeded(config: ModelConfig, cache_dir: Path):
    return load_or_train(TrainConfig(model=config, epochs=0), cache_dir)[0].model


def test_every_workload_checks_and_times_an_odd_size_through_its_own_inputs(tmp_path, cpu_target):
    """In process and cheap: each workload's own check (its inputs as wide as the model's
    input, the float64 reference's answers) and timer inputs, through eager."""
    model = _seeded(ROLLING, tmp_path)
    handle = LocalHandle.open(REGISTRY.create("eager"), model, cpu_target,
                              sine_batch(1, 50, 0, ROLLING.input_size), with_step=True)
    shapes = [(3, 30)]
    ctx = CheckContext(ReferenceModel(model), TOL, ROLLING.input_size, 0, shapes, shapes)
    for workload in (FORWARD, Streaming(), Rollout(horizon=10)):
        checked = workload.check(ctx, handle, "eager", "fp32")
        assert checked.checks and all(c.agrees for c in checked.checks), workload.name
        for role, payload in workload.timer_payloads((3, 30), 0, 2, ROLLING.input_size).items():
            assert handle.timer(workload, role, payload).calibrate(1e-3) >= 1
    ys, h, c = handle.outputs(Streaming(), random_batch(3, 30, 2, 2))
    assert ys.shape == (3, 30, 2) and h.shape == c.shape == (ROLLING.num_layers, 3, ROLLING.hidden_size)
    windows, _ = sine_forecast_batch(2, 30, 10, 3, channels=2)
    assert handle.outputs(Rollout(horizon=10), windows).shape == (2, 10, 2)
    handle.close()


@requires_cuda
@pytest.mark.parametrize("name", [n for n in REGISTRY.names() if n != "reference"])
def test_every_cuda_backend_follows_the_model_s_sizes(tmp_path, name):
    """On a GPU: the forward pass, the stream (where the backend has a step model) and the
    rollout of a three-layer, two-channel model against the float64 reference."""
    target = Target("cuda", "fp32", tmp_path / "work", 1)
    backend = REGISTRY.create(name)
    skip_unless_usable(backend, target)
    model = _seeded(ROLLING, tmp_path / "cache")
    reference = ReferenceModel(model)
    first = sine_batch(1, 50, 0, ROLLING.input_size)
    try:
        handle = LocalHandle.open(backend, model, target, first, with_step=True)
    except BackendUnavailableError:  # compile-cudagraphs has no step model
        handle = LocalHandle.open(backend, model, target, first)
    x = random_batch(4, 30, ROLLING.input_size, 5)
    assert compare(handle.outputs(FORWARD, x), reference.forward(x), TOL).agrees
    if handle.sessions.step is not None:
        ys, h, c = handle.outputs(Streaming(), x)
        assert h.shape == (ROLLING.num_layers, 4, ROLLING.hidden_size)
        for actual, expected in zip((ys, h, c), reference.stream(x), strict=True):
            assert compare(actual, expected, TOL).agrees
    windows, _ = sine_forecast_batch(2, 30, 10, 3, channels=2)
    assert compare_rollout(handle.outputs(Rollout(horizon=10), windows),
                           feedback_rollout(reference.forward, windows, 10),
                           rollout_tolerance(TOL)).agrees
    handle.close()


@pytest.fixture(scope="module")
def largest():
    """The largest size the harness supports (hidden 1024, 4 layers), its weights scaled up
    as training scales them (tools.error_by_size), and the float64 answers to its inputs."""
    from tools.error_by_size import inputs_for, trained_like

    config = ModelConfig(hidden_size=1024, num_layers=4)
    model = trained_like(config)
    reference = ReferenceModel(model)
    return model, [(x, reference.forward(x)) for x in inputs_for(config).values()]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["eager", "torchscript", "compile", "onnxruntime"])
def test_the_default_fp32_band_holds_at_the_largest_size(largest, cpu_target, name):
    """fp32 error grows with the model, and the bands do not: this is where that would
    first break (harness.core.agreement)."""
    from tools.error_by_size import measure

    model, cases = largest
    err, peak, share = measure(REGISTRY.create(name).prepare(model, cpu_target), cases, TOL)
    assert peak > 0.5  # outputs of a trained predictor's size, not shrunk towards 0
    assert share <= 1.0, f"{name}: max abs err {err:.2e} uses {share:.0%} of the fp32 band"

"""Streaming and rollout modes: step models against the windowed pass, forecasts against the
float64 forecast, and the scenario CLI that runs them."""

import json

import numpy as np
import pytest

from backends.base import Session, Target, feedback_rollout
from backends.reference import ReferenceModel
from backends.registry import load_registry
from harness.cli.main import main
from harness.core.agreement import DEFAULT_TOLERANCES, Tolerance, compare, compare_rollout, rollout_tolerance
from harness.core.data import random_batch, sine_batch, sine_forecast_batch
from harness.core.errors import BackendUnavailableError
from harness.engine.handles import LocalHandle
from harness.workloads.forward import FORWARD
from harness.workloads.rollout import Rollout
from harness.workloads.streaming import Streaming
from scenarios import EXAMPLES_DIR
from scenarios.toml_file import load
from tests.conftest import FAST, requires_cuda, skip_unless_usable
from tests.results_fixture import undeclared

REGISTRY = load_registry()
TOL = DEFAULT_TOLERANCES["fp32"]


def _check_stream(handle: LocalHandle, reference: ReferenceModel, name: str) -> None:
    for x in (sine_batch(3, 50, seed=11), random_batch(3, 50, 1, seed=12)):
        ys, h, c = handle.outputs(Streaming(), x)
        ref_ys, ref_h, ref_c = reference.stream(x)
        assert ys.shape == (3, 50, 1) and h.shape == c.shape == (1, 3, 64)
        for actual, expected, what in ((ys, ref_ys, "outputs"), (h, ref_h, "h"), (c, ref_c, "c")):
            result = compare(actual, expected, TOL)
            assert result.agrees, f"{name} {what}: max abs err {result.max_abs_err:.2e}"
        # The last streamed output is the windowed forward pass of the same backend.
        assert compare(ys[:, -1], handle.outputs(FORWARD, x), TOL).agrees


# These export an ONNX file or build AOTInductor packages first: tens of seconds or minutes.
SLOW_TO_PREPARE = ("onnxruntime", "openvino", "aot-inductor")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TO_PREPARE
                                  else n for n in REGISTRY.default_for("cpu")])
def test_streaming_the_window_reproduces_the_windowed_pass(checkpoint, cpu_target, name):
    """Outputs at every step and the final h and c, against the float64 reference."""
    handle = LocalHandle.open(REGISTRY.create(name), checkpoint.model, cpu_target,
                              sine_batch(1, 50, 0), with_step=True)
    _check_stream(handle, ReferenceModel(checkpoint.model), name)
    handle.close()


@requires_cuda
@pytest.mark.parametrize("name", [n for n in REGISTRY.names() if n != "reference"])
def test_streaming_and_rollout_on_cuda(checkpoint, tmp_path, name):
    target = Target("cuda", "fp32", tmp_path, 1)
    backend = REGISTRY.create(name)
    skip_unless_usable(backend, target)
    reference = ReferenceModel(checkpoint.model)
    try:
        handle = LocalHandle.open(backend, checkpoint.model, target, sine_batch(1, 50, 0), with_step=True)
        _check_stream(handle, reference, name)
    except BackendUnavailableError as exc:  # e.g. compile-cudagraphs has no step model
        assert "no streaming step model" in str(exc)
        handle = LocalHandle.open(backend, checkpoint.model, target, sine_batch(1, 50, 0))
    windows, _ = sine_forecast_batch(4, 50, 100, seed=1)
    forecast = handle.outputs(Rollout(horizon=100), windows)
    expected = feedback_rollout(reference.forward, windows, 100)
    assert compare_rollout(forecast, expected, rollout_tolerance(TOL)).agrees
    handle.close()


def test_reference_stream_ends_in_its_forward_pass(checkpoint):
    reference = ReferenceModel(checkpoint.model)
    x = random_batch(4, 30, 1, seed=3)
    ys, h, c = reference.stream(x)
    np.testing.assert_allclose(ys[:, -1], reference.forward(x), rtol=0, atol=1e-15)
    # Continuing from the returned state equals one longer window.
    more = random_batch(4, 5, 1, seed=4)
    ys2, _, _ = reference.stream(more, h, c)
    np.testing.assert_allclose(ys2[:, -1], reference.forward(np.concatenate([x, more], 1)), atol=1e-13)


def test_on_device_rollout_equals_the_host_round_trip(checkpoint, cpu_target):
    """TorchSession keeps the window on the device; the generic default goes through numpy.
    Fed the same float32 values, both must forecast bit for bit the same."""
    session = REGISTRY.create("eager").prepare(checkpoint.model, cpu_target)
    window = sine_batch(2, 50, seed=5)
    on_device = session.rollout(window, 30)
    on_host = Session.rollout(session, window, 30)
    assert on_device.shape == (2, 30, 1)
    np.testing.assert_array_equal(on_device, on_host)


def test_reference_rollout_follows_the_true_sine(checkpoint):
    windows, truth = sine_forecast_batch(3, 50, 100, seed=2)
    forecast = feedback_rollout(ReferenceModel(checkpoint.model).forward, windows, 100)
    assert forecast.shape == truth.shape == (3, 100, 1)
    # The first forecast is the model's one-step prediction, close to the next sample.
    assert np.abs(forecast[:, 0] - truth[:, 0]).max() < 0.05
    assert np.mean((forecast - truth) ** 2) < 0.05


def test_compare_rollout_finds_the_first_step_out_of_tolerance():
    expected = np.zeros((2, 5, 1))
    actual = expected.copy()
    actual[1, 3, 0] = 2e-4  # step 4 out of atol 1e-4
    actual[0, 4, 0] = np.nan
    result = compare_rollout(actual, expected, Tolerance(1e-4, 0.0))
    assert result.drift_horizon == 4 and not result.agrees
    assert result.step_err[:4] == (0.0, 0.0, 0.0, 2e-4) and result.step_err[4] == np.inf
    assert compare_rollout(expected, expected, Tolerance(0.0, 0.0)).drift_horizon is None


@pytest.mark.slow
def test_a_backend_within_tolerance_for_one_step_is_caught_drifting_in_a_rollout(cached, tmp_path, capsys):
    out = tmp_path / "rollout.json"
    code = main(["run", "--scenario", "rollout", "--plugin", "tests.plugins.wrong_backend",
                 "--backends", "eager,drifting", "--horizon", "100", "--out", str(out), *FAST])
    assert code == 1
    data = json.loads(out.read_text())
    rows = {r["backend"]: r for r in data["rows"]}
    assert all(r["mode"] == "rollout" and r["scenario"] == "rollout" for r in rows.values())
    one_step = [c for c in data["checks"] if c["backend"] == "drifting" and c["mode"] == "forward"]
    assert one_step and all(c["agrees"] for c in one_step)  # the one-step check passes it ...
    drifting = rows["drifting"]
    assert drifting["max_abs_err"] < TOL.atol
    assert drifting["agrees"] is False  # ... the rollout check catches it ...
    assert 1 < drifting["drift_horizon"] < 100  # ... and says when it left the band
    band = data["tolerance"]["rollout"]["atol"]
    err = drifting["rollout_err"]
    assert len(err) == drifting["horizon"] == 100
    assert err[drifting["drift_horizon"] - 1] > band >= max(err[:drifting["drift_horizon"] - 1])
    eager = rows["eager"]
    assert eager["agrees"] is True and eager["drift_horizon"] is None
    assert undeclared(data) == set()
    assert eager["max_abs_err_rollout"] <= band and eager["median_ms"] > 0
    assert 0 < eager["mse_vs_truth"] < 0.05
    printed = " ".join(capsys.readouterr().out.split())
    assert "rollout (rollout)" in printed and f"step {drifting['drift_horizon']}" in printed


@pytest.mark.slow
def test_streaming_mode_times_step_and_window_and_refuses_a_backend_without_a_step_model(
        cached, tmp_path, capsys):
    out = tmp_path / "streaming.json"
    code = main(["run", "--scenario", "streaming", "--plugin", "tests.plugins.wrong_backend",
                 "--backends", "reference,eager,torchscript,drifting", "--out", str(out), *FAST])
    assert code == 0
    data = json.loads(out.read_text())
    rows = {r["backend"]: r for r in data["rows"]}
    assert rows["drifting"]["status"] == "unavailable"
    assert rows["drifting"]["reason"] == "no streaming step model"
    for name in ("reference", "eager", "torchscript"):
        row = rows[name]
        assert row["mode"] == "streaming" and row["agrees"] is True
        assert row["step_ms"] > 0 and row["window_ms"] > 0
        assert row["step_vs_window"] == pytest.approx(row["step_ms"] / row["window_ms"])
    assert undeclared(data) == set()
    stream_checks = [c for c in data["checks"] if c["mode"] == "streaming"]
    assert {c["backend"] for c in stream_checks} == {"reference", "eager", "torchscript"}
    # the row times both models, and reports both: the window's file and the step model's
    scripted = rows["torchscript"]["diagnostics"]
    assert scripted["artifact_bytes"] > 0 and scripted["step"]["artifact_bytes"] > 0
    assert scripted["step"]["artifact_sha256"] != scripted["artifact_sha256"]
    printed = " ".join(capsys.readouterr().out.split())
    assert "streaming (streaming)" in printed and "no streaming step model" in printed


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(EXAMPLES_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_example_scenario_files_run_and_record_the_effective_scenario(cached, tmp_path, path):
    out = tmp_path / "example.json"
    rollout = load(path).mode == "rollout"
    horizon = ["--horizon", "10"] if rollout else []
    code = main(["run", "--scenario", str(path), *horizon, "--out", str(out), *FAST])
    assert code == 0
    data = json.loads(out.read_text())
    scenario = data["scenario"]
    # The flags override the file's fields, and the result records what actually ran.
    assert scenario["budget_s"] == 0.05 and scenario["batch_sizes"] == [1]
    assert scenario.get("horizon") == (10 if rollout else None) and scenario["name"] == path.stem
    assert {r["scenario"] for r in data["rows"]} == {path.stem}
    assert {r["mode"] for r in data["rows"]} == {scenario["mode"]}
    assert {r["backend"] for r in data["rows"]} == set(scenario["backends"])
    assert all(r["status"] == "ok" and r["agrees"] for r in data["rows"])

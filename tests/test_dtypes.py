"""Half precisions: each backend that can computes in the dtype asked for, within that dtype's
band; what it cannot do is an "unavailable" row with its reason, never a crash."""

import json

import numpy as np
import pytest

from backends.base import Target
from backends.reference import ReferenceModel
from backends.registry import load_registry
from harness.cli.main import main
from harness.core.agreement import DEFAULT_TOLERANCES, compare
from harness.core.data import random_batch, sine_batch
from harness.engine.handles import LocalHandle
from harness.workloads.forward import FORWARD
from harness.workloads.rollout import Rollout
from harness.workloads.streaming import Streaming
from tests.conftest import FAST, requires_cuda, skip_unless_usable

REGISTRY = load_registry()


def _check_handle(handle: LocalHandle, reference: ReferenceModel, dtype: str) -> float:
    """Window and stream agreement within the dtype's band; returns the largest window error."""
    tol = DEFAULT_TOLERANCES[dtype]
    worst = 0.0
    # A second length besides the training one proves the shapes dynamic; a short one keeps
    # the compile cheap where inductor unrolls the LSTM over time (fp16 on the CPU).
    for x in (sine_batch(64, 50, seed=1), random_batch(3, 23, 1, seed=2)):
        result = compare(handle.outputs(FORWARD, x), reference.forward(x), tol)
        assert result.agrees, f"{dtype} window: max abs err {result.max_abs_err:.2e}"
        worst = max(worst, result.max_abs_err)
        for actual, expected in zip(handle.outputs(Streaming(), x[:, :20]), reference.stream(x[:, :20]),
                                    strict=True):
            assert compare(actual, expected, tol).agrees
    return worst


@pytest.mark.parametrize("name, dtype", [
    ("eager", "bf16"), ("torchscript", "bf16"), ("compile", "bf16"),
    ("eager", "fp16"), ("torchscript", "fp16"),
    pytest.param("compile", "fp16", marks=pytest.mark.slow),  # inductor unrolls the LSTM
    pytest.param("onnxruntime", "fp16", marks=pytest.mark.slow),  # an ONNX export
])
def test_half_precision_on_cpu_agrees_within_its_band_and_really_is_half(checkpoint, tmp_path,
                                                                         process_settings, name, dtype):
    target = Target("cpu", dtype, tmp_path, process_settings.intra_op_threads)
    backend = REGISTRY.create(name)
    skip_unless_usable(backend, target)  # compile in bf16 needs oneDNN's bf16 LSTM (AVX-512 BF16)
    handle = LocalHandle.open(backend, checkpoint.model, target, sine_batch(1, 50, 0),
                              with_step=True)
    worst = _check_handle(handle, ReferenceModel(checkpoint.model), dtype)
    # An error above the fp32 band proves the backend did not quietly compute in fp32.
    assert worst > DEFAULT_TOLERANCES["fp32"].atol
    handle.close()


@pytest.mark.slow
def test_a_scenario_with_several_dtypes_runs_them_all_and_states_what_it_cannot_do(cached, tmp_path):
    out = tmp_path / "dtypes.json"
    # bf16 costs this model several times the fp32 model's task error, more than the default
    # budget allows (docs/notes/issue-17.md); granting it is the user's call.
    code = main(["run", "--dtype", "fp32,bf16", "--backends", "eager,onnxruntime", "--out", str(out),
                 "--task-budget", "20", *FAST])
    assert code == 0
    data = json.loads(out.read_text())
    rows = {(r["backend"], r["dtype"]): r for r in data["rows"]}
    assert set(rows) == {("eager", "fp32"), ("eager", "bf16"), ("onnxruntime", "fp32"),
                         ("onnxruntime", "bf16")}
    assert rows[("onnxruntime", "bf16")]["status"] == "unavailable"
    assert "bf16" in rows[("onnxruntime", "bf16")]["reason"]
    for key in (("eager", "fp32"), ("eager", "bf16"), ("onnxruntime", "fp32")):
        assert rows[key]["status"] == "ok" and rows[key]["agrees"] is True
    # bf16 errors are real bf16 errors, judged against the bf16 band.
    assert rows[("eager", "bf16")]["max_abs_err"] > DEFAULT_TOLERANCES["fp32"].atol
    assert set(data["tolerance"]["by_dtype"]) == {"fp32", "bf16"}
    assert data["tolerance"]["by_dtype"]["bf16"]["atol"] == DEFAULT_TOLERANCES["bf16"].atol
    assert data["tolerance"]["by_dtype"]["bf16"]["task"]["max_mse_ratio"] == 20
    assert "task" not in data["tolerance"]["by_dtype"]["fp32"]
    assert rows[("eager", "bf16")]["accuracy_cost"] > 1.0
    assert {c["dtype"] for c in data["checks"] if c["backend"] == "eager"} == {"fp32", "bf16"}
    assert data["scenario"]["dtypes"] == ["fp32", "bf16"]


@requires_cuda
@pytest.mark.parametrize("name", ["eager", "compile"])
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_precision_on_cuda_agrees_within_its_band(checkpoint, tmp_path, name, dtype):
    target = Target("cuda", dtype, tmp_path, 1)
    handle = LocalHandle.open(REGISTRY.create(name), checkpoint.model, target, sine_batch(1, 50, 0),
                              with_step=True)
    _check_handle(handle, ReferenceModel(checkpoint.model), dtype)
    forecast = handle.outputs(Rollout(horizon=20), sine_batch(2, 50, 3))
    assert forecast.shape == (2, 20, 1) and np.isfinite(forecast).all()
    handle.close()


@requires_cuda
def test_onnxruntime_fp16_on_cuda_agrees_within_its_band(checkpoint, tmp_path):
    backend = REGISTRY.create("onnxruntime")
    target = Target("cuda", "fp16", tmp_path, 1)
    skip_unless_usable(backend, target)
    handle = LocalHandle.open(backend, checkpoint.model, target, sine_batch(1, 50, 0), with_step=True)
    _check_handle(handle, ReferenceModel(checkpoint.model), "fp16")
    handle.close()

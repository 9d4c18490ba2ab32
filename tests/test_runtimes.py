"""OpenVINO and AOTInductor, and the precision tier judged on the task: the traps each
guards against, caught."""

import json
import os

import numpy as np
import pytest

from backends.base import Target
from backends.reference import ReferenceModel
from backends.registry import load_registry
from harness.cli.main import main
from harness.core.agreement import DEFAULT_TASK_BUDGET, DEFAULT_TOLERANCES, TaskBudget, task_budget_for
from harness.core.data import sine_batch
from harness.core.errors import BackendError, InputError
from harness.engine.handles import LocalHandle
from harness.workloads.base import CheckContext
from harness.workloads.forward import FORWARD
from harness.workloads.task import judge
from tests.conftest import FAST
from tests.plugins.broken_int8 import BrokenInt8Backend

REGISTRY = load_registry()


# -- OpenVINO -------------------------------------------------------------------------------
def test_openvino_refuses_a_row_whose_precision_the_runtime_did_not_honour():
    from backends.openvino_backend import require_precision

    require_precision({"inference_precision_hint": "f32"}, "f32", "fp32")
    with pytest.raises(BackendError, match="infer in bf16, not the f32 a fp32 row asks for"):
        require_precision({"inference_precision_hint": "bf16"}, "f32", "fp32")


def test_openvino_without_its_package_says_how_to_install_it(monkeypatch, cpu_target):
    from backends import openvino_backend

    monkeypatch.setattr(openvino_backend, "_import_openvino", lambda: None)
    reason = REGISTRY.create("openvino").unavailable_reason(cpu_target)
    assert "not installed" in reason and "lstm-harness[openvino]" in reason


class DefaultPrecisionOpenVino:
    """OpenVINO compiled as a naive user would: no precision hint."""

    @staticmethod
    def make():
        from backends.openvino_backend import OpenVinoBackend

        class Naive(OpenVinoBackend):
            def precision_hint(self, target):
                return None
        return Naive()


@pytest.mark.slow
def test_openvino_left_at_its_default_precision_is_caught(checkpoint, cpu_target):
    """On a CPU whose default is bf16 (AVX-512 BF16, AMX), a model compiled without a hint
    answers in bf16; the fp32 row must fail, not pass as fp32."""
    import openvino as ov

    from backends.openvino_backend import default_precision

    default = default_precision(ov.Core())
    if default == "f32":
        pytest.skip("OpenVINO's default inference precision on this CPU is f32 (no AVX-512 BF16 "
                    "or AMX), so the default-precision trap cannot occur here")
    with pytest.raises(BackendError, match=f"infer in {default}, not the f32"):
        DefaultPrecisionOpenVino.make().prepare(checkpoint.model, cpu_target)


@pytest.mark.slow
def test_openvino_agrees_in_fp32_and_reads_its_settings_back(checkpoint, cpu_target):
    handle = LocalHandle.open(REGISTRY.create("openvino"), checkpoint.model, cpu_target,
                              sine_batch(1, 50, 0), with_step=True)
    reference = ReferenceModel(checkpoint.model)
    for batch, seq_len in [(1, 50), (64, 200), (5, 13)]:
        x = sine_batch(batch, seq_len, seed=seq_len)
        assert np.abs(handle.outputs(FORWARD, x) - reference.forward(x)).max() < 1e-5
    diagnostics = handle.facts().diagnostics
    assert diagnostics["inference_precision_hint"] == "f32"
    assert diagnostics["inference_num_threads"] == cpu_target.threads
    assert diagnostics["performance_hint"] == "LATENCY" and diagnostics["num_streams"] >= 1
    handle.close()


# -- AOTInductor ----------------------------------------------------------------------------
def test_aot_inductor_refuses_to_run_without_the_runtime_input_check(monkeypatch, checkpoint,
                                                                     cpu_target):
    monkeypatch.setenv("AOTI_RUNTIME_CHECK_INPUTS", "0")
    with pytest.raises(BackendError, match="would answer wrongly"):
        REGISTRY.create("aot-inductor").prepare(checkpoint.model, cpu_target)


def test_a_cached_artifact_is_used_only_while_it_hashes_to_its_record(tmp_path):
    from backends.artifacts import cached, partial_path, publish
    from harness.core.checkpoint import sha256_file

    package = tmp_path / "lstm-x.pt2"
    package.write_bytes(b"a package")
    assert cached(package) is None  # no record
    partial = partial_path(package)
    partial.write_bytes(b"a package, built")
    published = publish(partial, package, {"build_s": 1.5})
    assert not partial.exists() and published.sha256 == sha256_file(package)
    artifact, record = cached(package)
    assert artifact == published and record["build_s"] == 1.5
    package.write_bytes(b"a package, changed")
    assert cached(package) is None


@pytest.mark.slow
def test_an_aot_package_is_never_answered_at_a_seq_len_it_was_not_built_for(checkpoint, cached,
                                                                              tmp_path):
    """The package built for seq_len 50 refuses seq_len 13 (the runtime input check); the
    backend serves 13 by routing it to a package built for 13; both agree with the reference
    where they answer."""
    from dataclasses import replace

    target = Target("cpu", "fp32", tmp_path, 2, shapes=((64, 50),))
    session = REGISTRY.create("aot-inductor").prepare(checkpoint.model, target)
    reference = ReferenceModel(checkpoint.model)
    built_for_50 = session._packages.get(50, 64).runner
    import torch

    x13 = sine_batch(64, 13, seed=4)
    with pytest.raises(RuntimeError, match="expected: 50, but got: 13"), torch.inference_mode():
        built_for_50(torch.from_numpy(x13))
    for x in (sine_batch(64, 50, seed=3), x13):
        assert np.abs(session.to_numpy(session.run(session.to_native(x))) - reference.forward(x)).max() < 1e-5
    sources = {(p["seq_len"], p["batch"]): p["source"] for p in session.diagnostics()["packages"]}
    assert sources[(50, "2+")] in ("built", "cache") and (13, "2+") in sources
    # A second worker of the run loads what the first verified, without building.
    again = REGISTRY.create("aot-inductor").prepare(
        checkpoint.model, replace(target, reuse=tuple(session.artifacts().items())))
    assert [p["source"] for p in again.diagnostics()["packages"]] == ["reused"]


# -- the task check -------------------------------------------------------------------------
def test_the_default_task_budget_is_stated_and_applies_below_fp32_only():
    assert DEFAULT_TASK_BUDGET.max_mse_ratio == 1.5
    assert task_budget_for("fp32") is None
    assert all(task_budget_for(d) == DEFAULT_TASK_BUDGET for d in ("bf16", "fp16", "int8"))
    assert task_budget_for("int8", 20.0).max_mse_ratio == 20.0
    assert DEFAULT_TASK_BUDGET.allows(1.5) and not DEFAULT_TASK_BUDGET.allows(1.51)
    assert not DEFAULT_TASK_BUDGET.allows(float("nan"))
    with pytest.raises(InputError, match="ratio >= 1"):
        TaskBudget(0.5)


def _task_verdict(checkpoint, tmp_path, backend, budget: TaskBudget):
    target = Target("cpu", "int8", tmp_path, 2)
    handle = LocalHandle.open(backend, checkpoint.model, target, sine_batch(64, 50, 0))
    timed = [(64, 50)]
    ctx = CheckContext(ReferenceModel(checkpoint.model), DEFAULT_TOLERANCES["int8"], 1, 0,
                       [(64, 50)], timed, budget)
    checked = judge(FORWARD, ctx, handle, backend.name, "int8")
    handle.close()
    return checked


@pytest.mark.slow
def test_a_broken_int8_backend_passes_the_band_and_fails_the_task(checkpoint, tmp_path):
    """Weights quantised with a scale 8x too coarse stay inside the int8 band on every
    number, and lose the sine: only the task check catches them. torch's own dynamic int8,
    judged the same way with the same budget, passes."""
    budget = TaskBudget(100.0)  # more than torch's int8 costs here (about 37x), less than the fault
    broken = _task_verdict(checkpoint, tmp_path, BrokenInt8Backend(), budget)
    band = [c for c in broken.checks if c.mode == "forward"]
    task = [c for c in broken.checks if c.mode == "task"]
    assert band and all(c.agrees for c in band)
    assert len(task) == 1 and not task[0].agrees
    assert max(broken.fields[(64, 50)]["accuracy_cost"],
               broken.fields[(64, 50)]["rollout_accuracy_cost"]) > budget.max_mse_ratio
    sound = _task_verdict(checkpoint, tmp_path, REGISTRY.create("torch-int8"), budget)
    assert all(c.agrees for c in sound.checks), sound.fields
    assert sound.fields[(64, 50)]["accuracy_cost"] > 1.0  # int8 is not free


def test_the_fp32_baseline_in_an_int8_run_is_the_fp32_model(checkpoint, tmp_path):
    """Eager has no int8: in an int8 run it is the fp32 model, which the task is measured
    against, so it is judged elementwise only."""
    eager = REGISTRY.create("eager")
    assert eager.computes_in("int8") == "fp32"
    target = Target("cpu", "int8", tmp_path, 2)
    handle = LocalHandle.open(eager, checkpoint.model, target, sine_batch(2, 50, 0))
    ctx = CheckContext(ReferenceModel(checkpoint.model), DEFAULT_TOLERANCES["fp32"], 1, 0,
                       [(2, 50)], [(2, 50)], DEFAULT_TASK_BUDGET)
    checked = judge(FORWARD, ctx, handle, "eager", eager.computes_in("int8"))
    assert checked.checks and all(c.mode == "forward" and c.agrees for c in checked.checks)
    handle.close()


@pytest.mark.slow
def test_run_dtype_int8_shows_int8_rows_with_their_task_accuracy_against_fp32(cached, tmp_path, capfd):
    out = tmp_path / "int8.json"
    code = main(["run", "--dtype", "int8", "--backends", "eager,torch-int8,onnxruntime,openvino,"
                 "torchscript,broken-int8", "--plugin", "tests.plugins.broken_int8",
                 "--task-budget", "100", "--out", str(out), *FAST])
    assert code == 1  # the broken backend fails the run
    data = json.loads(out.read_text())
    rows = {r["backend"]: r for r in data["rows"]}
    assert rows["eager"]["dtype"] == "fp32" and rows["eager"]["status"] == "ok"
    assert rows["eager"].get("accuracy_cost") is None
    for name in ("torch-int8", "onnxruntime"):
        assert rows[name]["dtype"] == "int8" and rows[name]["agrees"] is True, rows[name]
        assert rows[name]["accuracy_cost"] > 1.0 and rows[name]["speedup_vs_eager"] is not None
    assert rows["onnxruntime"]["diagnostics"]["exporter"].endswith("quantize_dynamic")
    assert "deprecated" in rows["torch-int8"]["diagnostics"]["deprecation"]
    assert rows["broken-int8"]["agrees"] is False and rows["broken-int8"]["task_agrees"] is False
    for name in ("openvino", "torchscript"):
        assert rows[name]["status"] == "unavailable" and "int8" in rows[name]["reason"]
    assert data["tolerance"]["task"]["max_mse_ratio"] == 100
    assert os.environ.get("AOTI_RUNTIME_CHECK_INPUTS") == "1"
    # quantize_dynamic's generic advice to pre-process the model does not reach the console
    assert "pre-processing" not in capfd.readouterr().err

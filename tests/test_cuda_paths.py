"""The CUDA paths' logic, tested on the CPU wherever it can run there.

ONNX Runtime's bound sessions (the CUDA path's buffers, bindings and device-resident rollout)
run on the CPU provider's own I/O binding over torch CPU tensors; doctor opens a real CPU
session; the memory accounting and the free-memory check mock only what needs a GPU (torch's
CUDA calls and NVML)."""

from __future__ import annotations

import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from backends.base import Target, feedback_rollout
from backends.onnxruntime_backend import (
    OnnxRuntimeBackend,
    OnnxRuntimeTensorRTBackend,
    OrtBoundSession,
    OrtBoundStepSession,
)
from backends.reference import ReferenceModel
from backends.registry import load_registry
from harness.core import memory
from harness.core.agreement import DEFAULT_TOLERANCES, Tolerance, compare_rollout, rollout_tolerance
from harness.core.data import random_batch, sine_batch, sine_forecast_batch
from harness.core.environment import collect, fp32_precision
from harness.core.errors import BackendUnavailableError, InputError
from harness.core.model import ModelConfig
from harness.core.settings import default_settings
from harness.engine import doctor, handles, plan
from harness.engine.handles import LocalHandle
from harness.workloads.base import PRIMARY, CheckContext, one_window_check, window_payloads
from harness.workloads.forward import FORWARD
from harness.workloads.rollout import Rollout
from harness.workloads.streaming import STEP, Streaming
from scenarios import DEFAULT
from tests.plugins.environment_backend import VALUE, VARIABLE, DeclaresEnvironment

ROOT = Path(__file__).resolve().parent.parent
TOL = DEFAULT_TOLERANCES["fp32"]
CPU = torch.device("cpu")


class BoundOnCpu(OnnxRuntimeBackend):
    """ONNX Runtime with the CUDA path's sessions, on the CPU provider and CPU memory."""

    name = "onnxruntime-bound-cpu"

    def prepare(self, model, target):
        return OrtBoundSession(*self.load(model, target, step=False), model.config.output_size, CPU)

    def prepare_step(self, model, target):
        return OrtBoundStepSession(*self.load(model, target, step=True), model.config.output_size,
                                   CPU)


class CountingSession:
    """An ONNX Runtime session that counts the bindings made on it and, with ``silent``,
    writes nothing when asked to run."""

    def __init__(self, session):
        self._session = session
        self.bindings = 0
        self.silent = False

    def io_binding(self):
        self.bindings += 1
        return self._session.io_binding()

    def run_with_iobinding(self, binding):
        if not self.silent:
            self._session.run_with_iobinding(binding)

    def __getattr__(self, name):
        return getattr(self._session, name)


@pytest.fixture(scope="module")
def ort_handles(checkpoint, tmp_path_factory, process_settings):
    """ONNX Runtime's plain CPU sessions and the bound ones, on the same verified files."""
    target = Target("cpu", "fp32", tmp_path_factory.mktemp("ort"), process_settings.intra_op_threads)
    first = sine_batch(1, 50, 0)
    plain = LocalHandle.open(OnnxRuntimeBackend(), checkpoint.model, target, first, with_step=True)
    reuse = plain.info.artifacts
    opened = {"plain": plain,
              "bound": LocalHandle.open(BoundOnCpu(), checkpoint.model, replace(target, reuse=reuse),
                                        first, with_step=True)}
    yield opened
    for handle in opened.values():
        handle.close()


@pytest.fixture()
def counted(ort_handles):
    """The bound handle's window and step sessions, each with a CountingSession."""
    sessions = ort_handles["bound"].sessions
    originals = {s: s._session for s in (sessions.window, sessions.step)}
    for s in originals:
        s._session = CountingSession(s._session)
    yield sessions
    for s, original in originals.items():
        s._session = original


# -- ONNX Runtime's bound sessions (item 3) --------------------------------------------------
@pytest.mark.slow  # two ONNX exports, shared by the module's ORT tests
def test_bound_sessions_answer_bit_for_bit_as_the_plain_ones(ort_handles, checkpoint):
    plain, bound = ort_handles["plain"], ort_handles["bound"]
    for x in (sine_batch(5, 50, seed=1), random_batch(64, 17, 1, seed=2)):
        np.testing.assert_array_equal(bound.outputs(FORWARD, x), plain.outputs(FORWARD, x))
    for x in (sine_batch(3, 20, seed=3), random_batch(2, 9, 1, seed=4)):
        for ours, theirs in zip(bound.outputs(Streaming(), x), plain.outputs(Streaming(), x),
                                strict=True):
            np.testing.assert_array_equal(ours, theirs)
    windows, _ = sine_forecast_batch(4, 50, 25, seed=5)
    forecast = bound.outputs(Rollout(horizon=25), windows)
    np.testing.assert_array_equal(forecast, plain.outputs(Rollout(horizon=25), windows))
    # the same buffers again, on other windows: nothing stale is carried over
    others, _ = sine_forecast_batch(4, 50, 25, seed=6)
    np.testing.assert_array_equal(bound.outputs(Rollout(horizon=25), others),
                                  plain.outputs(Rollout(horizon=25), others))
    expected = ReferenceModel(checkpoint.model)
    assert compare_rollout(forecast, feedback_rollout(expected.forward, windows, 25),
                           rollout_tolerance(TOL)).agrees


@pytest.mark.slow  # two ONNX exports, shared by the module's ORT tests
def test_timed_steps_and_rollouts_bind_and_allocate_nothing(counted, monkeypatch):
    """Every binding and buffer is made while the timer warms up, outside its rounds."""
    made = []
    poisoned = OrtBoundSession.poisoned
    monkeypatch.setattr(OrtBoundSession, "poisoned",
                        lambda self, shape: made.append(shape) or poisoned(self, shape))
    payloads = Streaming().timer_payloads((8, 50), 0, 4, 1)
    step_timer = Streaming().timer(counted, STEP, payloads[STEP])
    rollout_timer = Rollout(horizon=10).timer(counted, PRIMARY, window_payloads((8, 50), 0, 4, 1))
    for timer in (step_timer, rollout_timer):
        timer.warm_up(0.0)
        timer.time_calls(8)  # every sample has met its state pair by now
    before = (counted.window._session.bindings, counted.step._session.bindings, len(made))
    step_timer.time_calls(40)
    rollout_timer.time_calls(6)
    assert (counted.window._session.bindings, counted.step._session.bindings, len(made)) == before
    assert before[0] >= 2 and before[1] >= 4  # the bindings were made, once


@pytest.mark.slow  # two ONNX exports, shared by the module's ORT tests
def test_a_stream_continues_from_states_it_no_longer_holds(ort_handles):
    """States the session dropped (more live streams than it keeps) are copied in again."""
    bound, plain = ort_handles["bound"].sessions.step, ort_handles["plain"].sessions.step
    x = sine_batch(2, 12, seed=7)
    zeros = np.zeros((1, 2, 64), np.float32)

    def stream(session, crowd: bool):
        h, c = session.to_native((zeros, zeros))
        for t in range(x.shape[1]):
            if crowd and t == 5:  # five other streams start in between
                for _ in range(5):
                    session.run((*session.to_native((x[:, 0],)), *session.to_native((zeros, zeros))))
            y, h, c = session.run((session.to_native((x[:, t],))[0], h, c))
        return session.to_numpy((y, h, c))

    for ours, theirs in zip(stream(bound, crowd=True), stream(plain, crowd=False), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert len(bound._streams) == 4


# -- poisoned outputs (item 8) ---------------------------------------------------------------
@pytest.mark.slow  # two ONNX exports, shared by the module's ORT tests
def test_a_call_that_writes_nothing_leaves_nan_not_the_previous_answer(counted):
    x = random_batch(16, 50, 1, seed=8)
    first = FORWARD.outputs(counted, x)
    assert np.isfinite(first).all()
    counted.window._session.silent = True
    again = FORWARD.outputs(counted, x)
    assert np.isnan(again).all()


# -- the repeat is judged (item 2) -----------------------------------------------------------
class RepeatDrifts:
    """Answers the reference's output, except on the second call of an input, which is off by
    ``drift``: as a CUDA-graph replay that went wrong would be, since only the repeat replays."""

    def __init__(self, reference, drift: float):
        self.reference, self.drift, self.seen = reference, drift, set()

    def outputs(self, task, x):
        key = x.tobytes()
        answer = self.reference.forward(x)
        if key in self.seen:
            return answer + self.drift
        self.seen.add(key)
        return answer


def test_the_repeated_call_is_judged_against_the_reference(checkpoint):
    reference = ReferenceModel(checkpoint.model)
    ctx = CheckContext(reference, Tolerance(1e-5, 0.0), 1, 0, [(4, 10)], [(4, 10)])
    sine, rand = one_window_check(ctx, RepeatDrifts(reference, 1e-3), FORWARD, "replays", "fp32")
    assert sine.agrees and sine.deterministic is None
    assert not rand.agrees and rand.max_abs_err == pytest.approx(1e-3)
    assert rand.deterministic is False


# -- doctor starts the runtime (item 4) ------------------------------------------------------
def test_doctor_starts_onnxruntime_on_the_cpu(tmp_path):
    target = Target("cpu", "fp32", tmp_path, 1)
    assert OnnxRuntimeBackend().start_reason(target) is None
    entries = {(e.backend, e.device, e.dtype): e for e in doctor.availability(load_registry(), 1)}
    assert entries["onnxruntime", "cpu", "fp32"].available


def test_doctor_does_not_take_a_listed_cuda_provider_for_a_usable_one(tmp_path, monkeypatch):
    """onnxruntime-gpu lists CUDAExecutionProvider wherever it was built with it. Here the list
    says so, and torch says a GPU is there; the session that doctor opens runs on the CPU."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    target = Target("cuda", "fp32", tmp_path, 1)
    assert OnnxRuntimeBackend().unavailable_reason(target) is None  # what doctor used to trust
    entries = {(e.backend, e.device, e.dtype): e for e in doctor.availability(load_registry(), 1)}
    reason = entries["onnxruntime", "cuda", "fp32"].reason
    assert reason and "could not start CUDAExecutionProvider" in reason
    assert "CPUExecutionProvider" in reason


# -- TensorRT's TF32 and the worker's environment (item 6) -----------------------------------
def test_tensorrt_declares_the_tf32_override_for_fp32_rows_only(tmp_path):
    trt = OnnxRuntimeTensorRTBackend()
    assert trt.environment(Target("cuda", "fp32", tmp_path, 1)) == {"NVIDIA_TF32_OVERRIDE": "0"}
    assert trt.environment(Target("cuda", "fp16", tmp_path, 1)) == {}
    assert trt.environment(Target("cuda", "fp32", tmp_path, 1, allow_tf32=True)) == {}
    assert OnnxRuntimeBackend().environment(Target("cuda", "fp32", tmp_path, 1)) == {}


@pytest.mark.slow
def test_a_worker_starts_with_the_environment_its_backend_declares(checkpoint, cpu_target,
                                                                   monkeypatch):
    from harness.engine.isolation import WorkerHandle

    monkeypatch.delenv(VARIABLE, raising=False)
    worker = WorkerHandle.open(DeclaresEnvironment(), checkpoint.model, cpu_target,
                               sine_batch(1, 50, 0), default_settings(1), 300.0)
    try:
        assert worker.facts().diagnostics["seen"] == VALUE
    finally:
        worker.close()
    assert VARIABLE not in __import__("os").environ  # set in the worker only


def test_in_process_a_backend_without_its_environment_is_unavailable(checkpoint, cpu_target,
                                                                     monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    with pytest.raises(BackendUnavailableError, match=f"needs {VARIABLE}={VALUE}"):
        LocalHandle.open(DeclaresEnvironment(), checkpoint.model, cpu_target, sine_batch(1, 50, 0))
    monkeypatch.setenv(VARIABLE, VALUE)
    handle = LocalHandle.open(DeclaresEnvironment(), checkpoint.model, cpu_target,
                              sine_batch(1, 50, 0))
    assert handle.facts().diagnostics["seen"] == VALUE


def test_the_environment_block_records_torchs_fp32_precision():
    record = collect("cpu", default_settings(1), [])
    assert record["fp32_precision"] == fp32_precision()
    assert "cuda.matmul.fp32_precision" in record["fp32_precision"]
    # it reads the settings in force, which the legacy flag changes
    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    try:
        matmul.allow_tf32 = True
        assert fp32_precision()["cuda.matmul.fp32_precision"] == "tf32"
        matmul.allow_tf32 = False
        assert fp32_precision()["cuda.matmul.fp32_precision"] == "ieee"
    finally:
        matmul.allow_tf32 = before


# -- GPU memory (item 7) ---------------------------------------------------------------------
def test_nvml_names_the_device_torch_names():
    assert memory.nvml_uuid("4f1c2b3a-0000-1111-2222-333344445555") == \
        "GPU-4f1c2b3a-0000-1111-2222-333344445555"
    assert memory.nvml_uuid("GPU-4f1c") == "GPU-4f1c" and memory.nvml_uuid("MIG-7") == "MIG-7"


def _fake_nvml(processes, used_bytes):
    """pynvml as far as ``device_memory`` uses it, on a machine with two GPUs."""
    asked = []
    fake = SimpleNamespace(
        NVMLError=RuntimeError, nvmlInit=lambda: None,
        nvmlDeviceGetHandleByUUID=lambda uuid: asked.append(uuid) or f"handle:{uuid.decode()}",
        nvmlDeviceGetComputeRunningProcesses=lambda handle: processes,
        nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(used=used_bytes))
    return fake, asked


def test_device_memory_is_this_process_on_the_gpu_torch_uses(monkeypatch):
    import os

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: SimpleNamespace(uuid=f"uuid-of-{index}"))
    others = SimpleNamespace(pid=os.getpid() + 1, usedGpuMemory=9 * 2**30)
    mine = SimpleNamespace(pid=os.getpid(), usedGpuMemory=3 * 2**20)
    fake, asked = _fake_nvml([others, mine], 40 * 2**30)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert memory.device_memory() == memory.DeviceMemory(3.0, "process")
    assert asked == [b"GPU-uuid-of-1"]
    # no per-process figure (a container's PID namespace, or none given): the whole device's
    fake, _ = _fake_nvml([others, SimpleNamespace(pid=os.getpid(), usedGpuMemory=None)], 40 * 2**30)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert memory.device_memory() == memory.DeviceMemory(40 * 1024.0, "device")


def test_cached_device_memory_is_released_after_every_checked_call(monkeypatch):
    released = []
    readings = iter([memory.DeviceMemory(500.0, "process"), memory.DeviceMemory(900.0, "process"),
                     memory.DeviceMemory(700.0, "process")])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 64 * 2**20)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: released.append(True))
    monkeypatch.setattr(handles, "device_memory", lambda: next(readings))
    window = handles._MemoryWindow(on_cuda=True)
    assert window.track(lambda: 1) == 1 and window.track(lambda: 2) == 2
    assert len(released) == 2
    use = window.close()
    assert (use.cuda_peak_mb, use.device_growth_mb, use.device_scope) == (64.0, 400.0, "process")


def test_a_cuda_run_that_cannot_fit_in_the_gpus_free_memory_is_refused(monkeypatch):
    # five backends in two processes each, at the default scenario's shapes, on an 80 GB GPU
    memory.check_device_fits([(1024, 200)], ModelConfig(), 10, 4, free=80 * 2**30)
    with pytest.raises(InputError, match="in 10 worker processes.*fewer --processes"):
        memory.check_device_fits([(1024, 200)], ModelConfig(), 10, 4, free=4 * 2**30)
    # weights that alone overflow it: hidden 8192 is 1 GiB a worker, the host's copies not counted
    big = ModelConfig(hidden_size=8192)
    memory.check_device_fits([(1, 50)], big, 10, 4, free=20 * 2**30)
    with pytest.raises(InputError, match=r"fit in the GPU's free memory, got 268,541,953 parameters.*"
                                         r"copies in 12 worker processes need about 12.0 GiB"):
        memory.check_device_fits([(1, 50)], big, 12, 4, free=14 * 2**30)
    # through the planner, before anything is prepared
    monkeypatch.setattr(plan, "cuda_available", lambda: True)
    monkeypatch.setattr(memory, "device_free_bytes", lambda: 2 * 2**30)
    with pytest.raises(InputError, match="GPU's free memory"):
        plan.plan(DEFAULT, plan.Overrides(devices=("cuda",)), load_registry())
    monkeypatch.setattr(memory, "device_free_bytes", lambda: 80 * 2**30)
    assert plan.plan(DEFAULT, plan.Overrides(devices=("cuda",)), load_registry()).devices == ("cuda",)


# -- packaging (item 5) ----------------------------------------------------------------------
def test_onnxruntime_is_an_extra_and_dev_takes_the_cpu_build():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("onnxruntime")]
    extras = project["optional-dependencies"]
    assert extras["cpu"] == ["onnxruntime>=1.18"] and extras["gpu"] == ["onnxruntime-gpu>=1.18"]
    own = [d for d in extras["dev"] if d.startswith("lstm-harness[")]
    assert len(own) == 1 and "cpu" in own[0].removeprefix("lstm-harness[").rstrip("]").split(",")
    assert "gpu" not in own[0]

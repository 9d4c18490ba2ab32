"""Every registered backend against the float64 reference, on CPU."""

import copy

import numpy as np
import pytest
import torch

from backends.compiled import CompileBackend
from backends.reference import ReferenceModel
from backends.registry import load_registry
from harness.core.agreement import DEFAULT_TOLERANCES, compare
from harness.core.data import random_batch, sine_batch
from harness.core.errors import BackendError, InputError

REGISTRY = load_registry()
TOL = DEFAULT_TOLERANCES["fp32"]


def test_reference_matches_torch_in_float64(checkpoint):
    """The hand-written equations equal aten::lstm when both compute in float64."""
    x = random_batch(16, 30, 1, seed=5)
    with torch.inference_mode():
        expected = checkpoint.model.double()(torch.from_numpy(x).double()).numpy()
    checkpoint.model.float()
    np.testing.assert_allclose(ReferenceModel(checkpoint.model).forward(x), expected,
                               rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def sessions(checkpoint, tmp_path_factory, process_settings):
    from backends.base import Target

    target = Target("cpu", "fp32", tmp_path_factory.mktemp("artifacts"),
                    process_settings.intra_op_threads)
    return {name: REGISTRY.create(name).prepare(checkpoint.model, target)
            for name in CPU_BACKENDS}


CPU_BACKENDS = ["reference", "eager", "torchscript", "compile", "onnxruntime"]


def test_cuda_only_backends_say_so_on_cpu(cpu_target):
    assert "CUDA graphs need --device cuda" in \
        REGISTRY.create("compile-cudagraphs").unavailable_reason(cpu_target)
    assert "cuda only" in REGISTRY.create("onnxruntime-trt").unavailable_reason(cpu_target)
    for name in CPU_BACKENDS:
        assert REGISTRY.create(name).unavailable_reason(cpu_target) is None


@pytest.mark.parametrize("name", CPU_BACKENDS)
@pytest.mark.parametrize("batch, seq_len", [(1, 50), (64, 50), (3, 200), (1024, 17)])
def test_backend_agrees_with_reference(sessions, checkpoint, name, batch, seq_len):
    reference = ReferenceModel(checkpoint.model)
    session = sessions[name]
    for x in (sine_batch(batch, seq_len, seed=batch), random_batch(batch, seq_len, 1, seed=seq_len)):
        y = session.to_numpy(session.run(session.to_native(x)))
        assert y.shape == (batch, 1)
        result = compare(y, reference.forward(x), TOL)
        assert result.agrees, f"{name} at {batch}x{seq_len}: max abs err {result.max_abs_err:.2e}"


def test_compile_really_captures_the_lstm(sessions):
    diag = sessions["compile"].diagnostics()
    assert diag["graphs"] >= 1 and diag["graph_breaks"] == 0


def test_compile_refuses_to_pass_for_eager_when_the_lstm_is_not_captured(checkpoint, cpu_target,
                                                                          process_settings):
    import dataclasses

    import torch._dynamo

    from harness.core import settings

    torch._dynamo.reset()
    settings.apply(dataclasses.replace(process_settings, dynamo_allow_rnn=False))
    try:
        with pytest.raises(BackendError, match="silently run eager"):
            CompileBackend().prepare(checkpoint.model, cpu_target)
    finally:
        settings.apply(process_settings)
        torch._dynamo.reset()


@pytest.mark.slow
def test_auto_export_falls_back_when_dynamo_fixes_seq_len(checkpoint, tmp_path, monkeypatch):
    """torch 2.13's dynamo exporter keeps seq_len free, so the check is told once that it did
    not (what torch 2.11 did); the fallback must then write a file with seq_len free."""
    from backends import onnx_export

    real = onnx_export.fixed_axes_in_file
    verdicts = iter([[("x", 1)]])
    monkeypatch.setattr(onnx_export, "fixed_axes_in_file",
                        lambda path, dynamic: next(verdicts, None) or real(path, dynamic))
    path = tmp_path / "auto.onnx"
    assert onnx_export.export(checkpoint.model, path) == "torchscript (dynamo fixed x[1])"
    assert real(path, onnx_export.WINDOW_DYNAMIC[0]) == []


def test_the_compiled_step_model_returns_the_state_in_the_shape_it_was_given(checkpoint):
    """torch 2.11's LSTM decomposition (on CUDA, and fp16 on CPU) returned the state with a
    stray axis, (layers, 1, batch, hidden); the step model must hand back (layers, batch,
    hidden) with the same values."""
    from backends.compiled import StateShapedStep
    from harness.core.model import LSTMStep

    class StrayAxisLSTM(torch.nn.Module):
        def __init__(self, lstm):
            super().__init__()
            self.lstm = lstm

        def forward(self, x, state):
            out, (h, c) = self.lstm(x, state)
            return out, (h.unsqueeze(1), c.unsqueeze(1))

    model = checkpoint.model
    step = StateShapedStep(model)
    step.lstm = StrayAxisLSTM(model.lstm)
    x_t = torch.from_numpy(sine_batch(3, 1, 0)[:, 0, :])
    state = torch.randn(1, 3, 64)
    with torch.inference_mode():
        expected = LSTMStep(model)(x_t, state, state)
        got = step(x_t, state, state)
    assert [tuple(t.shape) for t in got] == [(3, 1), (1, 3, 64), (1, 3, 64)]
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_a_compile_that_fails_while_tracing_leaves_later_compiles_capturing(checkpoint, cpu_target):
    """Seen on CUDA: after one step model failed while dynamo traced it, dynamo skipped that
    code for good, and the next compile of the step model captured no graph at all."""
    backend = CompileBackend()
    first = backend.prepare_step(checkpoint.model, cpu_target)
    wrong_state = np.zeros((1, 1, 3, 64), np.float32)
    x_t = sine_batch(3, 1, 0)[:, 0, :]
    with pytest.raises(BackendError, match="raised while torch.compile traced it: .*should also "
                                           "be 3-D but got"):
        first.run(first.to_native((x_t, wrong_state, wrong_state)))
    second = backend.prepare_step(checkpoint.model, cpu_target)
    state = np.zeros((1, 3, 64), np.float32)
    y_t, h, c = second.to_numpy(second.run(second.to_native((x_t, state, state))))
    expected = ReferenceModel(checkpoint.model).forward(x_t[:, np.newaxis, :])
    assert h.shape == c.shape == (1, 3, 64)
    assert compare(y_t, expected, TOL).agrees


def test_onnx_artifact_has_dynamic_batch_and_seq_len(sessions):
    import onnx

    diag = sessions["onnxruntime"].diagnostics()
    model = onnx.load(sessions["onnxruntime"]._artifact.path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_param
    assert diag["artifact_bytes"] > 0 and diag["providers"] == ["CPUExecutionProvider"]
    assert diag["exporter"] == "dynamo" or diag["exporter"].startswith("torchscript (dynamo fixed")


@pytest.mark.slow
def test_onnx_exporter_fallback_keeps_seq_len_free_and_agrees(checkpoint, tmp_path):
    """The fallback taken where the dynamo exporter fixes seq_len (torch 2.11 did) must itself
    keep batch and seq_len free and agree at lengths other than the example's."""
    import onnxruntime as ort

    from backends.onnx_export import WINDOW_DYNAMIC, fixed_axes_in_file
    from backends.onnx_file import export_in_subprocess

    path = tmp_path / "torchscript-exporter.onnx"
    _, exporter = export_in_subprocess(checkpoint.model, path, exporter="torchscript")
    assert exporter == "torchscript"
    assert fixed_axes_in_file(path, WINDOW_DYNAMIC[0]) == []
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = ReferenceModel(checkpoint.model)
    for batch, seq_len in [(1, 50), (64, 200), (5, 3)]:
        x = random_batch(batch, seq_len, 1, seed=batch)
        result = compare(session.run(None, {"x": x})[0], reference.forward(x), TOL)
        assert result.agrees, f"{batch}x{seq_len}: max abs err {result.max_abs_err:.2e}"


def test_torchscript_round_trips_through_a_verified_file(sessions):
    diag = sessions["torchscript"].diagnostics()
    assert diag["artifact_bytes"] > 0 and len(diag["artifact_sha256"]) == 64


def test_tampered_artifact_is_refused(sessions):
    artifact = sessions["torchscript"]._artifact
    original = artifact.path.read_bytes()
    try:
        artifact.path.write_bytes(original + b"\0")
        with pytest.raises(BackendError, match="SHA-256"):
            artifact.verified_path()
    finally:
        artifact.path.write_bytes(original)


def test_unavailable_reasons_are_stated(tmp_path, process_settings):
    from backends.base import Target

    cuda = Target("cuda", "fp32", tmp_path, 1)
    if not torch.cuda.is_available():
        assert "CUDA" in REGISTRY.create("eager").unavailable_reason(cuda)
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            assert "install onnxruntime-gpu" in REGISTRY.create("onnxruntime").unavailable_reason(cuda)
    assert "CPU only" in REGISTRY.create("reference").unavailable_reason(cuda)


def test_unknown_backend_names_suggest_the_closest():
    with pytest.raises(InputError, match="did you mean onnxruntime"):
        REGISTRY.create("onnxrutime")


def test_plugin_modules_add_backends():
    registry = load_registry(["tests.plugins.wrong_backend"])
    assert "wrong" in registry and "eager" in registry
    with pytest.raises(InputError, match="cannot import plugin"):
        load_registry(["tests.plugins.no_such_module"])


def test_onnxruntime_answers_with_its_own_runtime(sessions, checkpoint):
    """Bit for bit what a fresh InferenceSession on the verified file answers, and not what
    eager answers: a session that loaded the file but answered through torch is caught."""
    import onnxruntime as ort

    session = sessions["onnxruntime"]
    path = session._artifact.verified_path()
    fresh = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x in (sine_batch(64, 50, seed=31), random_batch(5, 77, 1, seed=32)):
        ours = session.run(session.to_native(x))
        np.testing.assert_array_equal(ours, fresh.run(None, {"x": x})[0])
        eager = sessions["eager"].run(sessions["eager"].to_native(x)).numpy()
        assert not np.array_equal(ours, eager)


def _plus_one(t: torch.Tensor) -> torch.Tensor:
    return t + 1


def test_torchscript_answers_through_the_scripted_module(sessions):
    """The TorchScript executor, not eager, ran the last call: its last optimized graph is
    the LSTM's, where a moment before it was another scripted function's."""
    torch.jit.script(_plus_one)(torch.zeros(1))
    marker = str(torch.jit.last_executed_optimized_graph())
    session = sessions["torchscript"]
    session.run(session.to_native(sine_batch(4, 50, seed=33)))
    graph = str(torch.jit.last_executed_optimized_graph())
    assert graph != marker and "lstm" in graph.lower()


@pytest.mark.slow
def test_compile_runs_its_graphs_and_stays_within_its_graph_bound(checkpoint, cpu_target):
    """Over the agreement grid (batch 1, 64, 1024 x seq_len 50, 200, 13) the compiled model runs
    on at most two graphs: one with batch and seq_len dynamic, and one for batch 1, which
    dynamo specialises (it never treats a size of 1 as dynamic). A compile that recompiled
    at every shape, or calls that bypassed the graphs, would fail here."""
    from harness.engine.handles import LocalHandle
    from harness.workloads.base import CheckContext
    from harness.workloads.forward import FORWARD, Forward

    handle = LocalHandle.open(CompileBackend(), checkpoint.model, cpu_target, sine_batch(1, 50, 0))
    timed = [(1, 50)]
    ctx = CheckContext(ReferenceModel(checkpoint.model), TOL, 1, 0, Forward().check_shapes(timed), timed)
    checks = FORWARD.check(ctx, handle, "compile", "fp32").checks
    assert len(checks) == 18 and all(c.agrees for c in checks)
    diagnostics = handle.facts().diagnostics
    assert diagnostics["graphs"] <= 2 and diagnostics["recompiles"] <= 1
    assert diagnostics["graph_breaks"] == 0
    # the call that compiled it, the first call, and 27 checked calls (sine, random and its
    # repeat at 9 shapes)
    assert diagnostics["graph_calls"] == 1 + 1 + 27
    handle.close()


@pytest.mark.slow
def test_a_dozen_fp16_compiles_in_one_process_stay_under_the_recompile_limit(checkpoint, tmp_path,
                                                                            process_settings):
    """fp16 on the CPU takes inductor's LSTM decomposition, which specialises seq_len, so each
    new length recompiles. Each compile keeps its own cache entries; sharing one, the sixth
    compile called at five lengths hit dynamo's limit."""
    from backends.base import Target

    target = Target("cpu", "fp16", tmp_path, process_settings.intra_op_threads)
    for _ in range(12):
        session = CompileBackend().prepare(checkpoint.model, target)
        for seq_len in (3, 4, 5, 6, 7):
            y = session.to_numpy(session.run(session.to_native(sine_batch(2, seq_len, seed=seq_len))))
            assert y.shape == (2, 1) and np.isfinite(y).all()
        assert session.diagnostics()["recompiles"] >= 4  # seq_len really was specialised


@pytest.mark.slow
@pytest.mark.parametrize("isolate_recompiles", [True, False], ids=["isolate_recompiles", "own-code"])
def test_each_compile_keeps_a_dynamo_cache_of_its_own(checkpoint, monkeypatch, isolate_recompiles):
    """Both ways of isolating compiles: torch 2.13's option, and the fresh code object older
    torch (2.11 on the GPU machine) gets. Each compile brings a backend of its own, as the
    compile backend's do, and meets two shapes (batch 1 is always specialised): three such
    compiles sharing one cache would hold six entries, past a limit of two."""
    import torch._dynamo

    from backends import compiled

    monkeypatch.setattr(compiled, "ISOLATE_RECOMPILES", isolate_recompiles)
    model = checkpoint.model
    # dynamo's own patch: monkeypatch's undo deletes a dynamo config entry instead of restoring it
    with torch._dynamo.config.patch(recompile_limit=2):
        for _ in range(3):
            fn = compiled.isolated_compile(copy.deepcopy(model), fullgraph=True,
                                           backend=lambda gm, inputs: gm.forward)
            with torch.inference_mode():
                for batch in (2, 1):
                    x = torch.from_numpy(sine_batch(batch, 8, seed=batch))
                    torch.testing.assert_close(fn(x), model(x), rtol=0, atol=0)


@pytest.mark.slow
def test_onnxruntime_and_openvino_load_one_cached_export(checkpoint, tmp_path, monkeypatch,
                                                         process_settings):
    """The export is made once, by whichever backend comes first, and found by the other
    (and by later runs) under a key of everything that changes it."""
    from backends.base import Target
    from backends.onnx_file import ExportKey

    monkeypatch.setenv("LSTM_HARNESS_CACHE", str(tmp_path / "cache"))
    model = copy.deepcopy(checkpoint.model)
    target = Target("cpu", "fp32", tmp_path / "work", process_settings.intra_op_threads)
    first = REGISTRY.create("onnxruntime").prepare(model, target).diagnostics()
    assert first["onnx_source"] == "exported" and first["export_s"] > 0
    second = REGISTRY.create("openvino").prepare(model, target).diagnostics()
    assert second["onnx_source"] == "cache" and second["export_s"] == 0.0
    assert second["artifact_sha256"] == first["artifact_sha256"]
    assert second["exporter"] == first["exporter"]
    key = ExportKey.of(model, "fp32", False, "auto")
    assert key.path().is_file()
    with torch.no_grad():
        model.fc.bias += 1.0
    changed = ExportKey.of(model, "fp32", False, "auto")
    assert changed.path() != key.path()
    assert ExportKey.of(model, "fp32", True, "auto").path() != changed.path()
    assert ExportKey.of(model, "fp16", False, "auto").path() != changed.path()


def test_the_reference_sigmoid_is_within_an_ulp_and_never_overflows():
    """Large pre-activations occur in big or badly trained models: exp must not overflow
    (a naive 1 / (1 + exp(-z)) does at z = -1000), and the value must be the sigmoid to
    within one unit in the last place on both sides of 0, judged against 50 digits."""
    import mpmath

    from backends.reference import _sigmoid

    z = np.array([-1000.0, -40.0, -1.5, -1e-3, 0.0, 1e-3, 1.5, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise"):
        got = _sigmoid(z)
    with mpmath.workdps(50):
        exact = np.array([float(1 / (1 + mpmath.exp(-mpmath.mpf(v)))) for v in z])
    assert np.all(np.abs(got - exact) <= np.spacing(exact)), (got - exact) / np.spacing(exact)

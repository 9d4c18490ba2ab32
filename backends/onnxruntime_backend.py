"""ONNX Runtime on an exported .onnx file: CPUExecutionProvider, or CUDA with I/O binding.

On CUDA the inputs and outputs stay in device memory (torch tensors bound through
``io_binding``), so no host copy sits inside the timed call; a stream's states and a
rollout's window stay there too, in buffers bound once, before the timed calls.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from backends.artifacts import Artifact
from backends.base import Backend, Session, Target, module_version
from backends.onnx_export import DTYPES, OPSET, STEP_INPUTS, STEP_OUTPUTS
from backends.onnx_file import Export, check_dynamic_axes, onnx_path, verified_onnx
from harness.core.errors import BackendError, BackendUnavailableError
from harness.core.model import LSTMPredictor

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# The TensorRT major version onnxruntime-gpu 1.2x and 1.3x are built against.
TENSORRT_LIBRARY = "libnvinfer.so.10"
# int8 quantises the LSTM only: quantising the 64 -> 1 head as well (quantize_dynamic's
# default, every MatMul) rounds the hidden state to 8 bits per call and multiplies the
# next-step task error by about a thousand (docs/notes/issue-17.md).
INT8_OPS = ["LSTM"]
# What quantize_dynamic logs on the root logger on every call: advice to run its
# pre-processing (shape inference, graph optimisation), written for image models. Quantising
# the LSTM's weights needs none of it, and in a run's output it reads as a fault.
PRE_PROCESS_ADVICE = "Please consider to run pre-processing before quantization"
INT8_NODE = "DynamicQuantizeLSTM"
# TensorRT builds fp32 engines with TF32 unless this is "0" in the environment when CUDA starts
# (onnxruntime issue #26029); ONNX Runtime has no option of its own for it.
TF32_OVERRIDE = "NVIDIA_TF32_OVERRIDE"


def _import_ort():
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        return None, None, (f"{exc.name} is not installed: pip install -e '.[cpu]' (or '.[gpu]' "
                            "for CUDA)")
    return onnx, onnxruntime, None


def cuda_provider(target: Target) -> tuple[str, dict]:
    # ORT's CUDA EP enables TF32 by default; fp32 rows must be fp32 (see harness.core.settings).
    return ("CUDAExecutionProvider", {"use_tf32": int(target.allow_tf32)})


NUMPY_OF_TORCH = {torch.float32: np.float32, torch.float16: np.float16}
# A live stream's buffers are kept for this many streams at once; older ones are dropped, and a
# step on states the session no longer holds copies them into a new stream's buffers.
LIVE_STREAMS = 4
BINDINGS_PER_STREAM = 16  # per stream: a timer rotates 4 samples over the 2 state pairs


def bind(binding: Any, inputs: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> None:
    """Bind contiguous torch tensors (CPU or CUDA) as ONNX Runtime inputs and outputs, by
    address, without copies."""
    for bind_one, tensors in ((binding.bind_input, inputs), (binding.bind_output, outputs)):
        for name, t in tensors.items():
            if not t.is_contiguous():
                raise BackendError(f"cannot bind {name!r}: ONNX Runtime needs contiguous memory")
            bind_one(name, t.device.type, t.device.index or 0, NUMPY_OF_TORCH[t.dtype],
                     tuple(t.shape), t.data_ptr())


def run_bound(session: Any, binding: Any) -> None:
    binding.synchronize_inputs()
    session.run_with_iobinding(binding)
    binding.synchronize_outputs()


class OrtSession:
    """Common part of the CPU and CUDA sessions."""

    def __init__(self, session: Any, artifact: Artifact, export: Export) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name
        self._artifact = artifact
        self._export = export
        # The exported file fixes the element type (float or float16) of inputs and outputs.
        fp16 = session.get_inputs()[0].type == "tensor(float16)"
        self._np_dtype = np.float16 if fp16 else np.float32
        self._torch_dtype = torch.float16 if fp16 else torch.float32

    def diagnostics(self) -> dict:
        return {**self._artifact.facts(), **self._export.facts(),
                "providers": self._session.get_providers(),
                # As this process has it (a worker sets it before CUDA starts): TensorRT's
                # TF32 is off only with "0".
                "nvidia_tf32_override": os.environ.get(TF32_OVERRIDE)}

    def artifacts(self) -> dict[str, str]:
        return {str(self._artifact.path): self._artifact.sha256}


class OrtCpuSession(OrtSession, Session):
    def to_native(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=self._np_dtype)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run([self._output], {self._input: x})[0]

    def to_numpy(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float64)


class OrtBoundSession(OrtSession, Session):
    """I/O binding on torch tensors where the session runs (CUDA; the CPU in the tests, which
    exercise the same buffers and bindings): the input and a preallocated output are bound
    by address outside the clock, and ``run`` only runs."""

    def __init__(self, session: Any, artifact: Artifact, export: Export,
                 output_size: int, device: torch.device) -> None:
        super().__init__(session, artifact, export)
        self._output_size = output_size
        self._device = device
        self._rollouts: dict[tuple, BoundRollout] = {}

    def poisoned(self, shape: tuple[int, ...]) -> torch.Tensor:
        """An output buffer full of NaN: a fresh block may still hold an earlier call's
        answer, and a call in which ONNX Runtime wrote nothing would then pass its checks."""
        return torch.full(shape, float("nan"), dtype=self._torch_dtype, device=self._device)

    def device_tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=self._np_dtype)).to(self._device)

    def to_native(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, Any]:
        x_dev = self.device_tensor(x)
        y_dev = self.poisoned((x.shape[0], self._output_size))
        binding = self._session.io_binding()
        bind(binding, {self._input: x_dev}, {self._output: y_dev})
        return x_dev, y_dev, binding

    def run(self, x: tuple[torch.Tensor, torch.Tensor, Any]) -> torch.Tensor:
        _, y_dev, binding = x
        run_bound(self._session, binding)
        return y_dev

    def to_numpy(self, y: torch.Tensor) -> np.ndarray:
        return y.detach().to("cpu", torch.float64).numpy()

    def synchronize(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def rollout(self, window: np.ndarray, horizon: int) -> np.ndarray:
        """The window stays on the device, as the torch backends keep it (``BoundRollout``);
        its buffers and bindings are made at the first rollout of a shape and reused."""
        key = (window.shape, horizon)
        if key not in self._rollouts:
            # One shape is timed at a time: the buffers of older shapes are not needed again.
            self._rollouts = {key: BoundRollout(self, window.shape, horizon)}
        return self.to_numpy(self._rollouts[key].run(window))


class BoundRollout:
    """An autoregressive forecast on the device with two window buffers taking turns: step t
    runs on one, and the next window (shifted by a sample, the prediction appended) is
    written into the other, so each keeps the one binding it was given. The window goes to
    the device once and the forecast comes back once."""

    def __init__(self, owner: OrtBoundSession, shape: tuple[int, ...], horizon: int) -> None:
        batch = shape[0]
        self._owner = owner
        self._windows = [owner.poisoned(tuple(shape)) for _ in range(2)]
        self._y = owner.poisoned((batch, owner._output_size))
        self._forecast = owner.poisoned((batch, horizon, owner._output_size))
        self._bindings = []
        for window in self._windows:
            binding = owner._session.io_binding()
            bind(binding, {owner._input: window}, {owner._output: self._y})
            self._bindings.append(binding)

    def run(self, window: np.ndarray) -> torch.Tensor:
        owner = self._owner
        self._windows[0].copy_(owner.device_tensor(window))
        horizon = self._forecast.shape[1]
        for t in range(horizon):
            current, following = self._windows[t % 2], self._windows[(t + 1) % 2]
            # ONNX Runtime computes on a stream of its own: torch's copies into the window
            # must be finished before it reads it.
            owner.synchronize()
            run_bound(owner._session, self._bindings[t % 2])
            self._forecast[:, t] = self._y
            if t + 1 < horizon:
                following[:, :-1] = current[:, 1:]
                following[:, -1] = self._y
        return self._forecast


class OrtCpuStepSession(OrtSession, Session):
    """The streaming step model: native input and output are (x_t, h, c) tuples of arrays."""

    def to_native(self, xs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return tuple(np.ascontiguousarray(x, dtype=self._np_dtype) for x in xs)

    def run(self, x: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return tuple(self._session.run(list(STEP_OUTPUTS), dict(zip(STEP_INPUTS, x, strict=True))))

    def to_numpy(self, ys: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(y, dtype=np.float64) for y in ys)


class BoundStream:
    """One live stream's buffers where the session runs: two (h, c) pairs taking turns (a step
    reads one pair and writes the other), an output per pair, and a binding per (sample,
    pair) made the first time that sample meets that pair. A timer's samples are all met
    while it warms up, so its timed steps make no binding and allocate nothing."""

    def __init__(self, owner: OrtBoundSession, h: torch.Tensor, c: torch.Tensor) -> None:
        self._owner = owner
        self.states = [(owner.poisoned(tuple(h.shape)), owner.poisoned(tuple(c.shape)))
                       for _ in range(2)]
        self._ys = [owner.poisoned((h.shape[1], owner._output_size)) for _ in range(2)]
        self._bindings: dict[tuple, Any] = {}
        self.states[0][0].copy_(h)
        self.states[0][1].copy_(c)
        owner.synchronize()  # the copies are torch's; ONNX Runtime reads them on its own stream

    def side_of(self, h: torch.Tensor, c: torch.Tensor) -> int | None:
        """Which of this stream's state pairs (h, c) are, if they are one of them."""
        for side, (own_h, own_c) in enumerate(self.states):
            if h.data_ptr() == own_h.data_ptr() and c.data_ptr() == own_c.data_ptr() \
                    and h.shape == own_h.shape and c.shape == own_c.shape:
                return side
        return None

    def step(self, x_t: torch.Tensor, side: int) -> tuple[torch.Tensor, ...]:
        # A binding holds addresses, not tensors: whichever tensor sits at this address with
        # this shape is what the step reads, so the key cannot go stale.
        key = (x_t.data_ptr(), tuple(x_t.shape), side)
        binding = self._bindings.get(key)
        if binding is None:
            if len(self._bindings) >= BINDINGS_PER_STREAM:
                self._bindings.clear()
            binding = self._owner._session.io_binding()
            (h, c), (h_out, c_out) = self.states[side], self.states[1 - side]
            bind(binding, dict(zip(STEP_INPUTS, (x_t, h, c), strict=True)),
                 dict(zip(STEP_OUTPUTS, (self._ys[side], h_out, c_out), strict=True)))
            self._bindings[key] = binding
        run_bound(self._owner._session, binding)
        return (self._ys[side], *self.states[1 - side])


class OrtBoundStepSession(OrtBoundSession):
    """The step model with I/O binding: the state never leaves the device, and a live stream
    steps on buffers and bindings made before its timed calls (``BoundStream``).

    ``run`` returns the session's own buffers: y_t is valid until the next step of its
    stream, and the states until the step after that (the stream's next step reads them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._streams: list[BoundStream] = []

    def to_native(self, xs: tuple[np.ndarray, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(self.device_tensor(x) for x in xs)

    def run(self, x: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x_t, h, c = x
        for stream in self._streams:
            side = stream.side_of(h, c)
            if side is not None:
                return stream.step(x_t, side)
        # States from outside (a new stream's zeros): copied into a new stream's buffers.
        stream = BoundStream(self, h, c)
        self._streams = [*self._streams[-(LIVE_STREAMS - 1):], stream]
        return stream.step(x_t, 0)

    def to_numpy(self, ys: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, ...]:
        return tuple(super(OrtBoundStepSession, self).to_numpy(y) for y in ys)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    summary = "torch.onnx.export (dynamo, dynamic batch & seq_len) run by ONNX Runtime"
    in_default_set = True

    @classmethod
    def versions(cls) -> dict[str, str | None]:
        return {"onnx": module_version("onnx"), "onnxruntime": module_version("onnxruntime")}

    @classmethod
    def machine_facts(cls) -> dict:
        _, ort, _ = _import_ort()
        return {"providers": list(ort.get_available_providers()) if ort else []}

    @classmethod
    def gemm_gflops(cls, device: str, threads: int, seconds: float = 0.3,
                    size: int = 1024) -> float | None:
        """ONNX Runtime's MatMul on the CPU, with the harness's thread settings."""
        onnx, ort, reason = _import_ort()
        if reason or device != "cpu":
            return None
        from onnx import TensorProto, helper

        from harness.core.roofline import best_gflops

        spec = [size, size]
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, spec) for n in ("a", "b")],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT, spec)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                       providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {n: rng.standard_normal(spec, dtype=np.float32) for n in ("a", "b")}
        return best_gflops(lambda: session.run(None, feeds), 2.0 * size ** 3, seconds)

    def unavailable_reason(self, target: Target) -> str | None:
        _, ort, reason = _import_ort()
        if reason:
            return reason
        if target.dtype == "int8" and target.device != "cpu":
            return f"ONNX Runtime's dynamic int8 ({INT8_NODE}) runs on the CPU only"
        if target.dtype not in (*DTYPES, "int8"):
            return f"the ONNX backend exports {', '.join(DTYPES)} and int8 only, not {target.dtype}"
        provider = self.provider(target)
        if provider not in ort.get_available_providers():
            hint = (": install onnxruntime-gpu in place of onnxruntime (pip uninstall -y onnxruntime "
                    "&& pip install -e '.[gpu]')") if target.device == "cuda" else ""
            return f"onnxruntime has no {provider}{hint}"
        if target.device == "cuda" and not torch.cuda.is_available():
            return "CUDA is not available to torch, which allocates the bound device buffers"
        return None

    def provider(self, target: Target) -> str:
        return PROVIDERS.get(target.device, f"provider for device {target.device!r}")

    def providers(self, target: Target) -> list:
        """What the session is created with, most preferred first."""
        if target.device == "cuda":
            return [cuda_provider(target)]
        return [self.provider(target)]

    def load(self, model: LSTMPredictor, target: Target, step: bool
             ) -> tuple[Any, Artifact, Export]:
        """Export (in a subprocess) or find the file, verify and check it, open an ORT session
        on it: the ORT session, its file and how the file came to be."""
        _, ort, _ = _import_ort()
        if target.dtype == "int8":
            artifact, export = quantized_onnx(model, target, step)
        else:
            artifact, export = verified_onnx(model, step, target.dtype)
        options = ort.SessionOptions()
        options.intra_op_num_threads = target.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if target.ort_allow_spinning else "0")
        session = ort.InferenceSession(str(artifact.verified_path()), sess_options=options,
                                       providers=self.providers(target))
        reason = self.not_started(session, target)
        if reason:
            raise BackendUnavailableError(reason)
        return session, artifact, export

    def not_started(self, session: Any, target: Target) -> str | None:
        """Why ``session`` does not run on the provider ``target`` needs, if it does not.

        ORT falls back to the next provider (finally CPU) with only a logged warning when one
        cannot start (its CUDA, cuDNN or TensorRT libraries missing, a driver too old for its
        CUDA): that would time the wrong device."""
        wanted = self.provider(target)
        if wanted in session.get_providers():
            return None
        return (f"onnxruntime could not start {wanted} (a session runs on "
                f"{', '.join(session.get_providers())}); its CUDA, cuDNN or TensorRT libraries "
                "are missing, or the NVIDIA driver is older than its CUDA needs")

    def start_reason(self, target: Target) -> str | None:
        """Opens a session on a one-node model with this target's providers, as a run would."""
        onnx, ort, _ = _import_ort()
        from onnx import TensorProto, helper

        spec = ["n"]
        graph = helper.make_graph(
            [helper.make_node("Relu", ["a"], ["b"])], "probe",
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, spec)],
            [helper.make_tensor_value_info("b", TensorProto.FLOAT, spec)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        try:
            with warnings.catch_warnings():  # ORT warns of the fallback that the reason names
                warnings.simplefilter("ignore")
                session = ort.InferenceSession(model.SerializeToString(),
                                               providers=self.providers(target))
        except Exception as exc:  # noqa: BLE001 - any failure to start is the reason
            return f"onnxruntime could not open a session with {self.provider(target)}: {exc}"
        return self.not_started(session, target)

    def prepare(self, model: LSTMPredictor, target: Target) -> Session:
        loaded = self.load(model, target, step=False)
        if target.device == "cuda":
            return OrtBoundSession(*loaded, model.config.output_size, target.torch_device)
        return OrtCpuSession(*loaded)

    def prepare_step(self, model: LSTMPredictor, target: Target) -> Session:
        loaded = self.load(model, target, step=True)
        if target.device == "cuda":
            return OrtBoundStepSession(*loaded, model.config.output_size, target.torch_device)
        return OrtCpuStepSession(*loaded)


class _Without(logging.Filter):
    """Drops the log records that start with ``prefix``; every other record passes."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def quantized_onnx(model: LSTMPredictor, target: Target, step: bool) -> tuple[Artifact, Export]:
    """ONNX Runtime's dynamic int8: the fp32 export with its LSTM quantised by
    ``quantize_dynamic`` (int8 weights, activations quantised per call), refused unless the
    LSTM really became ``DynamicQuantizeLSTM``.

    The TorchScript exporter writes the LSTM's weights as initializers, which is what
    ``quantize_dynamic`` quantises; the dynamo exporter computes them in the graph, and the
    quantiser then leaves the LSTM in fp32 without a word (torch 2.13, onnxruntime 1.32)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, export = verified_onnx(model, step, "fp32", exporter="torchscript")
    path = onnx_path(target, "lstm", step, "int8")
    artifact = Artifact.reused(path, target)
    quantize_s = 0.0
    if artifact is None:
        start = time.perf_counter()
        root, advice = logging.getLogger(), _Without(PRE_PROCESS_ADVICE)
        root.addFilter(advice)
        try:
            quantize_dynamic(str(source.verified_path()), str(path), weight_type=QuantType.QInt8,
                             op_types_to_quantize=INT8_OPS)
        finally:
            root.removeFilter(advice)
        quantize_s = time.perf_counter() - start
        artifact = Artifact.record(path)
    quantized = onnx.load(str(artifact.verified_path()))
    if INT8_NODE not in {node.op_type for node in quantized.graph.node}:
        raise BackendError(f"quantize_dynamic left the LSTM in fp32 (no {INT8_NODE} node): "
                           "this row would not be int8")
    check_dynamic_axes(quantized, step)
    return artifact, replace(export, export_s=export.export_s + quantize_s,
                             exporter=f"{export.exporter} + quantize_dynamic")


class OnnxRuntimeTensorRTBackend(OnnxRuntimeBackend):
    """ONNX Runtime's TensorRT execution provider, when the installed build has it."""

    name = "onnxruntime-trt"
    summary = "ONNX Runtime with TensorrtExecutionProvider (engine cache in the work directory)"
    devices = ("cuda",)

    def unavailable_reason(self, target: Target) -> str | None:
        if target.device != "cuda":
            return "TensorRT runs on --device cuda only"
        reason = super().unavailable_reason(target)
        if reason is None:
            # onnxruntime-gpu lists this provider whether or not TensorRT itself is installed.
            try:
                ctypes.CDLL(TENSORRT_LIBRARY)
            except OSError:
                return (f"onnxruntime lists TensorRT, but {TENSORRT_LIBRARY} cannot be loaded: "
                        "install TensorRT 10")
        return reason

    def provider(self, target: Target) -> str:
        return "TensorrtExecutionProvider"

    def environment(self, target: Target) -> dict[str, str]:
        if target.device == "cuda" and target.dtype == "fp32" and not target.allow_tf32:
            return {TF32_OVERRIDE: "0"}
        return {}

    def providers(self, target: Target) -> list:
        cache = target.workdir / "trt-engine-cache"
        cache.mkdir(parents=True, exist_ok=True)
        # Building an engine takes seconds to minutes; the cache makes later runs cheap, and
        # CUDA takes any node TensorRT refuses.
        return [("TensorrtExecutionProvider", {"trt_engine_cache_enable": True,
                                               "trt_engine_cache_path": str(cache)}),
                cuda_provider(target)]

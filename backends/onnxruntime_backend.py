"""ONNX Runtime on an exported .onnx file: CPUExecutionProvider, or CUDA with I/O binding.

On CUDA the inputs and outputs stay in device memory (torch tensors bound through
``io_binding``), so no host copy sits inside the timed call.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

import numpy as np
import torch

from backends.artifacts import Artifact
from backends.base import Backend, Session, Target, module_version
from backends.onnx_export import DTYPES, OPSET, STEP_INPUTS, STEP_OUTPUTS
from backends.onnx_file import REUSED, check_dynamic_axes, onnx_path, verified_onnx
from harness.core.errors import BackendError, BackendUnavailableError
from harness.core.model import LSTMPredictor

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# The TensorRT major version onnxruntime-gpu 1.2x and 1.3x are built against.
TENSORRT_LIBRARY = "libnvinfer.so.10"
# int8 quantises the LSTM only: quantising the 64 -> 1 head as well (quantize_dynamic's
# default, every MatMul) rounds the hidden state to 8 bits per call and multiplies the
# next-step task error by about a thousand (docs/notes/issue-17.md).
INT8_OPS = ["LSTM"]
INT8_NODE = "DynamicQuantizeLSTM"


def _import_ort():
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        return None, None, f"{exc.name} is not installed: pip install onnx onnxruntime"
    return onnx, onnxruntime, None


def cuda_provider(target: Target) -> tuple[str, dict]:
    # ORT's CUDA EP enables TF32 by default; fp32 rows must be fp32 (see harness.settings).
    return ("CUDAExecutionProvider", {"use_tf32": int(target.allow_tf32)})


NUMPY_OF_TORCH = {torch.float32: np.float32, torch.float16: np.float16}


def bind_cuda(binding: Any, inputs: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> None:
    """Bind CUDA tensors as ONNX Runtime inputs and outputs, without copies."""
    for bind, tensors in ((binding.bind_input, inputs), (binding.bind_output, outputs)):
        for name, t in tensors.items():
            bind(name, "cuda", t.device.index or 0, NUMPY_OF_TORCH[t.dtype], tuple(t.shape),
                 t.data_ptr())


class OrtSession:
    """Common part of the CPU and CUDA sessions."""

    def __init__(self, session: Any, artifact: Artifact, export: tuple[float, str]) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name
        self._artifact = artifact
        self._export_s, self._exporter = export
        # The exported file fixes the element type (float or float16) of inputs and outputs.
        fp16 = session.get_inputs()[0].type == "tensor(float16)"
        self._np_dtype = np.float16 if fp16 else np.float32
        self._torch_dtype = torch.float16 if fp16 else torch.float32

    def diagnostics(self) -> dict:
        return {**self._artifact.facts(), "export_s": self._export_s, "exporter": self._exporter,
                "providers": self._session.get_providers()}

    def artifacts(self) -> dict[str, str]:
        return {str(self._artifact.path): self._artifact.sha256}


class OrtCpuSession(OrtSession, Session):
    def to_native(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=self._np_dtype)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run([self._output], {self._input: x})[0]

    def to_numpy(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float64)


class OrtCudaSession(OrtSession, Session):
    """I/O binding on device memory: the input and a preallocated output are torch CUDA tensors."""

    def __init__(self, session: Any, artifact: Artifact, export: tuple[float, str],
                 output_size: int) -> None:
        super().__init__(session, artifact, export)
        self._output_size = output_size
        self._device = torch.device("cuda")

    def to_native(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, Any]:
        x_dev = torch.from_numpy(np.ascontiguousarray(x, dtype=self._np_dtype)).to(self._device)
        y_dev = torch.empty((x.shape[0], self._output_size), dtype=self._torch_dtype, device=self._device)
        binding = self._session.io_binding()
        bind_cuda(binding, {self._input: x_dev}, {self._output: y_dev})
        return x_dev, y_dev, binding

    def run(self, x: tuple[torch.Tensor, torch.Tensor, Any]) -> torch.Tensor:
        _, y_dev, binding = x
        binding.synchronize_inputs()
        self._session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return y_dev

    def to_numpy(self, y: torch.Tensor) -> np.ndarray:
        return y.detach().to("cpu", torch.float64).numpy()

    def synchronize(self) -> None:
        torch.cuda.synchronize()


class OrtCpuStepSession(OrtSession, Session):
    """The streaming step model: native input and output are (x_t, h, c) tuples of arrays."""

    def to_native(self, xs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return tuple(np.ascontiguousarray(x, dtype=self._np_dtype) for x in xs)

    def run(self, x: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return tuple(self._session.run(list(STEP_OUTPUTS), dict(zip(STEP_INPUTS, x, strict=True))))

    def to_numpy(self, ys: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(y, dtype=np.float64) for y in ys)


class OrtCudaStepSession(OrtCudaSession):
    """The step model on CUDA: each call binds the state tensors in place and fresh outputs, so
    the state never leaves the device."""

    def to_native(self, xs: tuple[np.ndarray, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(np.ascontiguousarray(x, dtype=self._np_dtype)).to(self._device)
                     for x in xs)

    def run(self, x: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x_t, h, c = x
        outputs = (torch.empty((x_t.shape[0], self._output_size), dtype=x_t.dtype, device=x_t.device),
                   torch.empty_like(h), torch.empty_like(c))
        binding = self._session.io_binding()
        bind_cuda(binding, dict(zip(STEP_INPUTS, x, strict=True)),
                  dict(zip(STEP_OUTPUTS, outputs, strict=True)))
        binding.synchronize_inputs()
        self._session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return outputs

    def to_numpy(self, ys: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, ...]:
        return tuple(super(OrtCudaStepSession, self).to_numpy(y) for y in ys)


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
            hint = ": install onnxruntime-gpu" if target.device == "cuda" else ""
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

    def _load(self, model: LSTMPredictor, target: Target, step: bool
              ) -> tuple[Any, Artifact, tuple[float, str]]:
        """Export (in a subprocess), verify and check the file, open an ORT session on it."""
        _, ort, _ = _import_ort()
        if target.dtype == "int8":
            artifact, export = quantized_onnx(model, target, step)
        else:
            artifact, export = verified_onnx(model, target, "lstm", step, target.dtype)
        options = ort.SessionOptions()
        options.intra_op_num_threads = target.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if target.ort_allow_spinning else "0")
        session = ort.InferenceSession(str(artifact.verified_path()), sess_options=options,
                                       providers=self.providers(target))
        wanted = self.provider(target)
        if wanted not in session.get_providers():
            # ORT falls back to the next provider (finally CPU) with only a logged warning when
            # one cannot load its libraries (cuDNN, TensorRT): that would time the wrong device.
            raise BackendUnavailableError(
                f"onnxruntime could not start {wanted} (session runs on {session.get_providers()}); "
                "its CUDA, cuDNN or TensorRT libraries are missing")
        return session, artifact, export

    def prepare(self, model: LSTMPredictor, target: Target) -> Session:
        loaded = self._load(model, target, step=False)
        if target.device == "cuda":
            return OrtCudaSession(*loaded, model.config.output_size)
        return OrtCpuSession(*loaded)

    def prepare_step(self, model: LSTMPredictor, target: Target) -> Session:
        loaded = self._load(model, target, step=True)
        if target.device == "cuda":
            return OrtCudaStepSession(*loaded, model.config.output_size)
        return OrtCpuStepSession(*loaded)


def quantized_onnx(model: LSTMPredictor, target: Target, step: bool
                   ) -> tuple[Artifact, tuple[float, str]]:
    """ONNX Runtime's dynamic int8: the fp32 export with its LSTM quantised by
    ``quantize_dynamic`` (int8 weights, activations quantised per call), refused unless the
    LSTM really became ``DynamicQuantizeLSTM``.

    The TorchScript exporter writes the LSTM's weights as initializers, which is what
    ``quantize_dynamic`` quantises; the dynamo exporter computes them in the graph, and the
    quantiser then leaves the LSTM in fp32 without a word (torch 2.13, onnxruntime 1.32)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = onnx_path(target, "lstm", step, "int8")
    artifact = Artifact.reused(path, target)
    export = (0.0, REUSED)
    if artifact is None:
        source, (export_s, exporter) = verified_onnx(model, target, "lstm-int8-source", step,
                                                     "fp32", exporter="torchscript")
        start = time.perf_counter()
        quantize_dynamic(str(source.verified_path()), str(path), weight_type=QuantType.QInt8,
                         op_types_to_quantize=INT8_OPS)
        export = (export_s + time.perf_counter() - start, f"{exporter} + quantize_dynamic")
        artifact = Artifact.record(path)
    quantized = onnx.load(str(artifact.verified_path()))
    if INT8_NODE not in {node.op_type for node in quantized.graph.node}:
        raise BackendError(f"quantize_dynamic left the LSTM in fp32 (no {INT8_NODE} node): "
                           "this row would not be int8")
    check_dynamic_axes(quantized, step)
    return artifact, export


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

    def providers(self, target: Target) -> list:
        cache = target.workdir / "trt-engine-cache"
        cache.mkdir(parents=True, exist_ok=True)
        # Building an engine takes seconds to minutes; the cache makes later runs cheap, and
        # CUDA takes any node TensorRT refuses.
        return [("TensorrtExecutionProvider", {"trt_engine_cache_enable": True,
                                               "trt_engine_cache_path": str(cache)}),
                cuda_provider(target)]

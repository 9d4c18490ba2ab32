"""OpenVINO's CPU plugin on the exported ONNX file (its LSTM becomes ``LSTMSequence``), with
batch and seq_len dynamic.

The trap it guards against: OpenVINO picks its inference precision from the processor, and
on a CPU with AVX-512 BF16 (or AMX) its default is bf16, so a model compiled without a
precision hint answers in bf16 while everything around it says fp32. Every row here sets
``INFERENCE_PRECISION_HINT`` from the row's dtype and reads it back from the compiled model;
a row whose precision the runtime did not honour fails rather than carry the wrong label.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.artifacts import Artifact
from backends.base import Backend, Session, Target, module_version
from backends.onnx_export import STEP_INPUTS
from backends.onnx_file import Export, verified_onnx
from harness.core.errors import BackendError
from harness.core.model import LSTMPredictor

INSTALL = "pip install 'lstm-harness[openvino]' (or pip install openvino)"
# dtype -> (the inference precision it asks for, the CPU capability that precision needs)
PRECISIONS = {"fp32": ("f32", "FP32"), "bf16": ("bf16", "BF16"), "fp16": ("f16", "FP16")}
# One request at a time, as the harness calls it: the latency hint gives one stream.
PERFORMANCE_HINT = "LATENCY"
# Read back from the compiled model into each row's diagnostics.
READ_BACK = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS",
             "EXECUTION_DEVICES")


def _import_openvino() -> Any | None:
    try:
        import openvino
    except ImportError:
        return None
    return openvino


def cpu_capabilities(core: Any) -> list[str]:
    return list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def default_precision(core: Any) -> str:
    """The inference precision OpenVINO's CPU plugin picks when nobody asks: bf16 on a CPU
    with AVX-512 BF16 or AMX, f32 elsewhere."""
    return core.get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()


def compile_config(precision: str | None, threads: int) -> dict[str, Any]:
    """What every compile asks for; ``precision`` None leaves OpenVINO's default (the trap)."""
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": PERFORMANCE_HINT}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    return config


def read_back(compiled: Any) -> dict[str, Any]:
    """The properties the compiled model really runs with, as plain values."""
    facts = {}
    for key in READ_BACK:
        value = compiled.get_property(key)
        facts[key.lower()] = value.to_string() if hasattr(value, "to_string") else \
            list(value) if isinstance(value, list | tuple) else value if isinstance(value, int) \
            else str(value)
    return facts


def require_precision(facts: dict[str, Any], wanted: str, dtype: str) -> None:
    got = facts["inference_precision_hint"]
    if got != wanted:
        raise BackendError(f"OpenVINO compiled the model to infer in {got}, not the {wanted} a "
                           f"{dtype} row asks for: refusing to report it as {dtype}")


class OpenVinoSession(Session):
    """One compiled model and its infer request; native inputs are float32 arrays (a tuple
    of them for the step model)."""

    def __init__(self, compiled: Any, artifact: Artifact, export: Export,
                 facts: dict[str, Any], step: bool) -> None:
        self._request = compiled.create_infer_request()
        self._outputs = len(compiled.outputs)
        self._artifact = artifact
        self._export = export
        self._facts = facts
        self._step = step

    def to_native(self, x: Any) -> Any:
        if self._step:
            return tuple(np.ascontiguousarray(a, dtype=np.float32) for a in x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def run(self, x: Any) -> Any:
        feeds = dict(zip(STEP_INPUTS, x, strict=True)) if self._step else {0: x}
        results = self._request.infer(feeds)
        if self._step:
            return tuple(results[i] for i in range(self._outputs))
        return results[0]

    def to_numpy(self, y: Any) -> Any:
        if self._step:
            return tuple(np.asarray(a, dtype=np.float64) for a in y)
        return np.asarray(y, dtype=np.float64)

    def diagnostics(self) -> dict:
        return {**self._artifact.facts(), **self._export.facts(), **self._facts}

    def artifacts(self) -> dict[str, str]:
        return {str(self._artifact.path): self._artifact.sha256}


class OpenVinoBackend(Backend):
    name = "openvino"
    summary = "OpenVINO CPU plugin on the ONNX export, inference precision forced and read back"
    devices = ("cpu",)
    in_default_set = True

    @classmethod
    def versions(cls) -> dict[str, str | None]:
        return {"openvino": module_version("openvino")}

    @classmethod
    def machine_facts(cls) -> dict:
        ov = _import_openvino()
        if ov is None:
            return {}
        core = ov.Core()
        return {"devices": list(core.available_devices), "cpu_capabilities": cpu_capabilities(core),
                "cpu_default_inference_precision": default_precision(core)}

    @classmethod
    def gemm_gflops(cls, device: str, threads: int, seconds: float = 0.3,
                    size: int = 1024) -> float | None:
        """OpenVINO's MatMul on the CPU in f32, on the harness's threads."""
        ov = _import_openvino()
        if ov is None or device != "cpu":
            return None
        from openvino import opset13

        from harness.core.roofline import best_gflops

        a, b = (opset13.parameter([size, size], ov.Type.f32, name=n) for n in ("a", "b"))
        model = ov.Model([opset13.matmul(a, b, False, False)], [a, b], "gemm")
        compiled = ov.Core().compile_model(model, "CPU", compile_config("f32", threads))
        request = compiled.create_infer_request()
        rng = np.random.default_rng(0)
        feeds = {0: rng.standard_normal((size, size), dtype=np.float32),
                 1: rng.standard_normal((size, size), dtype=np.float32)}
        return best_gflops(lambda: request.infer(feeds), 2.0 * size ** 3, seconds)

    def unavailable_reason(self, target: Target) -> str | None:
        ov = _import_openvino()
        if ov is None:
            return f"openvino is not installed: {INSTALL}"
        if target.device != "cpu":
            return "this backend runs OpenVINO's CPU plugin only"
        if target.dtype == "int8":
            return ("no int8 path here: OpenVINO reads ONNX Runtime's int8 file as int8 weights "
                    "dequantised to f32 (no int8 arithmetic), and NNCF post-training "
                    "quantisation is not wired in")
        if target.dtype not in PRECISIONS:
            return f"unknown dtype {target.dtype!r}"
        precision, capability = PRECISIONS[target.dtype]
        capabilities = cpu_capabilities(ov.Core())
        if capability not in capabilities:
            return (f"OpenVINO's CPU plugin has no {precision} on this processor (its "
                    f"capabilities: {', '.join(capabilities)}); it would compute in f32")
        return None

    def precision_hint(self, target: Target) -> str | None:
        """The inference precision to ask for; None would leave OpenVINO's default."""
        return PRECISIONS[target.dtype][0]

    def _compiled(self, model: LSTMPredictor, target: Target, step: bool) -> OpenVinoSession:
        import openvino as ov

        artifact, export = verified_onnx(model, step)
        core = ov.Core()
        network = core.read_model(str(artifact.verified_path()))
        wanted = PRECISIONS[target.dtype][0]
        compiled = core.compile_model(network, "CPU",
                                      compile_config(self.precision_hint(target), target.threads))
        facts = read_back(compiled)
        require_precision(facts, wanted, target.dtype)
        return OpenVinoSession(compiled, artifact, export, facts, step)

    def prepare(self, model: LSTMPredictor, target: Target) -> Session:
        return self._compiled(model, target, step=False)

    def prepare_step(self, model: LSTMPredictor, target: Target) -> Session:
        return self._compiled(model, target, step=True)

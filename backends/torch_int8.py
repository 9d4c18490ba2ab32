"""torch's dynamic int8 (``torch.ao.quantization.quantize_dynamic``) on the LSTM, run eagerly.

torch 2.13 still ships it for ``nn.LSTM`` but deprecates it (torchao, its successor, has no
LSTM path); the deprecation torch raises is recorded in the row's diagnostics. Only the LSTM
is quantised, as in ONNX Runtime's int8, so the two int8 rows differ in runtime, not scheme.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import torch

from backends.base import Backend, Session, Target, TorchSession, TorchStepSession, copy_model
from harness.core.model import LSTMPredictor, LSTMStep

SCHEME = "torch.ao.quantization.quantize_dynamic: nn.LSTM, qint8 weights, activations per call"


class QuantisedSession(TorchSession):
    def __init__(self, fn, target: Target, deprecation: str | None) -> None:
        super().__init__(fn, target)
        self._deprecation = deprecation

    def diagnostics(self) -> dict:
        return {"quantization": SCHEME, "deprecation": self._deprecation}


class QuantisedStepSession(TorchStepSession, QuantisedSession):
    """The step model around the same quantised LSTM."""


def quantised(model: LSTMPredictor, target: Target) -> tuple[LSTMPredictor, str | None]:
    """The model with its LSTM dynamically quantised, and torch's deprecation warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = torch.ao.quantization.quantize_dynamic(copy_model(model, target), {torch.nn.LSTM},
                                                       dtype=torch.qint8)
    deprecations = [str(w.message).strip().splitlines()[0] for w in caught
                    if issubclass(w.category, DeprecationWarning | FutureWarning)]
    return model, deprecations[0] if deprecations else None


class TorchInt8Backend(Backend):
    name = "torch-int8"
    summary = "torch's dynamic int8 on the LSTM (torch.ao, deprecated), eager"
    devices = ("cpu",)
    dtypes = ("int8",)
    in_default_set = True

    def unavailable_reason(self, target: Target) -> str | None:
        if target.device != "cpu":
            return "torch's dynamic int8 kernels run on the CPU only"
        if target.dtype != "int8":
            return f"dynamic quantisation makes int8 only, not {target.dtype}"
        if not hasattr(torch.ao.quantization, "quantize_dynamic"):
            return f"torch {torch.__version__} no longer ships torch.ao dynamic quantisation"
        return None

    def _fp32(self, target: Target) -> Target:
        # Inputs and outputs stay float32 around the quantised LSTM.
        return replace(target, dtype="fp32")

    def prepare(self, model: LSTMPredictor, target: Target) -> Session:
        target = self._fp32(target)
        module, deprecation = quantised(model, target)
        return QuantisedSession(module, target, deprecation)

    def prepare_step(self, model: LSTMPredictor, target: Target) -> Session:
        target = self._fp32(target)
        module, deprecation = quantised(model, target)
        return QuantisedStepSession(LSTMStep(module), target, deprecation)

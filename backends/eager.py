"""Plain PyTorch under inference_mode: the baseline every speedup is measured against."""

from __future__ import annotations

from backends.base import Backend, Session, Target, TorchSession, TorchStepSession, copy_model, torch_reason
from harness.core.model import LSTMPredictor, LSTMStep


class EagerBackend(Backend):
    name = "eager"
    summary = "PyTorch eager under torch.inference_mode"
    in_default_set = True

    def unavailable_reason(self, target: Target) -> str | None:
        return torch_reason(target)

    def prepare(self, model: LSTMPredictor, target: Target) -> Session:
        return TorchSession(copy_model(model, target), target)

    def prepare_step(self, model: LSTMPredictor, target: Target) -> Session:
        return TorchStepSession(LSTMStep(copy_model(model, target)), target)

"""Plain PyTorch under inference_mode: the baseline every speedup is measured against."""

from __future__ import annotations

from backends.base import Backend, Session, Target, TorchSession, copy_model, torch_reason
from harness.model import LSTMPredictor


class EagerBackend(Backend):
    name = "eager"
    summary = "PyTorch eager under torch.inference_mode"

    def unavailable_reason(self, target: Target) -> str | None:
        return torch_reason(target)

    def prepare(self, model: LSTMPredictor, target: Target) -> Session:
        return TorchSession(copy_model(model, target), target)

"""Plain PyTorch under inference_mode: the baseline every speedup is measured against.

In a quantised dtype's run (int8) eager is the fp32 model: the quantised rows' speedups and
accuracy costs are then against the model they would replace.
"""

from __future__ import annotations

from dataclasses import replace

from backends.base import Backend, Session, Target, TorchSession, TorchStepSession, copy_model, torch_reason
from harness.core.model import LSTMPredictor, LSTMStep
from harness.core.targets import QUANTISED


class EagerBackend(Backend):
    name = "eager"
    summary = "PyTorch eager under torch.inference_mode"
    in_default_set = True

    def computes_in(self, dtype: str) -> str:
        return "fp32" if dtype in QUANTISED else dtype

    def _target(self, target: Target) -> Target:
        return replace(target, dtype=self.computes_in(target.dtype))

    def unavailable_reason(self, target: Target) -> str | None:
        return torch_reason(self._target(target))

    def prepare(self, model: LSTMPredictor, target: Target) -> Session:
        target = self._target(target)
        return TorchSession(copy_model(model, target), target)

    def prepare_step(self, model: LSTMPredictor, target: Target) -> Session:
        target = self._target(target)
        return TorchStepSession(LSTMStep(copy_model(model, target)), target)

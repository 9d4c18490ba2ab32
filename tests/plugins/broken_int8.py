"""A deliberately broken int8 backend, registered the way a third party would (``--plugin``).

Its LSTM weights are rounded to int8 with a scale eight times too coarse (the per-tensor
scale taken as max|w| / 16 instead of max|w| / 127, as if the range were 5 bits): every
number it answers stays within the int8 elementwise band, yet its forecasts lose the sine.
Only the task check can tell, which is what it is here to prove.
"""

from dataclasses import replace

import torch

from backends.base import Backend, Target, TorchSession, copy_model

WRONG_LEVELS = 16  # the right scale divides max|w| by 127


def fake_quantised(weight: torch.Tensor) -> torch.Tensor:
    scale = weight.abs().max() / WRONG_LEVELS
    return torch.clamp(torch.round(weight / scale), -127, 127) * scale


class BrokenInt8Backend(Backend):
    name = "broken-int8"
    summary = "int8 weights quantised with the wrong scale: fails the task check on purpose"
    devices = ("cpu",)
    dtypes = ("int8",)

    def unavailable_reason(self, target: Target):
        return None if (target.device, target.dtype) == ("cpu", "int8") else "cpu int8 only"

    def prepare(self, model, target):
        target = replace(target, dtype="fp32")
        model = copy_model(model, target)
        with torch.no_grad():
            for name, parameter in model.lstm.named_parameters():
                if name.startswith("weight"):
                    parameter.copy_(fake_quantised(parameter))
        return TorchSession(model, target)


BACKENDS = [BrokenInt8Backend]

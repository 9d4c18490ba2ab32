"""Deliberately wrong backends, registered the way a third party would (``--plugin``).

``wrong`` is off by 1e-3, outside the fp32 band at once. ``drifting`` is off by 5e-6, inside
the one-step band, but the bias is fed back in a rollout and piles up until it leaves the
rollout band before the horizon. ``wrong-at-64`` is off by 1e-3 on batches of 64 or more
only. None has a streaming step model.
"""

from backends.base import Backend, Target, TorchSession, copy_model, torch_reason


class BiasedSession(TorchSession):
    def __init__(self, fn, target: Target, bias: float) -> None:
        super().__init__(fn, target)
        self._bias = bias

    def run(self, x):
        return super().run(x) + self._bias


class WrongBackend(Backend):
    name = "wrong"
    summary = "eager plus 1e-3: disagrees with the reference on purpose"
    bias = 1e-3

    def unavailable_reason(self, target: Target):
        return torch_reason(target)

    def prepare(self, model, target):
        return BiasedSession(copy_model(model, target), target, self.bias)


class LargeBatchSession(BiasedSession):
    def run(self, x):
        return super().run(x) if x.shape[0] >= 64 else TorchSession.run(self, x)


class WrongAtLargeBatchBackend(WrongBackend):
    name = "wrong-at-64"
    summary = "eager, plus 1e-3 on batches of 64 or more: right at one shape, wrong at another"

    def prepare(self, model, target):
        return LargeBatchSession(copy_model(model, target), target, self.bias)


class DriftingBackend(WrongBackend):
    name = "drifting"
    summary = "eager plus 5e-6: agrees on one step, drifts over a rollout"
    bias = 5e-6


BACKENDS = [WrongBackend, DriftingBackend, WrongAtLargeBatchBackend]

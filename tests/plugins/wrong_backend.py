"""A deliberately wrong backend, registered the way a third party would (``--plugin``)."""

from backends.base import Backend, Target, TorchSession, copy_model, torch_reason


class BiasedSession(TorchSession):
    def run(self, x):
        return super().run(x) + 1e-3


class WrongBackend(Backend):
    name = "wrong"
    summary = "eager plus 1e-3: disagrees with the reference on purpose"

    def unavailable_reason(self, target: Target):
        return torch_reason(target)

    def prepare(self, model, target):
        return BiasedSession(copy_model(model, target), target)


BACKENDS = [WrongBackend]

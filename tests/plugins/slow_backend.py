"""A backend exactly k times slower than eager: each call is k calls of the eager model.

Its answers are eager's, so it agrees; its speedup against eager must come out near 1/k,
which pins the direction of ``speedup_vs_eager`` (eager's time over the backend's) and the
pairing of rounds behind it.
"""

from backends.base import Backend, Target, TorchSession, copy_model, torch_reason

K = 3


class RepeatedSession(TorchSession):
    def run(self, x):
        for _ in range(K - 1):
            super().run(x)
        return super().run(x)


class ThriceEager(Backend):
    name = "thrice-eager"
    summary = f"eager called {K} times per call: exactly {K}x slower than eager"

    def unavailable_reason(self, target: Target):
        return torch_reason(target)

    def prepare(self, model, target):
        return RepeatedSession(copy_model(model, target), target)


BACKENDS = [ThriceEager]

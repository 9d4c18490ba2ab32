"""Backends for the serving tests, registered the way a third party would (``--plugin``).

``sleepy`` is eager plus a 2 ms sleep in every call: called one batch at a time, it cannot
answer more than 500 calls a second. ``wrong-under-load`` answers like eager for its first
``AFTER`` calls, which cover the first call and the agreement checks (19 calls over the
default grid, 7 for a serving mode's), then off by 1e-3: a fault that only sustained
traffic reaches, which the checks made while the backend is idle never see.
"""

import time

from backends.base import Backend, Target, TorchSession, copy_model, torch_reason

SLEEP_S = 2e-3
AFTER = 20


class SleepySession(TorchSession):
    def run(self, x):
        time.sleep(SLEEP_S)
        return super().run(x)


class WrongUnderLoadSession(TorchSession):
    calls = 0

    def run(self, x):
        self.calls += 1
        y = super().run(x)
        return y + 1e-3 if self.calls > AFTER else y


class _Eager(Backend):
    session: type[TorchSession] = TorchSession

    def unavailable_reason(self, target: Target):
        return torch_reason(target)

    def prepare(self, model, target):
        return self.session(copy_model(model, target), target)


class SleepyBackend(_Eager):
    name, summary, session = "sleepy", "eager plus a 2 ms sleep in every call", SleepySession


class WrongUnderLoadBackend(_Eager):
    name, summary = "wrong-under-load", f"eager, then off by 1e-3 after {AFTER} calls"
    session = WrongUnderLoadSession


BACKENDS = [SleepyBackend, WrongUnderLoadBackend]

"""Backends that fail on purpose, registered the way a third party would (``--plugin``).

Each is eager underneath, so a run beside the real eager shows that only its own rows suffer.
The ones that fail while running do so after ``AFTER`` calls, past preparation and the
agreement checks, so the failure lands in the round-robin timing.
"""

import ctypes
import os
import time

import torch

from backends.base import Backend, Target, TorchSession, copy_model, torch_reason

AFTER = 29  # the first call and the 27 checks of the default grid at batch 1 take 28 calls


class _Faulty(Backend):
    session: type[TorchSession] = TorchSession

    def unavailable_reason(self, target: Target):
        return torch_reason(target)

    def prepare(self, model, target):
        return self.session(copy_model(model, target), target)


class _LateSession(TorchSession):
    """Runs like eager for AFTER calls, then calls ``fault``."""

    calls = 0

    def run(self, x):
        self.calls += 1
        if self.calls > AFTER:
            self.fault()
        return super().run(x)


class _Segfault(_LateSession):
    def fault(self):
        ctypes.string_at(0)  # reads address 0: SIGSEGV


class _Hang(_LateSession):
    def fault(self):
        time.sleep(3600)


class _Raise(_LateSession):
    def fault(self):
        raise RuntimeError("injected failure in run")


class _NanSession(TorchSession):
    def run(self, x):
        return torch.full_like(super().run(x), float("nan"))


class _StaleSession(TorchSession):
    """A stale cache: answers every call with the previous call's output."""

    previous = None

    def run(self, x):
        y = super().run(x)
        answer = y if self.previous is None else self.previous
        self.previous = y
        return answer


class SegfaultBackend(_Faulty):
    name, summary, session = "segfault", "segfaults while being timed", _Segfault


class HangBackend(_Faulty):
    name, summary, session = "hang", "hangs while being timed", _Hang


class RaiseBackend(_Faulty):
    name, summary, session = "raises", "raises while being timed", _Raise


class NanBackend(_Faulty):
    name, summary, session = "nan", "returns NaN", _NanSession


class StaleBackend(_Faulty):
    name, summary, session = "stale", "returns the previous call's output", _StaleSession


class AbortBackend(_Faulty):
    name, summary = "abort", "aborts the process while preparing"

    def prepare(self, model, target):
        os.abort()


BACKENDS = [SegfaultBackend, HangBackend, RaiseBackend, NanBackend, StaleBackend, AbortBackend]

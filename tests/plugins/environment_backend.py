"""A backend that declares an environment variable, as TensorRT declares NVIDIA_TF32_OVERRIDE,
and reports in its diagnostics what the process it ran in had: the variable, and how many
objects the garbage collector had frozen by the time its facts were asked."""

import gc
import os

from backends.base import Target, TorchSession
from backends.eager import EagerBackend

VARIABLE = "LSTM_HARNESS_TEST_DECLARED"
VALUE = "set-before-cuda"


class EnvironmentSession(TorchSession):
    def diagnostics(self) -> dict:
        return {"seen": os.environ.get(VARIABLE), "gc_frozen": gc.get_freeze_count()}


class DeclaresEnvironment(EagerBackend):
    name = "declares-environment"
    summary = "eager, in a process that must start with a variable set"
    in_default_set = False

    def environment(self, target: Target) -> dict[str, str]:
        return {VARIABLE: VALUE}

    def prepare(self, model, target):
        return EnvironmentSession(super().prepare(model, target)._fn, target)


BACKENDS = [DeclaresEnvironment]

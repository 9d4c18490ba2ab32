"""The harness boundary: every handle validates what a caller hands it, for every workload,
before any backend (a plugin's included) sees it."""

import numpy as np
import pytest

from backends.registry import load_registry
from harness.core.data import sine_batch
from harness.core.errors import InputError
from harness.engine.handles import LocalHandle
from harness.engine.isolation import WorkerHandle
from harness.workloads.forward import FORWARD
from harness.workloads.loadgen_sut import WarmUp
from harness.workloads.rollout import Rollout
from harness.workloads.server import Server
from harness.workloads.streaming import Streaming

REGISTRY = load_registry(["tests.plugins.wrong_backend"])
TEN_D = np.zeros((1, 2, 1, 1, 1, 1, 1, 1, 1, 1), np.float32)  # the notebook's re-run unsqueeze
WITH_NAN = np.where(np.arange(50)[None, :, None] == 7, np.nan, sine_batch(1, 50, 0)).astype(np.float32)
BAD = [(TEN_D, "expected a 3-D input"), (WITH_NAN, "expected finite inputs, got 1 NaN/Inf")]


@pytest.mark.parametrize("name, workload", [
    ("eager", FORWARD), ("eager", Streaming()), ("eager", Rollout(horizon=3)),
    ("wrong", FORWARD), ("wrong", Rollout(horizon=3)),  # a plugin's (it has no step model)
], ids=lambda v: getattr(v, "name", v))
def test_a_handle_refuses_a_10d_or_nan_input_for_every_workload(checkpoint, cpu_target, name,
                                                                workload):
    handle = LocalHandle.open(REGISTRY.create(name), checkpoint.model, cpu_target,
                              sine_batch(1, 50, 0), with_step=workload.needs_step_model)
    for x, message in BAD:
        with pytest.raises(InputError, match=message):
            handle.outputs(workload, x)
        payload = (x, []) if isinstance(workload, Streaming) else [x]  # streaming: a prime
        with pytest.raises(InputError, match=message):
            handle.timer(workload, workload.primary, payload)
    handle.close()


def test_an_isolated_handle_refuses_them_too_and_stays_usable(checkpoint, cpu_target,
                                                              process_settings):
    handle = WorkerHandle.open(REGISTRY.create("wrong"), checkpoint.model, cpu_target,
                               sine_batch(1, 50, 0), process_settings, 120)
    try:
        for x, message in BAD:
            with pytest.raises(InputError, match=message):
                handle.outputs(FORWARD, x)
        assert handle.outputs(FORWARD, sine_batch(2, 50, 1)).shape == (2, 1)
    finally:
        handle.close()


def test_a_serving_handle_refuses_them_before_the_backend_sees_a_query(checkpoint, cpu_target):
    handle = LocalHandle.open(REGISTRY.create("wrong"), checkpoint.model, cpu_target,
                              sine_batch(1, 50, 0))
    for x, message in BAD:
        with pytest.raises(InputError, match=message):
            handle.outputs(Server(), WarmUp(x, max_batch=1))
    handle.close()

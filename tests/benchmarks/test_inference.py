"""One pytest-benchmark per backend x device x dtype x batch size x seq_len (see conftest.py).

Each benchmark first proves agreement with the float64 reference at its shape, through the
engine's own check (a backend that disagrees fails, naming the error, and is not timed),
then times inference alone: preparation happened once per session in the ``handles``
fixture. The timed function is the harness's own ``Timer`` making one call on the next
preallocated native input, synchronised inside, so an asynchronous device cannot leave work
outside pytest-benchmark's clock.
"""

from __future__ import annotations

import math

import pytest

from harness.core.checkpoint import Checkpoint
from harness.core.settings import ProcessSettings
from harness.workloads.base import PRIMARY, window_payloads
from harness.workloads.forward import FORWARD

pytestmark = pytest.mark.slow  # each prepares a backend and checks it at a shape
WARMUP_ROUNDS = 2  # pedantic rounds thrown away after the Timer's own warm-up and calibration


def disagreement(checks: list, atol: float, rtol: float) -> str | None:
    bad = [c for c in checks if not c.agrees]
    if not bad:
        return None
    return "; ".join(f"{c.inputs} inputs: max abs err {c.max_abs_err:.3e}, max rel err "
                     f"{c.max_rel_err:.3e} (tolerance atol {atol:g} + rtol {rtol:g}·|ref|)"
                     for c in bad)


def rounds_for(round_s: float, config: pytest.Config, max_rounds: int) -> int:
    """Rounds to fill ``--benchmark-max-time``, at least ``--benchmark-min-rounds``."""
    max_time = float(config.getoption("benchmark_max_time"))
    wanted = max(config.getoption("benchmark_min_rounds"), math.ceil(max_time / max(round_s, 1e-9)))
    return min(wanted, max_rounds)


def test_inference(benchmark, case, handles, checks, checkpoint: Checkpoint, registry,
                   environments: dict, process_settings: ProcessSettings,
                   request: pytest.FixtureRequest) -> None:
    handle = handles.get(case)
    config = checks.config(case)
    dtype = registry.create(case.backend).computes_in(case.dtype)
    found = checks.run(case, handle, dtype)
    tol = config.tolerance
    env = environments[case.device]
    benchmark.group = case.group
    benchmark.extra_info.update({
        "backend": case.backend, "device": case.device, "device_name": env["device_name"],
        "dtype": dtype, "batch_size": case.batch_size, "seq_len": case.seq_len,
        "scenario": config.scenario,
        "agrees": all(c.agrees for c in found),
        "max_abs_err": max(c.max_abs_err for c in found),
        "max_rel_err": max(c.max_rel_err for c in found),
        "checks": [c.to_dict() for c in found],
        "tolerance": {"dtype": case.dtype, "atol": tol.atol, "rtol": tol.rtol},
        "prepare_s": handle.info.prepare_s, "first_call_ms": handle.info.first_call_ms,
        "prepare_rss_mb": handle.info.prepare_rss_mb,
        "threads": env["threads"], "settings": process_settings.to_dict(),
        "model": checkpoint.info(),
    })
    problem = disagreement(found, tol.atol, tol.rtol)
    if problem:
        pytest.fail(f"{case.backend} on {case.device} disagrees with the float64 reference at "
                    f"batch={case.batch_size} seq_len={case.seq_len}: {problem}", pytrace=False)

    timing = config.timing
    timer = FORWARD.timer(handle.sessions, PRIMARY,  # the runner's timing inputs
                          window_payloads((case.batch_size, case.seq_len), config.seed,
                                          timing.n_inputs, checkpoint.model.config.input_size))
    if benchmark.disabled:  # the plain test command: one call, as a correctness test
        benchmark.pedantic(timer.time_calls, args=(1,))
        return
    timer.warm_up(timing.warmup_s)
    iterations = timer.calibrate(timing.min_round_s)
    benchmark.extra_info["calls_per_round"] = iterations
    benchmark.pedantic(timer.time_calls, args=(1,), iterations=iterations,
                       rounds=rounds_for(timer.round() * iterations, request.config,
                                         timing.max_rounds),
                       warmup_rounds=WARMUP_ROUNDS)

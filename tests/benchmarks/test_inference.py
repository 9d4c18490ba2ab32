"""One pytest-benchmark per backend x device x dtype x batch size x seq_len (see conftest.py).

Each benchmark first proves agreement with the float64 reference at its shape (a backend
that disagrees fails, naming the error, and is not timed), then times inference alone:
preparation happened once per session in the ``handles`` fixture. The timed function is the
harness's own ``Timer`` making one call on the next preallocated native input, synchronised
inside, so an asynchronous device cannot leave work outside pytest-benchmark's clock.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.agreement import DEFAULT_TOLERANCES, Tolerance, compare
from harness.checkpoint import Checkpoint
from harness.data import sine_batch
from harness.handles import LocalHandle
from harness.settings import ProcessSettings
from harness.timing import TimingConfig
from scenarios import DEFAULT

TIMING = TimingConfig()
WARMUP_ROUNDS = 2  # pedantic rounds thrown away after the Timer's own warm-up and calibration


def agreement_checks(handle: LocalHandle, expected: dict[str, tuple[np.ndarray, np.ndarray]],
                     tolerance: Tolerance) -> list[dict]:
    return [{"inputs": kind, **compare(handle.predict(x), y, tolerance).to_dict()}
            for kind, (x, y) in expected.items()]


def disagreement(checks: list[dict], tolerance: Tolerance) -> str | None:
    bad = [c for c in checks if not c["agrees"]]
    if not bad:
        return None
    return "; ".join(f"{c['inputs']} inputs: max abs err {c['max_abs_err']:.3e}, max rel err "
                     f"{c['max_rel_err']:.3e} (tolerance atol {tolerance.atol:g} + rtol "
                     f"{tolerance.rtol:g}·|ref|)" for c in bad)


def rounds_for(round_s: float, config: pytest.Config) -> int:
    """Rounds to fill ``--benchmark-max-time``, at least ``--benchmark-min-rounds``."""
    max_time = float(config.getoption("benchmark_max_time"))
    wanted = max(config.getoption("benchmark_min_rounds"), math.ceil(max_time / max(round_s, 1e-9)))
    return min(wanted, TIMING.max_rounds)


def test_inference(benchmark, case, handles, agreement_inputs, checkpoint: Checkpoint,
                   environments: dict, process_settings: ProcessSettings,
                   request: pytest.FixtureRequest) -> None:
    handle = handles.get(case)
    tolerance = DEFAULT_TOLERANCES[case.dtype]
    checks = agreement_checks(handle, agreement_inputs.get(case.batch_size, case.seq_len), tolerance)
    env = environments[case.device]
    benchmark.group = case.group
    benchmark.extra_info.update({
        "backend": case.backend, "device": case.device, "device_name": env["device_name"],
        "dtype": case.row_dtype, "batch_size": case.batch_size, "seq_len": case.seq_len,
        "scenario": DEFAULT.name,
        "agrees": all(c["agrees"] for c in checks),
        "max_abs_err": max(c["max_abs_err"] for c in checks),
        "max_rel_err": max(c["max_rel_err"] for c in checks),
        "checks": checks,
        "tolerance": {"dtype": case.dtype, "atol": tolerance.atol, "rtol": tolerance.rtol},
        "prepare_s": handle.prepare_s, "first_call_ms": handle.first_call_ms,
        "prepare_rss_mb": handle.prepare_rss_mb,
        "threads": env["threads"], "settings": process_settings.to_dict(),
        "model": {"weights_sha256": checkpoint.sha256, "val_mse": checkpoint.metadata["val_mse"]},
    })
    problem = disagreement(checks, tolerance)
    if problem:
        pytest.fail(f"{case.backend} on {case.device} disagrees with the float64 reference at "
                    f"batch={case.batch_size} seq_len={case.seq_len}: {problem}", pytrace=False)

    timer = handle.timer([sine_batch(case.batch_size, case.seq_len, 1000 + i)
                          for i in range(TIMING.n_inputs)])  # the runner's timing inputs
    if benchmark.disabled:  # --benchmark-disable: one call, as a correctness test
        benchmark.pedantic(timer.time_calls, args=(1,))
        return
    timer.warm_up(TIMING.warmup_s)
    iterations = timer.calibrate(TIMING.min_round_s)
    benchmark.extra_info["calls_per_round"] = iterations
    benchmark.pedantic(timer.time_calls, args=(1,), iterations=iterations,
                       rounds=rounds_for(timer.round(), request.config), warmup_rounds=WARMUP_ROUNDS)

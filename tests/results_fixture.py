"""A small, realistic results dict, built the way the runner builds one (Row -> RunResult)."""

from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np

from harness.core.results import (
    ROW_KEYS,
    Check,
    ColdStart,
    Identity,
    Outcome,
    Row,
    RowAgreement,
    RunResult,
    Speedup,
    TimingSummary,
)
from harness.core.stats import paired_ratio, summarize, throughput
from harness.workloads import row_records
from harness.workloads.forward import ForwardFields

# Median ms per call, per backend and batch size, roughly as measured on the 2-core VM.
MEDIANS = {"eager": {1: 0.23, 64: 1.5}, "onnxruntime": {1: 0.07, 64: 1.53},
           "torchscript": {1: 0.20, 64: 1.44}}


def samples(median_ms: float, n: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return median_ms * np.exp(rng.normal(0.0, noise, n))


MODEL = {"model_sha256": "0" * 64, "input_size": 1, "hidden_size": 64, "num_layers": 1,
         "output_size": 1}


def measured_row(backend: str, batch: int, samples_ms: np.ndarray, eager_ms: np.ndarray,
                 scenario: str = "default", mode: str = "forward", model: dict = MODEL,
                 own: dict | None = None, **extra) -> Row:
    """A timed row; ``own`` its workload's fields (None: a forward row's)."""
    s = summarize(samples_ms)
    ratio = paired_ratio(eager_ms, samples_ms)
    seqs, steps = throughput(batch, 50, s.median / 1e3)
    timing = TimingSummary(median_ms=s.median, p90_ms=s.p90, p99_ms=s.p99, min_ms=s.min,
                           mean_ms=s.mean, stdev_ms=s.stdev, iqr_ms=s.iqr,
                           ci95_low_ms=s.ci95_low, ci95_high_ms=s.ci95_high, noisy=s.noisy,
                           stop_reason="ci", rounds=s.n, calls_per_round=4,
                           samples_ms=[float(x) for x in samples_ms])
    return Row(Identity(backend, "cpu", "fp32", batch, 50, scenario, mode, **model), timing=timing,
               speedup=Speedup(ratio.median, ratio.ci95_low, ratio.ci95_high),
               agreement=RowAgreement(2e-7 * (1 + batch / 64), 1e-4, True),
               cold_start=ColdStart(prepare_s=0.1, first_call_ms=2.0, peak_rss_mb=100.0),
               workload={**(asdict(ForwardFields(seqs, steps, 1.0, 5.0)) if own is None else own),
                         **extra})


def undeclared(results: dict) -> set[str]:
    """Keys of a run's rows that neither the results dataclasses nor the rows' workloads'
    ``row_records`` declare: keys that a results file read back would leave unchecked."""
    return {key for row in results["rows"] for key in row
            if key not in {*ROW_KEYS, "diagnostics",
                           *(f.name for record in row_records(row["mode"]) for f in fields(record))}}


def make_results(scale: float = 1.0, noise: float = 0.02, n: int = 30, seed: int = 0,
                 rollout: bool = False) -> dict:
    """Three backends at batch 1 and 64, an unavailable and a failed backend, and optionally
    a second scenario of rollout rows with per-step errors. `scale` multiplies every latency."""
    rows, checks = [], []
    for batch in (1, 64):
        eager = samples(MEDIANS["eager"][batch] * scale, n, noise, seed + batch)
        for i, backend in enumerate(MEDIANS):
            ms = eager if backend == "eager" else samples(MEDIANS[backend][batch] * scale, n, noise,
                                                          seed + 100 * (i + 1) + batch)
            rows.append(measured_row(backend, batch, ms, eager))
            checks.append(Check(backend, batch, 50, "sine", 1e-7, 1e-4, True,
                                model_sha256=MODEL["model_sha256"]))
        rows.append(Row(Identity("compile", "cpu", "fp32", batch, 50, **MODEL),
                        Outcome.unavailable("torch.compile needs a C++ compiler")))
        rows.append(Row(Identity("broken", "cpu", "fp32", batch, 50, **MODEL),
                        Outcome.failed("RuntimeError: boom | twice")))
    if rollout:
        eager = samples(5.0 * scale, n, noise, seed + 7)
        for backend in ("eager", "onnxruntime"):
            rows.append(measured_row(backend, 64, eager if backend == "eager" else eager * 0.8,
                                     eager, scenario="rollout", mode="rollout", horizon=20,
                                     rollout_err=[1e-6 * 1.5 ** k for k in range(20)]))
    result = RunResult(
        environment={"device": "cpu", "device_name": "Fixture CPU", "git_commit": "abc123",
                     "timestamp": "2026-11-24T12:00:00+00:00", "command": "harness run",
                     "versions": {"python": "3.11", "torch": "2.13.0"}, "peak_gflops": 20.0},
        scenario={"name": "default", "mode": "forward"},
        model={"weights_sha256": MODEL["model_sha256"], "label": "h64 L1"},
        tolerance={"dtype": "fp32", "atol": 1e-5, "rtol": 1e-4}, rows=tuple(rows),
        checks=tuple(checks))
    return result.to_dict()


def sweep_model(hidden: int, layers: int) -> dict:
    return {"model_sha256": f"{hidden:04d}{layers}".ljust(64, "a"), "input_size": 1,
            "hidden_size": hidden, "num_layers": layers, "output_size": 1}


def make_sweep(hidden: tuple[int, ...] = (32, 128, 512), layers: tuple[int, ...] = (1, 2),
               n: int = 20) -> dict:
    """A model sweep: eager and onnxruntime at batch 1 and 64 for each hidden size and layer
    count, onnxruntime's lead shrinking as the model grows (as per-call overhead stops
    dominating), every model in the ``model`` block."""
    rows, checks, models = [], [], []
    for n_layers in layers:
        for h in hidden:
            model = sweep_model(h, n_layers)
            models.append({"weights_sha256": model["model_sha256"], "label": f"h{h} L{n_layers}",
                           "config": {k: model[k] for k in ("input_size", "hidden_size",
                                                             "num_layers", "output_size")}})
            for batch in (1, 64):
                eager_ms = 0.05 * (h / 32) ** 1.5 * n_layers * (1 + batch / 64)
                eager = samples(eager_ms, n, 0.02, h + batch)
                ort = samples(eager_ms / (1 + 64 / h), n, 0.02, h + batch + 1)
                for backend, ms in (("eager", eager), ("onnxruntime", ort)):
                    rows.append(measured_row(backend, batch, ms, eager, scenario="model-sweep",
                                             model=model))
                    checks.append(Check(backend, batch, 50, "sine", 1e-7, 1e-4, True,
                                        model_sha256=model["model_sha256"]))
    result = RunResult(
        environment={"device": "cpu", "device_name": "Fixture CPU"},
        scenario={"name": "model-sweep", "mode": "forward"}, model={"models": models},
        tolerance={"dtype": "fp32", "atol": 1e-5, "rtol": 1e-4}, rows=tuple(rows),
        checks=tuple(checks))
    return result.to_dict()

"""Result records: one Row per backend x device x dtype x shape, and the run around them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Row:
    backend: str
    device: str
    dtype: str
    batch_size: int
    seq_len: int
    status: str = "ok"  # "ok", "unavailable" or "failed"
    reason: str | None = None
    scenario: str = "default"
    mode: str = "forward"
    # timing, in milliseconds per call
    median_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    min_ms: float | None = None
    mean_ms: float | None = None
    stdev_ms: float | None = None
    iqr_ms: float | None = None
    ci95_low_ms: float | None = None
    ci95_high_ms: float | None = None
    noisy: bool | None = None
    stop_reason: str | None = None
    rounds: int | None = None
    calls_per_round: int | None = None
    throughput_seq_s: float | None = None
    throughput_steps_s: float | None = None
    speedup_vs_eager: float | None = None
    speedup_ci95_low: float | None = None
    speedup_ci95_high: float | None = None
    # agreement with the float64 reference at this shape
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    agrees: bool | None = None
    # the same input twice: bitwise-identical outputs, and the largest difference if not
    deterministic: bool | None = None
    repeat_max_diff: float | None = None
    # cold start, memory, roofline
    isolation_startup_s: float | None = None  # spawning the backend's worker, when isolated
    prepare_s: float | None = None
    first_call_ms: float | None = None
    artifact_bytes: int | None = None
    exporter: str | None = None  # which torch.onnx exporter wrote the ONNX file
    peak_rss_mb: float | None = None
    prepare_rss_mb: float | None = None
    infer_rss_mb: float | None = None
    cuda_max_mem_mb: float | None = None
    gpu_mem_growth_mb: float | None = None  # device-reported (NVML), sees ORT's CUDA arena
    h2d_ms: float | None = None  # copying one input batch to where run() wants it
    d2h_ms: float | None = None  # reading one output batch back to the host
    gflops: float | None = None
    pct_peak: float | None = None
    graphs: int | None = None
    graph_breaks: int | None = None
    recompiles: int | None = None
    # streaming mode: one sample into a live stream (the timing above) vs the whole window
    step_ms: float | None = None
    window_ms: float | None = None
    step_vs_window: float | None = None  # step_ms / window_ms
    # rollout mode: the timing above is per full rollout of ``horizon`` steps
    horizon: int | None = None
    drift_horizon: int | None = None  # first step out of tolerance; None if it never left
    max_abs_err_rollout: float | None = None
    mse_vs_truth: float | None = None
    rollout_err: list[float] | None = None  # largest abs error vs the reference at each step
    samples_ms: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    """One agreement check of one backend on one input batch."""

    backend: str
    batch_size: int
    seq_len: int
    inputs: str  # "sine" or "random"
    max_abs_err: float
    max_rel_err: float
    agrees: bool
    mode: str = "forward"  # "forward" (one window), "streaming" (outputs, h, c) or "rollout"
    dtype: str = "fp32"
    # set where the same input was run twice (the random inputs of every shape)
    deterministic: bool | None = None
    repeat_max_diff: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RunResult:
    environment: dict
    scenario: dict
    model: dict
    tolerance: dict
    rows: tuple[Row, ...]
    checks: tuple[Check, ...]

    @property
    def failed(self) -> bool:
        """A disagreement or a failed backend makes the whole run fail."""
        return any(r.status == "failed" or r.agrees is False for r in self.rows) or \
            any(not c.agrees for c in self.checks)

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "environment": self.environment,
            "scenario": self.scenario,
            "model": self.model,
            "tolerance": self.tolerance,
            "rows": [r.to_dict() for r in self.rows],
            "checks": [c.to_dict() for c in self.checks],
        }


def merge_results(results: list[RunResult]) -> RunResult:
    """One result from the runs of a scenario's devices x dtypes: rows and checks side by
    side (each carries its device and dtype), the first run's context, every tolerance."""
    first = results[0]
    tolerance = dict(first.tolerance)
    if len({r.tolerance["dtype"] for r in results}) > 1:
        tolerance["by_dtype"] = {r.tolerance["dtype"]: r.tolerance for r in results}
    return RunResult(environment=first.environment, scenario=first.scenario, model=first.model,
                     tolerance=tolerance, rows=tuple(row for r in results for row in r.rows),
                     checks=tuple(c for r in results for c in r.checks))

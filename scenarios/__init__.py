"""Scenario definitions: which workload, models, shapes, dtypes, devices and backends a run covers.

A ``Scenario`` is a frozen description; the presets below are the named ones, and user
scenarios come from TOML files (``scenarios.toml_file``). ``resolve`` turns a ``--scenario``
argument, a preset name or a path, into a Scenario. Which workload ``mode`` names, and which
settings (``params``) it takes, the engine checks when it plans the run, against the
workloads registered there, plugins included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.core.checkpoint import ModelSource, source_record
from harness.core.errors import InputError
from harness.core.model import ModelConfig
from harness.core.targets import AUTO_DEVICE, DEFAULT_MODE, DEVICES, DTYPES
from harness.core.training import TrainConfig

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
# What the forward table leads with: the median, the tail (p90, p99), or sequences/s.
FOCUSES = ("median", "tail", "throughput")
SCENARIO_DEVICES = (*DEVICES, AUTO_DEVICE)


@dataclass(frozen=True)
class Scenario:
    name: str
    mode: str = DEFAULT_MODE
    batch_sizes: tuple[int, ...] = (1, 64, 1024)
    seq_lens: tuple[int, ...] = (50,)
    dtypes: tuple[str, ...] = ("fp32",)
    devices: tuple[str, ...] = ("cpu",)
    backends: tuple[str, ...] | None = None  # None: every default backend of each device
    budget_s: float = 2.0  # timing budget per row
    # Per-dtype (dtype, atol, rtol) overrides of harness.core.agreement.DEFAULT_TOLERANCES.
    tolerances: tuple[tuple[str, float, float], ...] = ()
    # The workload's own settings by name (a rollout's horizon, say), as (name, value) pairs.
    params: tuple[tuple[str, Any], ...] = ()
    focus: str = "median"
    description: str = ""
    source: str | None = None  # the TOML file it was read from, for messages
    # The models it covers, each run in turn; empty: the default trained model.
    models: tuple[ModelSource, ...] = ()
    processes: int | None = None  # worker processes per backend (None: TimingConfig's)

    def __post_init__(self) -> None:
        where = self.source or f"scenario {self.name!r}"
        if self.focus not in FOCUSES:
            raise InputError(f"{where}: focus must be one of {', '.join(FOCUSES)}, "
                             f"got {self.focus!r}")
        for field_name, values, allowed in [("dtypes", self.dtypes, DTYPES),
                                            ("devices", self.devices, SCENARIO_DEVICES)]:
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise InputError(f"{where}: {field_name} must be a non-empty list of "
                                 f"{', '.join(allowed)}, got {list(values)!r}")

    def tolerance_overrides(self) -> dict[str, tuple[float, float]]:
        return {dtype: (atol, rtol) for dtype, atol, rtol in self.tolerances}

    def to_dict(self) -> dict:
        record = {k: v for k, v in asdict(self).items() if k not in ("params", "source", "models")}
        return {**record, "models": [source_record(m) for m in self.models], **dict(self.params)}


# 1.5 s of rounds per row, over both worker processes: what lets `run` finish within two
# minutes on a 2-core machine, its twelve workers' start-up and checks included.
DEFAULT = Scenario(
    name="default",
    description="batch 1, 64 and 1024 at seq_len 50, the default backends, fp32 (what `run` does)",
    budget_s=1.5,
)

# The model-sweep's models: seeded initial weights (epochs 0), not trained ones. What is
# timed does not depend on the weights' values, and training the larger models takes this
# 2-core VM minutes per epoch; agreement is still checked on each model's own weights.
SWEEP_HIDDEN = (32, 64, 128, 256, 512)
SWEEP_LAYERS = (1, 2)
SWEEP_MODELS = tuple(TrainConfig(model=ModelConfig(hidden_size=h, num_layers=n), epochs=0)
                     for n in SWEEP_LAYERS for h in SWEEP_HIDDEN)
# Every CPU backend that ships, but AOTInductor, which builds a package per model, length and
# batch kind (a C++ build each, twenty for this sweep); the float64 reference still checks
# every model, but is not timed.
SWEEP_BACKENDS = ("eager", "torchscript", "compile", "onnxruntime", "openvino")

PRESETS: dict[str, Scenario] = {s.name: s for s in (
    DEFAULT,
    Scenario("smoke", batch_sizes=(1, 8), seq_lens=(50,), budget_s=0.05,
             description="batch 1 and 8, a 0.05 s budget per row: the quickest whole run"),
    Scenario("latency", batch_sizes=(1,), budget_s=3.0, focus="tail",
             description="one stream, batch 1: p90 and p99 of the rounds lead, a longer budget; "
                         "for each query's own latency, single-stream"),
    Scenario("throughput", batch_sizes=(256, 1024, 4096), focus="throughput",
             description="offline batches up to 4096: best sequences/s per backend"),
    Scenario("sweep", batch_sizes=(1, 8, 64, 512), seq_lens=(25, 50, 100, 200), budget_s=1.0,
             description="a batch x seq_len grid (1..512 x 25..200) to see where backends cross"),
    Scenario("streaming", mode="streaming", batch_sizes=(1, 64),
             description="stateful: one new sample into a live (h, c) stream vs re-running the "
                         "50-sample window; states must match the windowed pass"),
    Scenario("rollout", mode="rollout", batch_sizes=(1, 16), budget_s=3.0,
             description="autoregressive: forecast 200 steps from a sine window feeding predictions "
                         "back; error per step vs the float64 rollout, drift horizon, error vs truth"),
    Scenario("model-sweep", models=SWEEP_MODELS, batch_sizes=(1, 64), budget_s=0.5, processes=1,
             backends=SWEEP_BACKENDS, params=(("check_grid", "timed"),),
             description="hidden 32..512 x 1 and 2 layers (seeded weights), batch 1 and 64, fp32, "
                         f"{', '.join(SWEEP_BACKENDS)} (add aot-inductor with --backends: a package "
                         "build per model): where the ranks cross as the model grows"),
    # The serving scenarios run MLPerf LoadGen against a dynamic batcher; a row's batch size
    # is the most queries the batcher runs in one call.
    Scenario("server", mode="server", batch_sizes=(64,),
             description="LoadGen Server: Poisson arrivals, dynamic batching up to 64; the highest "
                         "rate each backend holds with its p99 under --latency-bound-ms (5 ms)"),
    Scenario("single-stream", mode="single-stream", batch_sizes=(1,),
             description="LoadGen SingleStream: one query at a time, the next when it is answered; "
                         "the p90 latency"),
    Scenario("multi-stream", mode="multi-stream", batch_sizes=(8,),
             description="LoadGen MultiStream: 8 windows per query, one query at a time; the p99 "
                         "latency per query"),
    Scenario("offline", mode="offline", batch_sizes=(64,),
             description="LoadGen Offline: every query at once, batches of up to 64; samples per "
                         "second"),
)}


def resolve(name_or_path: str, workloads: Mapping[str, Any] | None = None) -> Scenario:
    """A preset by name, or a TOML file by path, its mode one of ``workloads`` (by default
    the built-in ones)."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        from scenarios.toml_file import load

        return load(path, workloads) if workloads is not None else load(path)
    raise InputError(f"unknown scenario {name_or_path!r}; expected a preset "
                     f"({', '.join(PRESETS)}) or a path to a .toml file")

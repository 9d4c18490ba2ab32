"""Workload definitions: which mode, shapes, dtypes, devices and backends a run covers.

A ``Scenario`` is a frozen description; the presets below are the named ones, and user
scenarios come from TOML files (``scenarios.toml_file``). ``resolve`` turns a ``--scenario``
argument, a preset name or a path, into a Scenario.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import InputError

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
ALL_BACKENDS = ("reference", "eager", "torchscript", "compile", "onnxruntime")
MODES = ("forward", "streaming", "rollout")
DTYPES = ("fp32", "bf16", "fp16")
DEVICES = ("cpu", "cuda", "auto")
# What the forward table leads with: the median, the tail (p90, p99), or sequences/s.
FOCUSES = ("median", "tail", "throughput")


@dataclass(frozen=True)
class Scenario:
    name: str
    mode: str = "forward"
    batch_sizes: tuple[int, ...] = (1, 64, 1024)
    seq_lens: tuple[int, ...] = (50,)
    dtypes: tuple[str, ...] = ("fp32",)
    devices: tuple[str, ...] = ("cpu",)
    backends: tuple[str, ...] = ALL_BACKENDS
    budget_s: float = 2.0  # timing budget per row
    # Per-dtype (dtype, atol, rtol) overrides of harness.agreement.DEFAULT_TOLERANCES.
    tolerances: tuple[tuple[str, float, float], ...] = ()
    horizon: int = 200  # rollout mode: steps forecast by feeding predictions back
    focus: str = "median"
    description: str = ""

    def __post_init__(self) -> None:
        for field_name, value, allowed in [("mode", self.mode, MODES), ("focus", self.focus, FOCUSES)]:
            if value not in allowed:
                raise InputError(f"scenario {self.name!r}: {field_name} must be one of "
                                 f"{', '.join(allowed)}, got {value!r}")
        for field_name, values, allowed in [("dtypes", self.dtypes, DTYPES),
                                            ("devices", self.devices, DEVICES)]:
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise InputError(f"scenario {self.name!r}: {field_name} must be a non-empty list "
                                 f"of {', '.join(allowed)}, got {list(values)!r}")

    def tolerance_overrides(self) -> dict[str, tuple[float, float]]:
        return {dtype: (atol, rtol) for dtype, atol, rtol in self.tolerances}

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT = Scenario(
    name="default",
    description="batch 1, 64 and 1024 at seq_len 50, every backend, fp32 (what `run` does)",
)

PRESETS: dict[str, Scenario] = {s.name: s for s in (
    DEFAULT,
    Scenario("smoke", batch_sizes=(1, 8), seq_lens=(50,), budget_s=0.05,
             description="CI smoke test: batch 1 and 8, a 0.05 s budget per row, seconds in all"),
    Scenario("latency", batch_sizes=(1,), budget_s=3.0, focus="tail",
             description="one stream, batch 1: p90 and p99 latency lead, longer budget for the tail"),
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
)}


def resolve(name_or_path: str) -> Scenario:
    """A preset by name, or a TOML file by path."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        from scenarios.toml_file import load

        return load(path)
    raise InputError(f"unknown scenario {name_or_path!r}; expected a preset "
                     f"({', '.join(PRESETS)}) or a path to a .toml file")

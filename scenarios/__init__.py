"""Workload definitions: which shapes, dtypes, devices and backends a run covers."""

from __future__ import annotations

from dataclasses import asdict, dataclass

ALL_BACKENDS = ("reference", "eager", "torchscript", "compile", "onnxruntime")


@dataclass(frozen=True)
class Scenario:
    name: str
    mode: str = "forward"
    batch_sizes: tuple[int, ...] = (1, 64, 1024)
    seq_lens: tuple[int, ...] = (50,)
    dtypes: tuple[str, ...] = ("fp32",)
    backends: tuple[str, ...] = ALL_BACKENDS
    budget_s: float = 2.0  # timing budget per row
    description: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT = Scenario(
    name="default",
    description="batch 1, 64 and 1024 at seq_len 50, every backend, fp32",
)

PRESETS: dict[str, Scenario] = {DEFAULT.name: DEFAULT}

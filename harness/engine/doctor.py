"""`python -m harness doctor`: which backends, devices and dtypes work here, and why not.

Everything it says comes from the backends themselves: their reasons, their libraries'
versions and what their runtimes report about the machine.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from backends.base import Target
from backends.registry import Registry
from harness.core.checkpoint import Checkpoint
from harness.core.environment import cuda_info, library_versions
from harness.core.errors import InputError
from harness.core.targets import DEVICES, DTYPES
from harness.workloads.base import Workload, make_workload


@dataclass(frozen=True)
class Availability:
    backend: str
    device: str
    dtype: str
    reason: str | None  # None: usable

    @property
    def available(self) -> bool:
        return self.reason is None


def availability(registry: Registry, threads: int) -> list[Availability]:
    """One entry per backend x device x dtype: usable, or the backend's own reason. Usable
    means its runtime really started there: what a library lists is not evidence enough
    (onnxruntime-gpu lists CUDA wherever it was built with it)."""
    entries = []
    with tempfile.TemporaryDirectory(prefix="lstm-harness-doctor-") as tmp:
        for name in registry.names():
            backend = registry.create(name)
            for device in DEVICES:
                for dtype in DTYPES:
                    target = Target(device, dtype, Path(tmp), threads)
                    reason = backend.unavailable_reason(target) or backend.start_reason(target)
                    entries.append(Availability(name, device, dtype, reason))
    return entries


def machine_summary(registry: Registry) -> dict:
    import torch

    return {"versions": {**library_versions(), **registry.versions()},
            "torch_cuda_build": torch.version.cuda, **registry.machine_facts(), **cuda_info()}


def model_summary(checkpoint: Checkpoint, workloads: Mapping[str, type[Workload]]) -> dict:
    """What doctor says of a checkpoint: the sizes read from its weights, the file, and
    which workloads can run it (each workload's own reason where it cannot)."""
    config = checkpoint.model.config
    sizes = ", ".join(f"{k} {v}" for k, v in config.to_dict().items())
    n_params = sum(p.numel() for p in checkpoint.model.parameters())
    modes = []
    for name, cls in workloads.items():
        try:
            make_workload(cls, {}).refuse_model(config)
            modes.append(f"{name}: usable")
        except InputError as exc:
            modes.append(f"{name}: refused: {exc}")
    return {"model": f"{config.label} ({sizes}; {n_params:,} parameters)",
            "model file": f"{checkpoint.weights_path} ({checkpoint.metadata.get('format', 'harness')}, "
                          f"sha256 {checkpoint.sha256})",
            "model workloads": "; ".join(modes)}
def workload_availability(workloads: dict[str, type[Workload]]) -> dict[str, str | None]:
    """Mode -> None where the workload can run here, else its own reason (with the install
    line of what it lacks)."""
    return {name: cls().unavailable_reason() for name, cls in workloads.items()}

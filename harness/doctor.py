"""`python -m harness doctor`: which backends, devices, dtypes and providers work here, and why not."""

from __future__ import annotations

import tempfile
from pathlib import Path

from backends.base import TORCH_DTYPES, Target
from backends.registry import Registry
from harness.environment import cuda_info, ort_providers


def availability(registry: Registry, threads: int) -> list[dict]:
    """One entry per backend x device x dtype: available, or the backend's own reason."""
    entries = []
    with tempfile.TemporaryDirectory(prefix="lstm-harness-doctor-") as tmp:
        for name in registry.names():
            backend = registry.create(name)
            for device in ("cpu", "cuda"):
                for dtype in TORCH_DTYPES:
                    reason = backend.unavailable_reason(Target(device, dtype, Path(tmp), threads))
                    entries.append({"backend": name, "device": device, "dtype": dtype,
                                    "available": reason is None, "reason": reason})
    return entries


def machine_summary() -> dict:
    import torch

    return {"torch": torch.__version__, "torch_cuda_build": torch.version.cuda,
            "ort_providers": ort_providers(), **cuda_info()}

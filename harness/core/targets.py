"""What a run can target, named once: the dtypes and the devices."""

from __future__ import annotations

DTYPES = ("fp32", "bf16", "fp16")
# The float64 reference computes in this whatever a run's dtype; its rows and checks say so.
REFERENCE_DTYPE = "fp64"
DEVICES = ("cpu", "cuda")
AUTO_DEVICE = "auto"  # cuda where torch sees a GPU, else cpu

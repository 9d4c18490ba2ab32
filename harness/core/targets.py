"""What a run can target, named once: the workload, the dtypes and the devices."""

from __future__ import annotations

# The workload a scenario runs unless it names one, and that of rows recorded before there
# were others.
DEFAULT_MODE = "forward"
DTYPES = ("fp32", "bf16", "fp16", "int8")
# Dtypes that quantise the fp32 model rather than cast it. Eager has no kernels of its own in
# them: in their runs it is the fp32 model the quantised rows are timed and judged against.
QUANTISED = ("int8",)
# Dtypes below fp32: judged on the task (harness.workloads.task) as well as elementwise.
JUDGED_ON_TASK = ("bf16", "fp16", "int8")
# The float64 reference computes in this whatever a run's dtype; its rows and checks say so.
REFERENCE_DTYPE = "fp64"
DEVICES = ("cpu", "cuda")
AUTO_DEVICE = "auto"  # cuda where torch sees a GPU, else cpu

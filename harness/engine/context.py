"""The environment block of a result: the machine, the settings, and every backend's libraries."""

from __future__ import annotations

from backends.registry import Registry
from harness.core import environment
from harness.core.roofline import Peak, numpy_gemm_gflops, torch_gemm_gflops
from harness.core.settings import ProcessSettings


def environment_for(device: str, settings: ProcessSettings, registry: Registry) -> dict:
    """``harness.core.environment.collect`` plus what each registered backend reports: the
    versions of its libraries, and what its runtime sees of the machine (ONNX Runtime's
    providers, say)."""
    env = environment.collect(device, settings)
    env["versions"] = {**env["versions"], **registry.versions()}
    env["backends"] = registry.machine_facts()
    return env


def machine_peak(device: str, settings: ProcessSettings, registry: Registry) -> Peak:
    """The best sustained fp32 GEMM rate among torch, NumPy's BLAS (on the CPU) and every
    backend's own runtime, on the harness's threads; every engine's figure is kept."""
    threads = settings.intra_op_threads
    rates: dict[str, float | None] = {"torch": torch_gemm_gflops(device)}
    if device == "cpu":
        rates["numpy"] = numpy_gemm_gflops(threads)
    rates.update(registry.gemm_gflops(device, threads))
    return Peak.best_of(rates)

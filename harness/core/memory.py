"""Memory: peak resident-memory growth over a block of code, and what a run will need."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from harness.core.errors import InputError

if TYPE_CHECKING:
    from harness.core.model import ModelConfig

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes() -> int:
    """This process's resident memory; without /proc (macOS), its peak so far, the nearest
    figure the system gives, which growth from a start then reads as peak growth."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes there, KiB elsewhere


@dataclass(frozen=True)
class DeviceMemory:
    """GPU memory in use as the device reports it (NVML), which sees ONNX Runtime's CUDA arena
    where torch's allocator statistics cannot."""

    used_mb: float
    scope: str  # "process": this process's own use; "device": the whole device's


def nvml_uuid(torch_uuid: object) -> str:
    """NVML's name for the device torch reports: torch gives the bare UUID, NVML prefixes it."""
    text = str(torch_uuid)
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def own_use_bytes(processes: list, pid: int) -> int | None:
    """``pid``'s GPU memory among NVML's running processes, or None where NVML does not give
    it (a PID namespace hides the process, or the driver reports no figure, as under MIG)."""
    for process in processes:
        if process.pid == pid and isinstance(process.usedGpuMemory, int):
            return process.usedGpuMemory
    return None


def device_memory() -> DeviceMemory | None:
    """This process's use of the GPU torch runs on, found by its UUID (NVML numbers devices
    its own way, whatever CUDA_VISIBLE_DEVICES says), or the device's whole use where NVML has
    no per-process figure; None without nvidia-ml-py or where NVML fails."""
    try:
        import pynvml
    except ImportError:
        return None
    import torch

    try:
        pynvml.nvmlInit()
        uuid = nvml_uuid(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid.encode())
        own = own_use_bytes(pynvml.nvmlDeviceGetComputeRunningProcesses(handle), os.getpid())
        if own is not None:
            return DeviceMemory(own / 2**20, "process")
        return DeviceMemory(pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20, "device")
    except pynvml.NVMLError:
        return None


@dataclass(frozen=True)
class MemoryUse:
    """Memory used by one backend's agreement checks (its largest batches)."""

    rss_mb: float  # peak resident-memory growth of the process
    cuda_peak_mb: float | None = None  # torch.cuda.max_memory_allocated (torch allocations)
    device_growth_mb: float | None = None  # growth of the GPU memory NVML reports
    device_scope: str | None = None  # DeviceMemory.scope of that growth


class PeakRss:
    """``with PeakRss() as m: ...`` then ``m.growth_mb``: the peak RSS above the start."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self.start_bytes = 0
        self.peak_bytes = 0

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, current_rss_bytes())
            time.sleep(self._interval)

    def __enter__(self) -> PeakRss:
        self.start_bytes = self.peak_bytes = current_rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, current_rss_bytes())

    @property
    def growth_mb(self) -> float:
        return (self.peak_bytes - self.start_bytes) / 2**20


def available_bytes() -> int | None:
    """Memory the OS can still hand out (MemAvailable), or None where it cannot say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * _PAGE
    except (ValueError, OSError, AttributeError):
        return None


# Bytes per parameter: a float32 copy in the parent and in each backend, and the float64
# copy the reference computes with; training holds the weights, their gradients and Adam's
# two moments, all float32.
def inference_bytes_per_parameter(n_backends: int) -> int:
    return 4 * (n_backends + 1) + 8


TRAINING_BYTES_PER_PARAMETER = 16


def run_bytes(batch: int, seq_len: int, input_size: int, hidden_size: int, num_layers: int,
              n_backends: int, n_inputs: int) -> int:
    """A rough lower bound on the memory one timed shape needs beyond the weights.

    Every backend holds ``n_inputs`` float32 input batches, and the float64 reference keeps
    every step's hidden output of the layer it reads and of the layer it writes (each layer's
    is freed once the next has read it; gates live one step).
    """
    inputs = n_backends * n_inputs * batch * seq_len * input_size * 4
    activations = batch * seq_len * hidden_size * min(num_layers, 2) * 8
    return inputs + activations


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _over(shapes: list[tuple[int, int]], need: Callable[[int, int], int], limit: float
          ) -> tuple[int, int, int] | None:
    """The first shape (batch, seq_len, bytes needed) whose need is over ``limit``."""
    for batch, seq_len in shapes:
        if (bytes_needed := need(batch, seq_len)) > limit:
            return batch, seq_len, bytes_needed
    return None


def _usable(available: int, kind: str) -> tuple[float, str]:
    """The memory a check may count on, 80% of ``available`` (room for the libraries and the
    OS), and how a message says it."""
    limit = 0.8 * available
    return limit, f"against {_gib(limit)} usable (80% of {_gib(available)} {kind})"


def _refuse_weights(model: ModelConfig, per_parameter: int, held: str, limit: float,
                    usable: str, where: str = "in memory") -> int:
    """The bytes ``model``'s weights take at ``per_parameter`` each; InputError if over ``limit``."""
    weights = model.n_parameters * per_parameter
    if weights > limit:
        raise InputError(
            f"expected a model small enough to fit {where}, got {model.n_parameters:,} parameters "
            f"(hidden_size {model.hidden_size}, {model.num_layers} layer(s)), whose {held} need "
            f"about {_gib(weights)} {usable}")
    return weights


def check_trainable(model: ModelConfig, available: int | None = None) -> None:
    """Refuse, before training, a model whose weights and optimizer state cannot fit."""
    available = available_bytes() if available is None else available
    if available is not None:
        _refuse_weights(model, TRAINING_BYTES_PER_PARAMETER,
                        "weights, gradients and optimizer state for training",
                        *_usable(available, "available"))


def check_fits(shapes: list[tuple[int, int]], model: ModelConfig, n_backends: int, n_inputs: int,
               available: int | None = None) -> None:
    """Refuse, before allocating anything, a model whose weights, or a shape whose inputs and
    activations beside them, cannot fit."""
    available = available_bytes() if available is None else available
    if available is None:
        return
    limit, usable = _usable(available, "available")
    weights = _refuse_weights(model, inference_bytes_per_parameter(n_backends),
                              f"copies for {n_backends} backend(s) and the reference", limit, usable)
    over = _over(shapes, lambda b, s: weights + run_bytes(
        b, s, model.input_size, model.hidden_size, model.num_layers, n_backends, n_inputs), limit)
    if over:
        batch, seq_len, need = over
        raise InputError(
            f"expected batch × seq_len small enough to fit in memory, got batch {batch} × "
            f"seq_len {seq_len}, which needs about {_gib(need)} for the weights, inputs and "
            f"activations {usable}")


# What one process's CUDA context, cuBLAS and cuDNN handles and ONNX Runtime's arena take
# before any batch: a rough allowance (docs/gpu/README.md), so a run of many worker processes
# is refused before the first of them fails halfway.
CUDA_PROCESS_BYTES = 512 * 2**20


def device_free_bytes() -> int | None:
    """Free memory on the GPU torch runs on, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.mem_get_info()[0]


def check_device_fits(shapes: list[tuple[int, int]], model: ModelConfig, workers: int,
                      n_inputs: int, free: int | None = None) -> None:
    """Refuse, before preparing anything, a CUDA run that cannot fit in the GPU's free memory:
    ``workers`` worker processes live at once, each with its CUDA context, its float32 copy of
    the weights and its inputs, beside the parent's context, while one of them checks its
    largest batch."""
    free = device_free_bytes() if free is None else free
    if free is None:
        return
    limit, usable = _usable(free, "free")
    contexts = (workers + 1) * CUDA_PROCESS_BYTES
    weights = _refuse_weights(model, 4 * workers, f"copies in {workers} worker processes",
                              limit, usable, where="in the GPU's free memory")
    over = _over(shapes, lambda b, s: contexts + weights + run_bytes(
        b, s, model.input_size, model.hidden_size, model.num_layers, workers, n_inputs), limit)
    if over:
        batch, seq_len, need = over
        raise InputError(
            f"expected the run to fit in the GPU's free memory, got batch {batch} × seq_len "
            f"{seq_len} in {workers} worker processes, which need about {_gib(need)} (with about "
            f"{_gib(CUDA_PROCESS_BYTES)} per process for CUDA itself) {usable}; use fewer "
            f"--processes or --backends, or smaller batches")

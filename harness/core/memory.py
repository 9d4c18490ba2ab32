"""Memory: peak resident-memory growth over a block of code, and what a run will need."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from types import TracebackType

from harness.core.errors import InputError

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def device_used_mb(index: int = 0) -> float | None:
    """GPU memory in use as the device reports it (NVML), or None without nvidia-ml-py.

    torch's allocator statistics cannot see ONNX Runtime's CUDA arena; the device can."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
    except pynvml.NVMLError:
        return None


@dataclass(frozen=True)
class MemoryUse:
    """Memory used by one backend's agreement checks (its largest batches)."""

    rss_mb: float  # peak resident-memory growth of the process
    cuda_peak_mb: float | None = None  # torch.cuda.max_memory_allocated (torch allocations)
    device_growth_mb: float | None = None  # growth of the device's used memory (NVML)


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


def run_bytes(batch: int, seq_len: int, input_size: int, hidden_size: int, n_backends: int,
              n_inputs: int) -> int:
    """A rough lower bound on the memory one timed shape needs.

    Every backend holds ``n_inputs`` float32 input batches, and one forward pass keeps, per
    step, the hidden output and the four gate pre-activations (float64 in the reference).
    """
    inputs = n_backends * n_inputs * batch * seq_len * input_size * 4
    activations = batch * seq_len * 5 * hidden_size * 8
    return inputs + activations


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(shapes: list[tuple[int, int]], input_size: int, hidden_size: int, n_backends: int,
               n_inputs: int, available: int | None = None) -> None:
    """Refuse, before allocating anything, a shape whose inputs and activations cannot fit."""
    available = available_bytes() if available is None else available
    if available is None:
        return
    limit = 0.8 * available  # leave room for the libraries, the model and the OS
    for batch, seq_len in shapes:
        need = run_bytes(batch, seq_len, input_size, hidden_size, n_backends, n_inputs)
        if need > limit:
            raise InputError(
                f"expected batch × seq_len small enough to fit in memory, got batch {batch} × "
                f"seq_len {seq_len}, which needs about {_gib(need)} for inputs and activations "
                f"against {_gib(limit)} usable (80% of {_gib(available)} available)")

"""What machine and software a result came from."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from harness.core.settings import ProcessSettings, effective_threads, physical_cores

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile",
             "amx_bf16", "neon", "asimd", "sve")


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and value.strip():
                    model = value.strip()
                elif key in ("flags", "Features"):
                    flags.update(value.split())
    except OSError:
        pass
    return model, [flag for flag in ISA_FLAGS if flag in flags]


def _git(*args: str) -> str | None:
    """stdout of a git command run in this checkout, or None where git or the repo is missing."""
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, check=False, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_commit() -> str | None:
    out = _git("rev-parse", "HEAD")
    return out.strip() or None if out is not None else None


def git_dirty() -> bool | None:
    """Whether tracked files differ from ``git_commit``: the run then used code no commit holds."""
    out = _git("status", "--porcelain", "--untracked-files=no")
    return bool(out.strip()) if out is not None else None


def library_versions() -> dict:
    """The versions every result and checkpoint depends on; each backend adds its own."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__}


# torch's fp32 precision settings (torch 2.9 and later): "ieee", "tf32", "bf16" or "none" (take
# the parent's). The legacy allow_tf32 flags set some of them, so both are recorded.
FP32_PRECISION = ("fp32_precision", "cuda.matmul.fp32_precision", "cudnn.fp32_precision",
                  "cudnn.conv.fp32_precision", "cudnn.rnn.fp32_precision", "mkldnn.fp32_precision",
                  "mkldnn.matmul.fp32_precision", "mkldnn.conv.fp32_precision",
                  "mkldnn.rnn.fp32_precision")


def fp32_precision() -> dict[str, str]:
    """Each of ``FP32_PRECISION`` this torch has (under ``torch.backends``), by its path."""
    found = {}
    for path in FP32_PRECISION:
        value = torch.backends
        for part in path.split("."):
            value = getattr(value, part, None)
        if isinstance(value, str):
            found[path] = value
    return found


def cuda_info() -> dict:
    if not torch.cuda.is_available():
        return {"cuda_available": False, "cuda_version": torch.version.cuda}
    props = torch.cuda.get_device_properties(0)
    return {
        "cuda_available": True,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version(),
        "gpu_name": props.name,
        "gpu_compute_capability": f"{props.major}.{props.minor}",
        "gpu_memory_gb": round(props.total_memory / 2**30, 1),
        "gpu_driver": _nvidia_driver(),
        "cudnn": {"enabled": torch.backends.cudnn.enabled,
                  "benchmark": torch.backends.cudnn.benchmark,
                  "deterministic": torch.backends.cudnn.deterministic,
                  "allow_tf32": torch.backends.cudnn.allow_tf32},
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }


def _nvidia_driver() -> str | None:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


# Variables that choose the BLAS and OpenMP kernels and threads behind the figures; the
# harness sets none of them (OPENBLAS_CORETYPE=Haswell, say, holds NumPy's GEMM to AVX2).
KERNEL_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                    "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "MKL_ENABLE_INSTRUCTIONS",
                    "ONEDNN_MAX_CPU_ISA")


def kernel_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The kernel-choosing variables that are set, and their values."""
    return {name: environ[name] for name in KERNEL_VARIABLES if name in environ}


def collect(device: str, settings: ProcessSettings, command: list[str] | None = None) -> dict:
    cpu_model, isa = _cpuinfo()
    threads = effective_threads()
    threads["ort_intra_op"] = settings.intra_op_threads
    threads["ort_allow_spinning"] = settings.ort_allow_spinning
    device_name = cpu_model if device == "cpu" else cuda_info().get("gpu_name", "cuda")
    return {
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(command if command is not None else sys.argv),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "device": device,
        "device_name": device_name,
        "hostname": platform.node(),
        "os": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_isa": isa,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "physical_cores": physical_cores(),
        "logical_cores": os.cpu_count(),
        "threads": threads,
        "settings": settings.to_dict(),
        "kernel_env": kernel_env(),
        "versions": library_versions(),
        "fp32_precision": fp32_precision(),
        **cuda_info(),
    }

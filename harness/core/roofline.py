"""Machine peak (sustained fp32 GEMM) and the FLOPs of one LSTMPredictor forward pass.

The peak is the best sustained fp32 GEMM rate among the engines installed: torch's (MKL or
oneDNN), NumPy's BLAS, and each backend that can run a GEMM of its own (ONNX Runtime's
MatMul). They differ by 2x on some CPUs: MKL does not take its AVX-512 path on AMD.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from harness.core.model import ModelConfig

# Per hidden unit and step: 3 sigmoids + 2 tanh (counted as 1 FLOP each, as roofline
# conventions do) plus c' = f*c + i*g (3) and h' = o*tanh(c') (1), and the 2 bias adds
# per gate (8).
_ELEMENTWISE_PER_UNIT = 5 + 3 + 1 + 8


def lstm_forward_flops(config: ModelConfig, seq_len: int) -> int:
    """FLOPs for one sequence: the gate GEMMs dominate (2 FLOPs per multiply-add)."""
    h = config.hidden_size
    total = 0
    inputs = config.input_size
    for _ in range(config.num_layers):
        per_step = 2 * 4 * h * (inputs + h) + _ELEMENTWISE_PER_UNIT * h
        total += per_step * seq_len
        inputs = h
    return total + 2 * h * config.output_size + config.output_size


def best_gflops(run: Callable[[], None], flops: float, seconds: float, sync: Callable[[], None]
                = lambda: None) -> float:
    """The best rate of ``run`` (``flops`` each) over repeated batches of 4 within ``seconds``."""
    run()  # the first call pays for allocation and kernel selection
    sync()
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            run()
        sync()
        best = min(best, (time.perf_counter() - start) / 4)
    return flops / best / 1e9


def torch_gemm_gflops(device: str = "cpu", seconds: float = 0.3, size: int = 1024) -> float:
    """Sustained fp32 GEMM rate of ``torch.mm`` (MKL or oneDNN on the CPU)."""
    dev = torch.device(device)
    a = torch.randn(size, size, device=dev)
    b = torch.randn(size, size, device=dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    return best_gflops(lambda: torch.mm(a, b), 2.0 * size ** 3, seconds, sync)


def numpy_gemm_gflops(threads: int, seconds: float = 0.3, size: int = 1024) -> float:
    """Sustained fp32 GEMM rate of NumPy's BLAS on ``threads`` threads. (The harness keeps
    that BLAS to one thread otherwise, for the float64 reference.)"""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        return best_gflops(lambda: np.dot(a, b), 2.0 * size ** 3, seconds)


@dataclass(frozen=True)
class Peak:
    """The machine's sustained fp32 GEMM rate: the best engine's, and every engine's."""

    gflops: float | None
    engine: str | None
    by_engine: dict[str, float | None]

    @classmethod
    def best_of(cls, by_engine: dict[str, float | None]) -> Peak:
        measured = {k: v for k, v in by_engine.items() if v is not None}
        if not measured:
            return cls(None, None, by_engine)
        engine = max(measured, key=measured.get)
        return cls(measured[engine], engine, by_engine)

    def to_dict(self) -> dict:
        return asdict(self)

"""Machine peak (sustained fp32 GEMM) and the FLOPs of one LSTMPredictor forward pass."""

from __future__ import annotations

import time

import torch

from harness.model import ModelConfig

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


def measure_peak_gflops(device: str = "cpu", seconds: float = 0.3, size: int = 1024) -> float:
    """Sustained fp32 GEMM rate: the best of repeated square matmuls within ``seconds``."""
    dev = torch.device(device)
    a = torch.randn(size, size, device=dev)
    b = torch.randn(size, size, device=dev)
    flops = 2.0 * size ** 3

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    torch.mm(a, b)  # first call pays for allocation and kernel selection
    sync()
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        sync()
        best = min(best, (time.perf_counter() - start) / 4)
    return flops / best / 1e9

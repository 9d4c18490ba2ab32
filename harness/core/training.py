"""Seeded minibatch-Adam training of the LSTMPredictor on the sine series."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from harness.core.data import SineConfig, chronological_split, training_windows
from harness.core.model import LSTMPredictor, ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    seq_len: int = 50
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-2
    val_fraction: float = 0.2
    seed: int = 0
    data: SineConfig = field(default_factory=SineConfig)
    model: ModelConfig = field(default_factory=ModelConfig)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    model: LSTMPredictor
    val_mse: float
    train_seconds: float


EpochCallback = Callable[[int, float], None]


def evaluate_mse(model: nn.Module, inputs: np.ndarray, targets: np.ndarray) -> float:
    with torch.inference_mode():
        pred = model(torch.from_numpy(inputs))
    return float(torch.mean((pred - torch.from_numpy(targets)) ** 2))


def train(config: TrainConfig, on_epoch: EpochCallback | None = None) -> TrainResult:
    """Train deterministically on CPU: the same config gives bitwise the same weights.

    With ``epochs`` 0 the model keeps its seeded initial weights (PyTorch's default
    initialisation); its validation MSE is still measured and recorded."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    cfg = config.model
    inputs, targets = training_windows(config.data, config.seq_len, cfg.input_size, cfg.output_size)
    (x_train, y_train), (x_val, y_val) = chronological_split(inputs, targets, config.val_fraction)
    x_train_t, y_train_t = torch.from_numpy(x_train), torch.from_numpy(y_train)

    model = LSTMPredictor(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = nn.MSELoss()
    start = time.perf_counter()
    with _deterministic():
        for epoch in range(config.epochs):
            model.train()
            order = torch.randperm(len(x_train_t), generator=generator)
            for begin in range(0, len(order), config.batch_size):
                idx = order[begin:begin + config.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x_train_t[idx]), y_train_t[idx])
                loss.backward()
                optimizer.step()
            model.eval()
            if on_epoch is not None:
                on_epoch(epoch + 1, evaluate_mse(model, x_val, y_val))
    model.eval()
    return TrainResult(model=model, val_mse=evaluate_mse(model, x_val, y_val),
                       train_seconds=time.perf_counter() - start)


class _deterministic:
    """Deterministic kernels for the duration of training only, restoring the caller's choice."""

    def __enter__(self) -> None:
        self._previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)

    def __exit__(self, *exc: object) -> None:
        torch.use_deterministic_algorithms(self._previous)

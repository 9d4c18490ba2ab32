"""Sine-wave data: the series, its sliding windows, and a chronological split."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from harness.core.errors import InputError


@dataclass(frozen=True)
class SineConfig:
    """A sampled sine series. The defaults give the classic ``np.sin(np.linspace(0, 100, 1000))``."""

    length: int = 1000
    step: float = 100.0 / 999.0  # linspace(0, 100, 1000) spacing
    frequency: float = 1.0 / (2.0 * np.pi)  # cycles per unit of t, so sin(2*pi*f*t) == sin(t)
    amplitude: float = 1.0
    phase: float = 0.0
    noise: float = 0.0
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def sine_series(config: SineConfig = SineConfig()) -> np.ndarray:
    """The series as float64 values ``amplitude * sin(2*pi*f*t + phase) + noise``."""
    if config.length < 1:
        raise InputError(f"series length must be >= 1, got {config.length}")
    t = np.arange(config.length, dtype=np.float64) * config.step
    values = config.amplitude * np.sin(2.0 * np.pi * config.frequency * t + config.phase)
    if config.noise:
        values = values + np.random.default_rng(config.seed).normal(0.0, config.noise, config.length)
    return values


def make_windows(series: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(N, seq_len, 1)`` and next-sample targets ``(N, 1)``, both float32."""
    series = np.asarray(series)
    if series.ndim != 1:
        raise InputError(f"expected a 1-D series, got shape {series.shape}")
    if seq_len < 1 or seq_len >= len(series):
        raise InputError(f"seq_len must be in [1, {len(series) - 1}] for a series of "
                         f"{len(series)} samples, got {seq_len}")
    windows = sliding_window_view(series[:-1], seq_len)
    inputs = windows[..., np.newaxis].astype(np.float32)
    targets = series[seq_len:, np.newaxis].astype(np.float32)
    return inputs, targets


def chronological_split(inputs: np.ndarray, targets: np.ndarray, val_fraction: float = 0.2
                        ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Train on the earliest windows and validate on the latest.

    Windows overlap, so a random split would put future samples into training; the windows
    that straddle the cut are dropped so no validation target appears in a training input.
    """
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n = len(inputs)
    seq_len = inputs.shape[1]
    n_val = max(1, int(round(n * val_fraction)))
    cut = n - n_val
    train_end = max(0, cut - seq_len)
    return (inputs[:train_end], targets[:train_end]), (inputs[cut:], targets[cut:])


def sine_batch(batch: int, seq_len: int, seed: int) -> np.ndarray:
    """``batch`` real sine windows of ``seq_len`` samples, float32, with a seeded random phase."""
    phase = float(np.random.default_rng(seed).uniform(0.0, 2.0 * np.pi))
    series = sine_series(SineConfig(length=batch + seq_len, phase=phase))
    return make_windows(series, seq_len)[0]


def random_batch(batch: int, seq_len: int, input_size: int, seed: int) -> np.ndarray:
    """Standard-normal float32 inputs: off the training distribution, which exercises every gate."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, seq_len, input_size), dtype=np.float32)


def sine_forecast_batch(batch: int, seq_len: int, horizon: int, seed: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` real sine windows (float32, batch x seq_len x 1) and the true continuation of
    each, ``horizon`` samples (float64, batch x horizon x 1), seeded random phase."""
    phase = float(np.random.default_rng(seed).uniform(0.0, 2.0 * np.pi))
    series = sine_series(SineConfig(length=batch + seq_len + horizon - 1, phase=phase))
    spans = sliding_window_view(series, seq_len + horizon)[:batch, :, np.newaxis]
    return spans[:, :seq_len].astype(np.float32), spans[:, seq_len:].copy()

"""Sine-wave data: the series, its sliding windows, and a chronological split.

A model with more than one input or output channel is trained on a multivariate series:
channel k is the classic sine advanced in phase by k golden angles (about 137.5 degrees),
so any number of channels stay distinct and spread around the circle, channel 0 is the
classic series itself, and every channel's future follows from any one channel's past (they
share one frequency). Inputs are the first ``input_size`` channels; targets the next sample
of the first ``output_size`` channels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

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


GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))  # radians between neighbouring channels


def sine_channels(config: SineConfig, channels: int) -> np.ndarray:
    """``(length, channels)`` float64: channel k is ``sine_series`` advanced by k golden
    angles in phase (channel 0 is the series itself), with noise of its own."""
    if channels < 1:
        raise InputError(f"channels must be >= 1, got {channels}")
    return np.stack([sine_series(replace(config, phase=config.phase + k * GOLDEN_ANGLE,
                                         seed=config.seed + k)) for k in range(channels)], axis=1)


def make_windows(series: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(N, seq_len, C)`` and next-sample targets ``(N, C)``, both float32, from a
    series of shape ``(length,)`` (C = 1) or ``(length, C)``."""
    series = np.asarray(series)
    if series.ndim not in (1, 2):
        raise InputError(f"expected a 1-D or (length, channels) series, got shape {series.shape}")
    if series.ndim == 1:
        series = series[:, np.newaxis]
    if seq_len < 1 or seq_len >= len(series):
        raise InputError(f"seq_len must be in [1, {len(series) - 1}] for a series of "
                         f"{len(series)} samples, got {seq_len}")
    windows = sliding_window_view(series[:-1], seq_len, axis=0)  # (N, C, seq_len)
    inputs = np.moveaxis(windows, 1, 2).astype(np.float32)
    targets = series[seq_len:].astype(np.float32)
    return inputs, targets


def training_windows(config: SineConfig, seq_len: int, input_size: int = 1, output_size: int = 1
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Windows of the first ``input_size`` channels, and as targets the next sample of the
    first ``output_size`` channels (the classic one-channel windows for 1 and 1)."""
    inputs, targets = make_windows(sine_channels(config, max(input_size, output_size)), seq_len)
    return np.ascontiguousarray(inputs[..., :input_size]), np.ascontiguousarray(targets[:, :output_size])


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


def sine_batch(batch: int, seq_len: int, seed: int, channels: int = 1) -> np.ndarray:
    """``batch`` real sine windows of ``seq_len`` samples and ``channels`` channels (as the
    harness trains on), float32, with a seeded random phase."""
    phase = float(np.random.default_rng(seed).uniform(0.0, 2.0 * np.pi))
    series = sine_channels(SineConfig(length=batch + seq_len, phase=phase), channels)
    return make_windows(series, seq_len)[0]


def random_batch(batch: int, seq_len: int, input_size: int, seed: int) -> np.ndarray:
    """Standard-normal float32 inputs: off the training distribution, which exercises every gate."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, seq_len, input_size), dtype=np.float32)


def sine_forecast_batch(batch: int, seq_len: int, horizon: int, seed: int, channels: int = 1
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` real sine windows (float32, batch x seq_len x channels) and the true
    continuation of each, ``horizon`` samples (float64, batch x horizon x channels), seeded
    random phase."""
    phase = float(np.random.default_rng(seed).uniform(0.0, 2.0 * np.pi))
    series = sine_channels(SineConfig(length=batch + seq_len + horizon - 1, phase=phase), channels)
    spans = np.moveaxis(sliding_window_view(series, seq_len + horizon, axis=0)[:batch], 1, 2)
    return spans[:, :seq_len].astype(np.float32), spans[:, seq_len:].copy()

"""Is the host steady now, and which canary sees it? Round after round, the canary on every
thread the backends compute with, the same GEMM on NumPy's BLAS held to one thread (the
canary before it, on one thread), and eager's forward at batch 64 (the work a speedup
is made of); each one's spread is its upper-quartile time over its lower-quartile one, as a
run's verdict judges the canary's.

    python -m tools.host_steadiness --seconds 60
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from harness.cli.arguments import OneLineParser, int_at_least, number
from harness.core.errors import InputError
from harness.core.load import CANARY_MATRIX, canary_s, canary_spread, canary_threads
from harness.core.model import LSTMPredictor
from harness.core.settings import apply, default_settings
from harness.core.timing import TimingConfig


@dataclass(frozen=True)
class Series:
    name: str
    times_s: tuple[float, ...]  # one per round

    @property
    def spread(self) -> float | None:
        return canary_spread(self.times_s)


def _forward_s(model: LSTMPredictor, x: torch.Tensor, calls: int = 5) -> float:
    model(x)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def numpy_gemm() -> None:
    """The canary's GEMM on NumPy's BLAS, which the settings hold to one thread."""
    matrix = CANARY_MATRIX.numpy()
    np.dot(matrix, matrix)


def measure(seconds: float) -> list[Series]:
    """Every round: the canary, the same GEMM on NumPy's one thread, then eager's forward."""
    model = LSTMPredictor().eval()
    x = torch.randn(64, 50, model.config.input_size)
    threads = canary_threads()
    every, one, forward = [], [], []
    end = time.perf_counter() + seconds
    with torch.inference_mode():
        while time.perf_counter() < end:
            time.sleep(TimingConfig.settle_s)
            every.append(canary_s())
            one.append(canary_s(numpy_gemm))
            forward.append(_forward_s(model, x))
    plural = "s" if threads != 1 else ""
    return [Series(f"canary, {threads} thread{plural}", tuple(every)),
            Series("NumPy GEMM, 1 thread", tuple(one)),
            Series(f"eager forward, batch 64, {threads} thread{plural}", tuple(forward))]


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=number("--seconds"), default=60.0)
    parser.add_argument("--threads", type=int_at_least("--threads", 1),
                        default=default_settings().intra_op_threads)
    try:
        args = parser.parse_args(argv)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    apply(default_settings(args.threads))
    found = measure(args.seconds)
    print(f"{len(found[0].times_s)} rounds over {args.seconds:g} s")
    for series in found:
        spread = series.spread
        print(f"{series.name:<36} median {statistics.median(series.times_s) * 1e3:8.4f} ms  "
              f"spread {'not judged' if spread is None else f'{spread:.3f}'}")


if __name__ == "__main__":
    main()

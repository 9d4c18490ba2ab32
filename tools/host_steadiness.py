"""Is the host steady now, and which canary sees it? Round after round, the canary on one
thread and on every thread the backends compute with, and eager's forward at batch 64 (the
work a speedup is made of); each one's spread is its upper-quartile time over its
lower-quartile one, as a run's verdict judges the canary's.

    python -m tools.host_steadiness --seconds 60
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass

import torch

from harness.cli.arguments import OneLineParser, int_at_least, number
from harness.core.errors import InputError
from harness.core.load import canary_s, canary_spread
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


def measure(seconds: float, threads: int) -> list[Series]:
    """Every round: the canary on one thread, then on ``threads``, then eager's forward on
    ``threads``. The thread count changes within the round, which only this comparison may
    do: the harness sets it once per process."""
    model = LSTMPredictor().eval()
    x = torch.randn(64, 50, model.config.input_size)
    one, every, forward = [], [], []
    end = time.perf_counter() + seconds
    with torch.inference_mode():
        while time.perf_counter() < end:
            time.sleep(TimingConfig.settle_s)
            torch.set_num_threads(1)
            one.append(canary_s())
            torch.set_num_threads(threads)
            every.append(canary_s())
            forward.append(_forward_s(model, x))
    plural = "s" if threads != 1 else ""
    return [Series("canary, one thread", tuple(one)),
            Series(f"canary, the run's {threads} thread{plural}", tuple(every)),
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
    found = measure(args.seconds, args.threads)
    print(f"{len(found[0].times_s)} rounds over {args.seconds:g} s")
    for series in found:
        spread = series.spread
        print(f"{series.name:<36} median {statistics.median(series.times_s) * 1e3:8.4f} ms  "
              f"spread {'not judged' if spread is None else f'{spread:.3f}'}")


if __name__ == "__main__":
    main()

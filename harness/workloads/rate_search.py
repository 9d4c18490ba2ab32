"""The highest offered rate a judge accepts: bracket by a constant factor, then bisect.

The judge is LoadGen: a test at a rate is VALID when its latency percentile stayed under the
bound (and its minimum length and early-stopping rules held). From a first guess the rate
is multiplied (or divided) by ``factor`` until one test passes and another fails, then the
gap between the highest pass and the lowest fail is halved on a log scale until it is
within ``precision``. Each step is one test, so the number of tests is what the search
costs; ``max_trials`` caps it. Tests are noisy near the boundary, so the answer is the
highest rate that passed, whichever test that was.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Trial(Generic[R]):
    rate: float
    passed: bool
    result: R


@dataclass(frozen=True)
class Search(Generic[R]):
    trials: tuple[Trial[R], ...]
    converged: bool  # a pass and a fail within ``precision`` of each other were found

    @property
    def best(self) -> Trial[R] | None:
        """The highest rate that passed; None if none did."""
        return max((t for t in self.trials if t.passed), key=lambda t: t.rate, default=None)


def find_peak(judge: Callable[[float], tuple[bool, R]], start: float, *, factor: float = 2.0,
              precision: float = 0.05, max_trials: int = 12, min_rate: float = 0.0) -> Search[R]:
    """Search for the highest rate ``judge`` passes, starting at ``start``.

    ``judge(rate)`` returns (passed, what the test found). No rate below ``min_rate`` is
    tried: a search that fails there ends without a pass.
    """
    if not (start > 0 and factor > 1 and precision > 0 and max_trials >= 1):
        raise ValueError(f"find_peak needs start > 0, factor > 1, precision > 0 and max_trials "
                         f">= 1, got {start}, {factor}, {precision}, {max_trials}")
    trials: list[Trial[R]] = []
    low: float | None = None  # the highest rate that passed
    high: float | None = None  # the lowest rate that failed

    def attempt(rate: float) -> None:
        nonlocal low, high
        passed, result = judge(rate)
        trials.append(Trial(rate, passed, result))
        if passed:
            low = rate if low is None else max(low, rate)
        else:
            high = rate if high is None else min(high, rate)

    rate = max(start, min_rate)
    while len(trials) < max_trials and (low is None or high is None):
        attempt(rate)
        if low is not None and high is not None:
            break
        if low is None and rate <= min_rate:
            break  # failed at the floor: nothing lower is tried
        rate = rate * factor if high is None else max(rate / factor, min_rate)
    while (low is not None and high is not None and high > low * (1 + precision)
           and len(trials) < max_trials):
        attempt(math.sqrt(low * high))
    converged = low is not None and high is not None and high <= low * (1 + precision)
    return Search(tuple(trials), converged)

"""Statistics as pure functions on samples (seconds or ratios)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

NOISY_IQR_FRACTION = 0.10


def percentile(samples: np.ndarray, q: float) -> float:
    return float(np.percentile(samples, q, method="linear"))


def median_ci(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics.

    The k-th smallest and k-th largest samples bracket the median unless at most k-1 samples
    fall below it or above it; that count is Binomial(n, 1/2) whatever the samples' shape.
    k is the largest rank whose exact binomial tails leave at least ``confidence``. Below
    six samples no rank does (at 95%), and the CI is the full range.
    """
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = len(x)
    if n == 0:
        raise ValueError("median_ci of no samples")
    k = _outer_rank(n, confidence)
    if k == 0:
        return float(x[0]), float(x[-1])
    return float(x[k - 1]), float(x[n - k])


def _outer_rank(n: int, confidence: float) -> int:
    """The largest k with P(Binomial(n, 1/2) <= k-1) <= (1 - confidence)/2, from exact
    binomial counts; 0 when none."""
    total, alpha_half = 2**n, (1.0 - confidence) / 2.0
    term, tail, k = 1, 1, 0  # term = C(n, k); tail = P(B <= k) * 2**n
    while tail / total <= alpha_half:
        k += 1
        term = term * (n - k + 1) // k
        tail += term
    return k


def min_ci_samples(confidence: float = 0.95) -> int:
    """The fewest samples whose order statistics bracket the median at ``confidence`` (six at
    95%); from fewer, ``median_ci`` can only give the full range, which holds the median less
    often (75% of the time from three)."""
    n = 1
    while _outer_rank(n, confidence) == 0:
        n += 1
    return n


@dataclass(frozen=True)
class Summary:
    n: int
    min: float
    median: float
    mean: float
    stdev: float
    iqr: float
    p90: float
    p99: float
    ci95_low: float
    ci95_high: float

    @property
    def noisy(self) -> bool:
        return is_noisy(self.iqr, self.median)

    @property
    def ci_half_width_fraction(self) -> float:
        return (self.ci95_high - self.ci95_low) / 2.0 / self.median if self.median else math.inf

    def to_dict(self) -> dict:
        return asdict(self)


def is_noisy(iqr: float, median: float) -> bool:
    return median > 0 and iqr / median > NOISY_IQR_FRACTION


def _median_ci(x: np.ndarray, groups: np.ndarray | list[int] | None) -> tuple[float, float]:
    """Within one group, the order-statistics CI; across several, the two-level bootstrap."""
    if groups is None or len(set(np.asarray(groups).tolist())) < 2:
        return median_ci(x)
    return hierarchical_median_ci(x, np.asarray(groups))


def summarize(samples: np.ndarray | list[float],
              groups: np.ndarray | list[int] | None = None) -> Summary:
    """Summary statistics; ``groups`` labels each sample with the process it came from."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        raise ValueError("summarize of no samples")
    lo, hi = _median_ci(x, groups)
    return Summary(
        n=int(x.size), min=float(x.min()), median=float(np.median(x)), mean=float(x.mean()),
        stdev=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        iqr=percentile(x, 75) - percentile(x, 25), p90=percentile(x, 90), p99=percentile(x, 99),
        ci95_low=lo, ci95_high=hi,
    )


def throughput(batch_size: int, seq_len: int, seconds_per_call: float) -> tuple[float, float]:
    """(sequences per second, time steps per second)."""
    seqs = batch_size / seconds_per_call
    return seqs, seqs * seq_len


@dataclass(frozen=True)
class Ratio:
    median: float
    ci95_low: float
    ci95_high: float


def paired_ratio(numerators: np.ndarray, denominators: np.ndarray,
                 groups: np.ndarray | list[int] | None = None) -> Ratio:
    """Median of per-round ratios, with its CI. Pairs taken in the same round share the
    machine's drift, so their ratio cancels it where a ratio of two medians would not.
    ``groups`` labels each pair with the worker processes it came from."""
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    if num.shape != den.shape or num.size == 0:
        raise ValueError(f"paired_ratio needs equal, non-empty samples, got {num.shape} and {den.shape}")
    ratios = num / den
    lo, hi = _median_ci(ratios, groups)
    return Ratio(float(np.median(ratios)), lo, hi)


def hierarchical_median_ci(values: np.ndarray, groups: np.ndarray, confidence: float = 0.95,
                           n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of the median from a two-level bootstrap: draw the groups (worker
    processes) with replacement, then the values (rounds) within each drawn group with
    replacement, and take the median of what was drawn.

    Rounds within one process share that process's luck (its memory layout, where its
    threads landed, the machine's state while it ran), so resampling rounds alone reads the
    noise inside one process as all the noise there is. Resampling the processes too lets
    the interval widen by as much as the processes disagree."""
    x = np.asarray(values, dtype=np.float64)
    if len(np.unique(_groups_of(x, groups))) == 1:
        return median_ci(x, confidence)
    medians = hierarchical_medians(x, groups, n_boot, seed)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(medians, [tail, 1.0 - tail])
    return float(lo), float(hi)


def hierarchical_medians(values: np.ndarray, groups: np.ndarray, n_boot: int = 2000,
                         seed: int = 0) -> np.ndarray:
    """``n_boot`` medians of the two-level bootstrap (``hierarchical_median_ci``): each of
    the groups drawn with replacement, then each drawn group's values."""
    x = np.asarray(values, dtype=np.float64)
    g = _groups_of(x, groups)
    members = [x[g == label] for label in np.unique(g)]
    rng = np.random.default_rng(seed)
    medians = np.empty(n_boot)
    for b in range(n_boot):
        picked = rng.integers(len(members), size=len(members))
        medians[b] = np.median(np.concatenate(
            [members[i][rng.integers(members[i].size, size=members[i].size)] for i in picked]))
    return medians


def _groups_of(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    g = np.asarray(groups)
    if values.shape != g.shape or values.size == 0:
        raise ValueError(f"the two-level bootstrap needs equal, non-empty values and groups, "
                         f"got {values.shape} and {g.shape}")
    return g

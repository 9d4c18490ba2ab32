import math

import numpy as np
import pytest

from harness.core.stats import (
    is_noisy,
    median_ci,
    min_ci_samples,
    paired_ratio,
    summarize,
    throughput,
)


def test_summary_of_a_known_sample():
    s = summarize(list(range(1, 101)))  # 1..100
    assert (s.n, s.min, s.median, s.mean) == (100, 1.0, 50.5, 50.5)
    assert s.stdev == pytest.approx(math.sqrt(100 * 101 / 12))  # of 1..n: sqrt(n(n+1)/12)
    assert s.iqr == pytest.approx(49.5)
    assert s.p90 == pytest.approx(90.1) and s.p99 == pytest.approx(99.01)


def test_median_ci_uses_order_statistics():
    # n=100: P(Binomial(100, 1/2) <= 39) = 0.0176 <= 0.025 < P(... <= 40) = 0.0284, so the
    # 40th smallest and the 40th largest (values 40 and 61)
    assert median_ci(np.arange(1, 101)) == (40.0, 61.0)
    assert median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few for ranks: the full range


def test_the_fewest_samples_for_a_95_percent_ci_are_those_whose_range_holds_the_median_95_percent():
    # the full range misses the median only when every sample falls on one side of it
    n = min_ci_samples()
    assert 1 - 2.0 ** (1 - n) >= 0.95 > 1 - 2.0 ** (2 - n)
    assert min_ci_samples(0.99) > n


@pytest.mark.parametrize("n", [20, 50, 100, 200])
def test_median_ci_covers_the_true_median_at_least_95_percent_of_the_time(n):
    rng = np.random.default_rng(n)
    trials = 5000
    hits = sum(lo <= 0.0 <= hi for lo, hi in (median_ci(rng.standard_normal(n))
                                             for _ in range(trials)))
    assert 0.948 <= hits / trials <= 0.975


def test_noisy_flag_follows_iqr_over_median():
    assert not summarize([1.0, 1.01, 0.99, 1.02, 0.98]).noisy
    assert summarize([1.0, 1.5, 0.7, 1.3, 0.8]).noisy
    assert is_noisy(0.11, 1.0) and not is_noisy(0.1, 1.0)


def test_throughput():
    assert throughput(64, 50, 0.002) == (32000.0, 1600000.0)


def test_paired_ratio_is_the_median_of_per_round_ratios():
    """A worked example where the three plausible answers differ: per-round ratios
    [2, 0.5, 3, 2, 2] have median 2; the ratio of medians is 30 / 20 = 1.5; pairing the
    sorted samples gives [2, 2, 1.5, 1.6, 1.25], median 1.6."""
    base = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    fast = np.array([5.0, 40.0, 10.0, 20.0, 25.0])
    r = paired_ratio(base, fast)
    assert r.median == 2.0
    assert (r.ci95_low, r.ci95_high) == (0.5, 3.0)  # five pairs: the CI is their range


def test_paired_ratio_cancels_shared_drift():
    drift = np.linspace(1.0, 1.5, 40)  # the machine slows down by half during the run
    base, fast = 2.0 * drift, 1.0 * drift
    r = paired_ratio(base, fast)
    assert r.median == pytest.approx(2.0) and r.ci95_low == pytest.approx(2.0)
    with pytest.raises(ValueError):
        paired_ratio(base, fast[:3])

"""tools/run_spread: how often one run's speedup CI holds another run's estimate."""

import numpy as np
import pytest

from tools.run_spread import coverage, host_spread, speedups


def _run(*rows: tuple[str, float, float, float]) -> dict:
    return {"rows": [{"backend": "eager", "device": "cpu", "dtype": "fp32", "batch_size": 64,
                      "seq_len": 50, "speedup_vs_eager": 1.0, "speedup_ci95_low": 1.0,
                      "speedup_ci95_high": 1.0},
                     *({"backend": b, "device": "cpu", "dtype": "fp32", "batch_size": 64,
                        "seq_len": 50, "speedup_vs_eager": s, "speedup_ci95_low": lo,
                        "speedup_ci95_high": hi} for b, s, lo, hi in rows)]}


def test_each_ordered_pair_of_runs_counts_once_per_shared_row_and_eager_never():
    a = speedups(_run(("ort", 2.0, 1.9, 2.1), ("ov", 1.0, 0.95, 1.05)))
    b = speedups(_run(("ort", 2.2, 2.15, 2.3), ("ov", 1.02, 0.9, 1.1)))
    # a's ort CI misses 2.2, b's misses 2.0; the ov CIs hold each other's estimate
    assert coverage([a, b]) == (2, 4)
    assert coverage([a, speedups(_run(("other", 1.0, 0.9, 1.1)))]) == (0, 0)


def test_a_runs_host_spread_is_its_verdicts_or_recomputed_from_its_rows_for_older_files():
    assert host_spread({"verdict": {"canary_spread": 1.2}, "rows": []}) == 1.2
    assert host_spread({"verdict": {"canary_spread": None}, "rows": []}) is None
    # two backends timed in the same 40 rounds, half of them on a host 30% slower
    canaries = list(np.exp(np.random.default_rng(0).normal(0, 0.005, 40)) * np.repeat([1.0, 1.3], 20))
    older = {"verdict": {"verdict": "valid"}, "rows": [{"samples_canary_rel": canaries}] * 2}
    assert host_spread(older) == pytest.approx(1.3, rel=0.03)

"""How often the two-level CI of a median (``hierarchical_median_ci``) holds the true median,
on synthetic log round times whose spread between worker processes and within each is
known, for a few process counts. Rounds alone (``median_ci``) are shown beside it.

    python -m tools.ci_coverage --between 0.04 --within 0.03 --processes 2 3 6
"""

from __future__ import annotations

import argparse

import numpy as np

from harness.core.stats import hierarchical_median_ci, median_ci


def coverage(processes: int, rounds: int, between: float, within: float, trials: int,
             seed: int = 0) -> tuple[float, float]:
    """(two-level coverage, rounds-alone coverage) of the true median 0 over ``trials``."""
    rng = np.random.default_rng(seed)
    two_level = rounds_alone = 0
    groups = np.repeat(np.arange(processes), rounds)
    for _ in range(trials):
        offsets = rng.normal(0.0, between, processes)
        values = offsets[groups] + rng.normal(0.0, within, groups.size)
        lo, hi = hierarchical_median_ci(values, groups, n_boot=500,
                                        seed=int(rng.integers(1 << 30)))
        two_level += lo <= 0.0 <= hi
        lo, hi = median_ci(values)
        rounds_alone += lo <= 0.0 <= hi
    return two_level / trials, rounds_alone / trials


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.ci_coverage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--between", type=float, default=0.04,
                        help="sd of the worker processes' offsets (log time)")
    parser.add_argument("--within", type=float, default=0.03,
                        help="sd of the rounds within a process (log time)")
    parser.add_argument("--rounds", type=int, default=50, help="rounds per process")
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 3, 6])
    parser.add_argument("--trials", type=int, default=300)
    args = parser.parse_args(argv)
    for k in args.processes:
        two_level, alone = coverage(k, args.rounds, args.between, args.within, args.trials)
        print(f"{k} processes x {args.rounds} rounds, between sd {args.between}, within sd "
              f"{args.within}: two-level CI covers {two_level:.0%}, rounds alone {alone:.0%}")


if __name__ == "__main__":
    main()

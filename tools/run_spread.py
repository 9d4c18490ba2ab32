"""Do the speedup CIs cover what changes between runs? For results files of independent runs
of the same scenario, how often one run's 95% CI of a speedup holds another run's point
estimate, and how far each speedup's point estimates spread (5% is the project's goal at
batch 64 and above).

    python -m tools.run_spread run1.json run2.json run3.json
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from harness.core.compare import Key, row_key
from harness.core.errors import InputError
from harness.io.sources import load_results


def speedups(result: dict) -> dict[Key, dict]:
    """The rows with a speedup against eager (not eager's own), by the identity compare
    matches rows on."""
    return {row_key(r): r for r in result["rows"]
            if r.get("speedup_vs_eager") is not None and r["backend"] != "eager"}


def coverage(runs: list[dict[Key, dict]]) -> tuple[int, int]:
    """(pairs where one run's CI holds the other's estimate, pairs compared)."""
    held = total = 0
    for mine, other in itertools.permutations(runs, 2):
        for key, row in mine.items():
            if key in other:
                total += 1
                held += row["speedup_ci95_low"] <= other[key]["speedup_vs_eager"] <= row["speedup_ci95_high"]
    return held, total


def _shape_then_backend(row: dict) -> tuple:
    return row["batch_size"], row["seq_len"], row["backend"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    try:
        runs = [speedups(load_results(path)) for path in parser.parse_args().results]
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    held, total = coverage(runs)
    print(f"one run's CI holds another run's estimate: {held}/{total} ({held / max(total, 1):.0%})")
    for key, first in sorted(runs[0].items(), key=lambda item: _shape_then_backend(item[1])):
        rows = [run[key] for run in runs if key in run]
        estimates = [r["speedup_vs_eager"] for r in rows]
        spread = (max(estimates) - min(estimates)) / min(estimates)
        cells = "  ".join(f"{r['speedup_vs_eager']:.3f} [{r['speedup_ci95_low']:.3f}-"
                          f"{r['speedup_ci95_high']:.3f}]" for r in rows)
        print(f"{first['backend']:>14} batch {first['batch_size']:<5} seq {first['seq_len']:<4} {cells}"
              f"  spread {spread:.1%}")


if __name__ == "__main__":
    main()

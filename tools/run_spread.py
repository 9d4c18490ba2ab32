"""Do the speedup CIs cover what changes between runs? For results files of independent runs
of the same scenario, how often one run's 95% CI of a speedup holds another run's point
estimate, and how far each speedup's point estimates spread (5% is the project's goal at
batch 64 and above); and how steady each run's host was, by its canary's spread.

    python -m tools.run_spread run1.json run2.json run3.json
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from harness.core.compare import Key, row_key
from harness.core.errors import InputError
from harness.core.load import canary_spread, pooled_canaries
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


def host_spread(result: dict) -> float | None:
    """The run's canary spread: its verdict's, else (a file from before the verdict judged
    the host) recomputed from its rows as the verdict computes it, which holds for a run of
    one model, device and dtype: a merged run's rows were then each on their own scale."""
    verdict = result.get("verdict") or {}
    if "canary_spread" in verdict:
        return verdict["canary_spread"]
    return canary_spread(pooled_canaries(r["samples_canary_rel"] for r in result["rows"]
                                         if r.get("samples_canary_rel")))


def _shape_then_backend(row: dict) -> tuple:
    return row["batch_size"], row["seq_len"], row["backend"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    paths = parser.parse_args().results
    try:
        results = [load_results(path) for path in paths]
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    for path, result in zip(paths, results, strict=True):
        spread = host_spread(result)
        verdict = (result.get("verdict") or {}).get("verdict", "no verdict")
        print(f"{path}: {verdict}, canary spread "
              f"{'not judged' if spread is None else f'{spread:.3f}'}")
    runs = [speedups(result) for result in results]
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

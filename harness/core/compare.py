"""Comparing two runs row by row: the change in median and whether it is significant.

Pure functions on results dicts. Where either run took a row's rounds in several worker
processes (each round labelled with its own, ``samples_process``), significance comes from
the two-level bootstrap the run's own CIs come from: processes drawn with replacement, then
rounds within each, on both sides, for the ratio of the medians; the change is significant
when fewer than 2.5% of the drawn ratios fall on the other side of 1 from the rest. Rounds
within one process share its luck, and a test that takes them as independent draws calls
two processes' difference a change. Otherwise (one process a side, or files from before
rounds were labelled), a two-sided Mann-Whitney U test on the raw per-round samples: it
assumes nothing about their distribution (timings are skewed, with long right tails) and
asks whether one side's rounds tend to be slower than the other's.

Rows of a mode whose samples two runs do not take under the same conditions (a server's
answer times, each at the highest rate its own run held) are compared by the mode's own
figure instead (its highest rate): one number a side, so the change is shown untested and
no speed gate applies to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy.stats import mannwhitneyu

from harness.core.results import (
    UNTRUSTED,
    BackendIdentity,
    RowFigure,
    backend_identity,
    wrong_answers,
)
from harness.core.stats import hierarchical_medians
from harness.core.targets import DEFAULT_MODE

# A row is the same measurement in two runs only for the same model: its weights' SHA-256.
# A baseline row timed in a run of another dtype (``run_dtype``: eager beside int8 rows) is
# that run's measurement, apart from its own dtype's run's.
KEY_FIELDS = ("backend", "device", "dtype", "batch_size", "seq_len", "mode", "model_sha256",
              "run_dtype")
_KEY_DEFAULTS = {"mode": DEFAULT_MODE, "model_sha256": None, "run_dtype": None}

Key = tuple


def row_key(row: dict) -> Key:
    return tuple(row.get(f, _KEY_DEFAULTS[f]) if f in _KEY_DEFAULTS else row[f] for f in KEY_FIELDS)


class Significance(Enum):
    """How a row's change was tested, in the words a report shows."""

    BOOTSTRAP = "two-level bootstrap over processes and rounds"
    RANK = "Mann-Whitney U on the raw samples"


@dataclass(frozen=True)
class SampleTest:
    ratio: float  # median(new) / median(base): above 1 is slower
    p_value: float | None  # None when the two sides' rounds are too few to ever be significant
    significant: bool
    method: Significance


def compare_samples(base: np.ndarray | list[float], new: np.ndarray | list[float],
                    confidence: float = 0.95, base_processes: Sequence[int] | None = None,
                    new_processes: Sequence[int] | None = None) -> SampleTest:
    """Ratio of medians, and whether the two samples differ at the given confidence;
    ``*_processes`` label each sample with the worker process it came from."""
    b, n = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    if b.size == 0 or n.size == 0:
        raise ValueError("compare_samples needs samples on both sides")
    ratio = float(np.median(n) / np.median(b))
    bootstrap = _labelled(b, base_processes) and _labelled(n, new_processes) and \
        max(len(set(base_processes)), len(set(new_processes))) > 1
    method = Significance.BOOTSTRAP if bootstrap else Significance.RANK
    if not _can_be_significant(b.size, n.size, confidence):
        return SampleTest(ratio, None, False, method)
    if bootstrap:
        drawn = hierarchical_medians(n, np.asarray(new_processes), BOOTSTRAP_DRAWS, seed=1) / \
            hierarchical_medians(b, np.asarray(base_processes), BOOTSTRAP_DRAWS, seed=0)
        # two-sided: twice the share of draws on the side of 1 fewer of them fall
        p = max(2.0 * float(min(np.mean(drawn <= 1.0), np.mean(drawn >= 1.0))),
                1.0 / BOOTSTRAP_DRAWS)
    else:
        p = float(mannwhitneyu(b, n, alternative="two-sided").pvalue)
    return SampleTest(ratio, min(p, 1.0), p < 1.0 - confidence, method)


BOOTSTRAP_DRAWS = 2000


def _can_be_significant(base: int, new: int, confidence: float) -> bool:
    """Whether rounds this many a side can differ significantly at all: the rank test's
    smallest two-sided p, every round of one side below every round of the other, is
    2 / C(base + new, base) (a third of 2 vs 2; 0.0015 for 2 vs 50)."""
    # an int against a float compares exactly; C(n, k) as a float overflows from ~515 a side
    return math.comb(base + new, base) > 2.0 / (1.0 - confidence)


def _labelled(samples: np.ndarray, processes: Sequence[int] | None) -> bool:
    return processes is not None and len(processes) == samples.size


@dataclass(frozen=True)
class FigureChange:
    """A row's own figure in both runs (``key``; ``higher_is_better`` for a rate)."""

    key: str
    base: float | None  # None: that run has none (a server that held no rate)
    new: float | None
    higher_is_better: bool

    @property
    def worse_by(self) -> float | None:
        """How much worse NEW is, as a fraction of BASE (negative: better); None without both."""
        if self.base is None or self.new is None or not self.base:
            return None
        change = (self.new - self.base) / self.base
        return -change if self.higher_is_better else change


@dataclass(frozen=True)
class RowChange:
    key: Key
    base: dict
    new: dict
    test: SampleTest | None  # None when a side was not measured, or compared by its figure
    agreement_lost: bool  # agreed in BASE, disagrees or fails in NEW
    figure: FigureChange | None = None  # the row's own figure, where its mode names one

    def regressed(self, threshold: float) -> bool:
        """Slower by more than `threshold` (0.05 = 5%) and significantly so."""
        return self.test is not None and self.test.significant and self.test.ratio > 1.0 + threshold

    def verdict(self, threshold: float) -> str:
        if self.agreement_lost:
            return "agreement lost"
        if self.figure is not None:
            worse = self.figure.worse_by
            if worse is None:
                return "not measured"
            return "unchanged" if worse == 0 else f"{'worse' if worse > 0 else 'better'} (untested)"
        if self.test is None:
            return "not measured"
        if self.test.p_value is None:
            return "too few samples"
        if not self.test.significant:
            return "no significant change"
        if self.regressed(threshold):
            return "slower"
        if self.test.ratio > 1.0:
            return "slower, within threshold"
        return "faster"


@dataclass(frozen=True)
class Comparison:
    changes: tuple[RowChange, ...]
    only_base: tuple[dict, ...]
    only_new: tuple[dict, ...]
    confidence: float
    # (side, verdict) for each side ("base", "new") timed on a contended or unsteady machine
    untrusted: tuple[tuple[str, str], ...] = ()

    @property
    def gate_applies(self) -> bool:
        """A speed gate neither passes nor fails on a run timed while the machine was busy
        or its host unsteady."""
        return not self.untrusted

    def failures(self, threshold: float | None) -> list[RowChange]:
        """Rows that fail the gate: lost agreement always; slower only with a threshold, and
        only when both sides were valid."""
        speed = threshold is not None and self.gate_applies
        return [c for c in self.changes
                if c.agreement_lost or (speed and c.regressed(threshold))]


def _measured(row: dict) -> bool:
    return row.get("status", "ok") == "ok" and bool(row.get("samples_ms"))


def _lost_agreement(base: dict, new: dict, base_wrong: set[BackendIdentity],
                    new_wrong: set[BackendIdentity]) -> bool:
    """The row's backend agreed everywhere in BASE and answered wrongly somewhere in NEW: at
    the row's shape, or at a shape only checked."""
    return (base.get("agrees") is True and backend_identity(base) not in base_wrong
            and backend_identity(new) in new_wrong)


def _figure(base: dict, new: dict, figure: RowFigure) -> FigureChange:
    """The change in a row's figure."""
    return FigureChange(figure.key, base.get(figure.key), new.get(figure.key),
                        figure.higher_is_better)


def compare_results(base: dict, new: dict, confidence: float = 0.95,
                    figures: Mapping[str, RowFigure] | None = None) -> Comparison:
    """Row by row; ``figures`` maps a mode to the figure its rows are compared by instead of
    their samples."""
    figures = figures or {}
    base_rows = {row_key(r): r for r in base.get("rows", [])}
    new_rows = {row_key(r): r for r in new.get("rows", [])}
    base_wrong, new_wrong = wrong_answers(base), wrong_answers(new)
    changes = []
    for key, b in base_rows.items():
        if key not in new_rows:
            continue
        n = new_rows[key]
        by_figure = figures.get(b.get("mode", DEFAULT_MODE))
        if by_figure is not None:
            changes.append(RowChange(key, b, n, None, _lost_agreement(b, n, base_wrong, new_wrong),
                                     _figure(b, n, by_figure)))
            continue
        test = (compare_samples(b["samples_ms"], n["samples_ms"], confidence,
                                b.get("samples_process"), n.get("samples_process"))
                if _measured(b) and _measured(n) else None)
        changes.append(RowChange(key, b, n, test, _lost_agreement(b, n, base_wrong, new_wrong)))
    verdicts = ((side, (result.get("verdict") or {}).get("verdict"))
                for side, result in (("base", base), ("new", new)))
    untrusted = tuple((side, v) for side, v in verdicts if v in UNTRUSTED)
    return Comparison(tuple(changes),
                      tuple(r for k, r in base_rows.items() if k not in new_rows),
                      tuple(r for k, r in new_rows.items() if k not in base_rows), confidence,
                      untrusted)

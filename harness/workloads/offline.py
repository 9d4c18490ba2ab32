"""Offline: every query at once, in one LoadGen query of many samples (LoadGen's Offline);
the figure is the samples answered per second, batches of up to the row's batch size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.results import RowFigure
from harness.workloads.base import Shape
from harness.workloads.columns import Column, fmt
from harness.workloads.loadgen_sut import Capacity, TestResult
from harness.workloads.serving import OneTest

# LoadGen generates the expected rate's worth of samples for the minimum duration; a backend
# faster than expected would finish early and make the test INVALID, so it expects more.
EXPECTED_OVER_CAPACITY = 1.5


@dataclass(frozen=True)
class Offline(OneTest):
    name: ClassVar[str] = "offline"
    summary: ClassVar[str] = "LoadGen Offline: every query at once; samples per second"
    error_mode: ClassVar[str] = "offline"
    scenario: ClassVar[str] = "Offline"
    rank_by: ClassVar[RowFigure | None] = RowFigure("completed_qps", higher_is_better=True)
    # Its answer times are places in one queue of everything: runs compare by the rate.
    compare_by: ClassVar[RowFigure | None] = RowFigure("completed_qps", higher_is_better=True)
    higher_is_better: ClassVar[bool] = True

    def targets(self, capacity: Capacity, shape: Shape) -> dict[str, Any]:
        return {"target_qps": EXPECTED_OVER_CAPACITY * capacity.queries_per_s()}

    def figure(self, result: TestResult) -> float | None:
        return result.completed_qps

    def figure_columns(self) -> tuple[Column, ...]:
        return (Column("samples/s", "right", lambda r: fmt(r.get("completed_qps"), ",.0f")),)

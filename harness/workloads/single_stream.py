"""Single-stream: one query at a time, the next issued once the last is answered (LoadGen's
SingleStream); the figure is its 90th-percentile latency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.results import RowFigure
from harness.workloads.base import Shape
from harness.workloads.columns import Column, fmt
from harness.workloads.loadgen_sut import Capacity, TestResult
from harness.workloads.serving import P50, P90, P99, OneTest


@dataclass(frozen=True)
class SingleStream(OneTest):
    name: ClassVar[str] = "single-stream"
    summary: ClassVar[str] = "LoadGen SingleStream: one query at a time; its p90 latency"
    error_mode: ClassVar[str] = "single-stream"
    scenario: ClassVar[str] = "SingleStream"
    rank_by: ClassVar[RowFigure | None] = RowFigure("loadgen_p90_ms")

    def targets(self, capacity: Capacity, shape: Shape) -> dict[str, Any]:
        return {"expected_latency_s": capacity.batch1_s}

    def figure(self, result: TestResult) -> float | None:
        return result.percentile_ms("90.00")

    def figure_columns(self) -> tuple[Column, ...]:
        return (P90, P50, P99,
                Column("queries/s", "right", lambda r: fmt(r.get("completed_qps"), ",.0f")))

"""Multi-stream: queries of ``samples_per_query`` windows each, the next issued once the last
is answered (LoadGen's MultiStream, as a camera rig sends frames); the figure is the 99th
percentile of the per-query latency."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.results import RowFigure
from harness.workloads.base import MAX_STEPS, Shape, at_most, positive_int, setting
from harness.workloads.columns import Column, fmt
from harness.workloads.loadgen_sut import Capacity, TestResult
from harness.workloads.serving import P50, P90, P99, LoadGenFields, OneTest, OneTestFields


@dataclass(frozen=True)
class MultiStreamFields(OneTestFields):
    samples_per_query: int


@dataclass(frozen=True)
class MultiStream(OneTest):
    name: ClassVar[str] = "multi-stream"
    row_records: ClassVar[tuple[type, ...]] = (LoadGenFields, MultiStreamFields)
    summary: ClassVar[str] = "LoadGen MultiStream: 8 windows per query, one query at a time; its p99"
    error_mode: ClassVar[str] = "multi-stream"
    scenario: ClassVar[str] = "MultiStream"
    rank_by: ClassVar[RowFigure | None] = RowFigure("loadgen_p99_ms")
    samples_per_query: int = setting(8, at_most(positive_int, MAX_STEPS),
                                     f"an integer from 1 to {MAX_STEPS}")  # MLPerf's: 8

    def targets(self, capacity: Capacity, shape: Shape) -> dict[str, Any]:
        calls = math.ceil(self.samples_per_query / shape[0])
        return {"expected_latency_s": calls * capacity.max_batch_s,
                "samples_per_query": self.samples_per_query}

    def figure(self, result: TestResult) -> float | None:
        return result.percentile_ms("99.00")

    def own_fields(self, figures: list[float | None]) -> MultiStreamFields:
        return MultiStreamFields(figures, self.samples_per_query)

    def figure_columns(self) -> tuple[Column, ...]:
        return (Column("samples/query", "right", lambda r: fmt(r.get("samples_per_query"), "d")),
                P99, P50, P90)

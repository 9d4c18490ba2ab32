"""Progress events: what the engine is doing, as values a display can render."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum


class Phase(Enum):
    PREPARE = "prepare"
    CHECK = "check"
    TIME = "time"
    DONE = "done"  # a backend measured on its own has finished its shape
    FAILED = "failed"


@dataclass(frozen=True)
class Event:
    backend: str
    phase: Phase
    shape: tuple[int, int] | None = None  # (batch_size, seq_len) being timed
    workload: str | None = None  # the workload being timed
    reason: str | None = None  # why it failed
    tag: str | None = None  # which device and dtype, where a run covers several

    def tagged(self, tag: str) -> Event:
        return replace(self, tag=tag)


OnEvent = Callable[[Event], None]

"""Live progress of a run on stderr: one task per backend and shape, its phase and elapsed time.

Off a terminal (CI logs, pipes) a live display would print control codes or nothing useful,
so there each event becomes one plain, timestamped line instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from harness.engine.events import Event, OnEvent, Phase


def label(event: Event) -> str:
    """Who: the backend, with the device and dtype where a run covers several."""
    return event.backend if event.tag is None else f"{event.backend} [{event.tag}]"


def detail(event: Event) -> str:
    """What: the phase, and the shape and workload being timed or why it failed."""
    if event.phase is Phase.FAILED:
        return f"failed: {event.reason}"
    if event.phase is Phase.TIME and event.shape is not None:
        batch, seq_len = event.shape
        return f"time batch={batch} seq_len={seq_len} ({event.workload})"
    return event.phase.value


class _LiveProgress:
    """A task per backend and phase; timing gets a task per backend and shape."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.current: dict[str, tuple[TaskID, Phase]] = {}  # backend -> (task, phase) in progress

    def __call__(self, event: Event) -> None:
        who = label(event)
        task, _ = self.current.pop(who, (None, None))
        if event.phase is Phase.FAILED:
            task = task if task is not None else self.progress.add_task(who, total=None, phase="")
            self.progress.update(task, phase=f"[bold red]failed[/] {escape(event.reason)}")
            self._finish(task)
            return
        if task is not None:
            self._finish(task)
        if event.phase is Phase.DONE:
            return
        if event.phase is not Phase.TIME:
            # Prepare and check visit one backend at a time, so another backend's is over;
            # timing is interleaved, so those tasks stay open together.
            for other, (other_task, other_phase) in list(self.current.items()):
                if other_phase is not Phase.TIME:
                    self._finish(other_task)
                    del self.current[other]
        description = who
        if event.phase is Phase.TIME and event.shape is not None:
            description = f"{who} batch={event.shape[0]} seq_len={event.shape[1]}"
        task = self.progress.add_task(description, total=None, phase=f"[cyan]{event.phase.value}[/]")
        self.current[who] = (task, event.phase)

    def _finish(self, task: TaskID) -> None:
        self.progress.update(task, total=1, completed=1)
        self.progress.stop_task(task)

    def close(self) -> None:
        for task, _ in self.current.values():
            self._finish(task)


@contextmanager
def run_progress(console: Console) -> Iterator[OnEvent]:
    """An on_event callback for the runner, showing live progress while the block runs."""
    if not console.is_terminal:
        start = time.perf_counter()

        def log(event: Event) -> None:
            console.print(f"[{time.perf_counter() - start:7.1f}s] {label(event)}: {detail(event)}",
                          highlight=False, markup=False, soft_wrap=True)

        yield log
        return
    progress = Progress(SpinnerColumn(finished_text="✓"), TextColumn("{task.description}", markup=False),
                        TextColumn("{task.fields[phase]}"), TimeElapsedColumn(),
                        console=console, transient=False)
    live = _LiveProgress(progress)
    with progress:
        try:
            yield live
        finally:
            live.close()

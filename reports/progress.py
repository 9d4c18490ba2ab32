"""Live progress of a run on stderr: one task per backend and shape, its phase and elapsed time.

Off a terminal (CI logs, pipes) a live display would print control codes or nothing useful,
so there each event becomes one plain, timestamped line instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

Events = Callable[[str, str], None]


def parse_event(message: str) -> tuple[str, str]:
    """(phase, detail) of a runner event such as "time batch=64 seq_len=50"."""
    phase, _, detail = message.partition(" ")
    return phase.rstrip(":"), detail


class _LiveProgress:
    """A task per backend and phase; timing gets a task per backend and shape."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.current: dict[str, tuple[TaskID, str]] = {}  # backend -> (task, phase) in progress

    def __call__(self, backend: str, message: str) -> None:
        phase, detail = parse_event(message)
        task, _ = self.current.pop(backend, (None, ""))
        if phase == "failed":
            task = task if task is not None else self.progress.add_task(backend, total=None, phase="")
            self.progress.update(task, phase=f"[bold red]failed[/] {detail}")
            self._finish(task)
            return
        if task is not None:
            self._finish(task)
        if phase != "time":
            # Prepare and check visit one backend at a time, so another backend's is over;
            # timing is interleaved, so those tasks stay open together.
            for other, (other_task, other_phase) in list(self.current.items()):
                if other_phase != "time":
                    self._finish(other_task)
                    del self.current[other]
        label = f"{backend} {detail}" if phase == "time" else backend
        self.current[backend] = (self.progress.add_task(label, total=None, phase=f"[cyan]{phase}[/]"),
                                 phase)

    def _finish(self, task: TaskID) -> None:
        self.progress.update(task, total=1, completed=1)
        self.progress.stop_task(task)

    def close(self) -> None:
        for task, _ in self.current.values():
            self._finish(task)


@contextmanager
def run_progress(console: Console) -> Iterator[Events]:
    """An on_event callback for the runner, showing live progress while the block runs."""
    if not console.is_terminal:
        start = time.perf_counter()

        def log(backend: str, message: str) -> None:
            console.print(f"[{time.perf_counter() - start:7.1f}s] {backend}: {message}",
                          highlight=False, markup=False, soft_wrap=True)

        yield log
        return
    progress = Progress(SpinnerColumn(finished_text="✓"), TextColumn("{task.description}"),
                        TextColumn("{task.fields[phase]}"), TimeElapsedColumn(),
                        console=console, transient=False)
    live = _LiveProgress(progress)
    with progress:
        try:
            yield live
        finally:
            live.close()

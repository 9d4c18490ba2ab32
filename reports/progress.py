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
    """A task per backend for prepare/check, then one per backend × shape for timing."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.current: dict[str, TaskID] = {}  # backend -> its task in progress

    def __call__(self, backend: str, message: str) -> None:
        phase, detail = parse_event(message)
        task = self.current.get(backend)
        if phase == "time" or task is None:
            if task is not None:
                self._finish(task)
            label = f"{backend} {detail}".strip() if phase == "time" else backend
            task = self.current[backend] = self.progress.add_task(label, total=None, phase=phase)
        style = "bold red" if phase == "failed" else "cyan"
        self.progress.update(task, phase=f"[{style}]{phase}[/] {detail if phase == 'failed' else ''}")
        if phase == "failed":
            self._finish(task, phase=None)
            del self.current[backend]

    def _finish(self, task: TaskID, phase: str | None = "[green]done[/]") -> None:
        """Stop the task's clock; keep a failure's label, mark anything else done."""
        self.progress.update(task, total=1, completed=1, **({"phase": phase} if phase else {}))
        self.progress.stop_task(task)

    def close(self) -> None:
        for task in self.current.values():
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
    progress = Progress(SpinnerColumn(finished_text="·"), TextColumn("{task.description}"),
                        TextColumn("{task.fields[phase]}"), TimeElapsedColumn(),
                        console=console, transient=False)
    live = _LiveProgress(progress)
    with progress:
        try:
            yield live
        finally:
            live.close()

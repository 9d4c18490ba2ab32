"""What several commands share: the process settings from the flags, and the model."""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from harness.core.checkpoint import Checkpoint
from harness.core.errors import InputError
from harness.core.settings import ProcessSettings
from harness.core.training import TrainConfig


def check_writable(path: Path | None, flag: str, directory: bool = False) -> None:
    """Refuse, before any work, an output path (a file, or a ``directory``) that cannot be
    written: its nearest existing folder must take a new file, and the path itself must not
    be a folder (a file) or a file (a directory)."""
    if path is None:
        return
    kind = "directory" if directory else "file"
    target = path.resolve()
    if target.exists() and target.is_dir() != directory:
        raise InputError(f"expected a writable {kind} path for {flag}, got {path}, which is a "
                         f"{'directory' if target.is_dir() else 'file'}")
    folder = target if directory and target.exists() else target.parent
    while not folder.exists():
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file")
        with tempfile.TemporaryFile(dir=folder):
            pass
        if target.is_file() and not os.access(target, os.W_OK):
            raise PermissionError(f"{target} is read-only")
    except OSError as exc:
        raise InputError(f"expected a writable {kind} path for {flag}, got {path}: "
                         f"{exc.strerror or exc}") from None


def apply_settings(args: argparse.Namespace) -> ProcessSettings:
    from harness.core import settings

    threads = args.threads[0] if args.threads else None
    return settings.apply(replace(settings.default_settings(threads),
                                  ort_allow_spinning=args.ort_spinning))


def load_model(args: argparse.Namespace, err: Console, config: TrainConfig | None = None) -> Checkpoint:
    """The cached checkpoint for ``config``, trained (with a progress bar) when missing."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from harness.core.checkpoint import load_or_train

    config = config or TrainConfig()
    progress = Progress(TextColumn("[bold]train[/]"), BarColumn(), TextColumn("epoch {task.completed}"
                        "/{task.total}"), TextColumn("val MSE {task.fields[mse]}"),
                        TimeElapsedColumn(), console=err, transient=False)
    task = progress.add_task("train", total=config.epochs, mse="…")

    def on_epoch(epoch: int, mse: float) -> None:
        progress.update(task, completed=epoch, mse=f"{mse:.2e}")

    try:  # the bar appears only if training starts, so a refused checkpoint stays one line
        checkpoint, trained = load_or_train(config, args.cache_dir, on_epoch=on_epoch,
                                            on_train_start=progress.start)
    finally:
        progress.stop()
    state = "trained" if trained else "cached"
    err.print(f"checkpoint ({state}): {checkpoint.weights_path} "
              f"val MSE {checkpoint.metadata['val_mse']:.2e}, sha256 {checkpoint.sha256[:12]}…")
    return checkpoint

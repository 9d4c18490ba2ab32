"""What several commands share: the process settings from the flags, and the models."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from harness.core.checkpoint import (
    Checkpoint,
    ModelSource,
    default_cache_dir,
    files_read,
    paths_for,
)
from harness.core.errors import InputError
from harness.core.model import ModelConfig
from harness.core.settings import ProcessSettings
from harness.core.training import TrainConfig

if TYPE_CHECKING:
    from harness.workloads.base import Workload

SIZE_FLAGS = tuple(ModelConfig().to_dict())  # input_size, hidden_size, num_layers, output_size


def _nearest_existing(path: Path) -> Path:
    while not _exists(path):
        path = path.parent
    return path


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; one the system refuses to look up (a name too long) does not."""
    try:
        return path.exists()
    except OSError:
        return False


def _too_long(target: Path) -> str | None:
    """A name along ``target`` longer than its file system allows, if any."""
    folder = _nearest_existing(target)
    try:
        longest = os.pathconf(folder if folder.is_dir() else folder.parent, "PC_NAME_MAX")
    except (OSError, ValueError):  # a file system that will not say: the write will tell
        return None
    return next((p.name for p in (target, *target.parents) if len(os.fsencode(p.name)) > longest),
                None)


def check_writable(path: Path | None, flag: str, directory: bool = False) -> None:
    """Refuse, before any work, an output path (a file, or a ``directory``) that cannot be
    written: its nearest existing folder must take a new file, and the path itself must not
    be a folder (a file) or a file (a directory)."""
    if path is None:
        return
    kind = "directory" if directory else "file"
    target = path.resolve()
    too_long = _too_long(target)
    if too_long is not None:
        raise InputError(f"expected a writable {kind} path for {flag}, got {path}: the name "
                         f"{too_long[:24]}… is longer than a file name may be here")
    if target.exists() and target.is_dir() != directory:
        raise InputError(f"expected a writable {kind} path for {flag}, got {path}, which is a "
                         f"{'directory' if target.is_dir() else 'file'}")
    folder = _nearest_existing(target if directory and target.exists() else target.parent)
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


def check_folder_path(path: Path | None, flag: str) -> None:
    """Refuse, before any work, a folder path that is a file or lies under one. Whether it
    can be written is asked only where a command always writes: a run reads a cached model."""
    if path is None:
        return
    existing = _nearest_existing(path.resolve())
    if not existing.is_dir():
        raise InputError(f"expected a directory path for {flag}, got {path}: {existing} is a file")


def check_cache(args: argparse.Namespace, sources: Iterable[ModelSource], training: bool = False) -> None:
    """Refuse, before any work, a checkpoint cache the command cannot use: a path that is a
    file or lies under one, or, where a model is to be trained (``training``, or a config
    with no cached checkpoint), one that cannot be written."""
    cache = args.cache_dir or default_cache_dir()
    flag = "--cache-dir" if args.cache_dir else \
        "LSTM_HARNESS_CACHE" if os.environ.get("LSTM_HARNESS_CACHE") else "the checkpoint cache"
    check_folder_path(cache, flag)
    configs = [s for s in sources if isinstance(s, TrainConfig)]
    if training or any(not all(p.exists() for p in paths_for(cache, c)) for c in configs):
        check_writable(cache, flag, directory=True)


def model_files(sources: Iterable[ModelSource | None]) -> dict[str, Path]:
    """Every file the model sources that are files are read from, named for a message."""
    return {f"the model file {path}": path for source in sources if isinstance(source, Path)
            for path in files_read(source)}


def check_own_files(outputs: Mapping[str, Path | None], inputs: Mapping[str, Path | None]) -> None:
    """Refuse, before any work, an output that names a file the command reads, or another
    output: writing it would lose that file (``inputs``: what each is, in words)."""
    taken = {path.resolve(): what for what, path in inputs.items() if path is not None}
    for flag, path in outputs.items():
        if path is None:
            continue
        target = path.resolve()
        if target in taken:
            raise InputError(f"expected {flag} to name a file of its own, got {path}, which is "
                             f"{taken[target]}")
        taken[target] = f"the {flag} file"


def apply_settings(args: argparse.Namespace, workload: Workload | None = None) -> ProcessSettings:
    """The process's settings from the flags; where ``--threads`` is not given, the threads
    ``workload`` asks for on this machine's cores (every core without one)."""
    from harness.core import settings

    threads = args.threads
    if threads is None and workload is not None:
        threads = workload.intra_op_threads(settings.physical_cores())
    return settings.apply(replace(settings.default_settings(threads),
                                  ort_allow_spinning=args.ort_spinning))


def model_sources(args: argparse.Namespace) -> tuple[ModelSource, ...] | None:
    """The model the flags name: ``--checkpoint``, or a training config from the size flags
    and ``--epochs``; None where they name none (the scenario's models then run)."""
    sizes = {name: getattr(args, name) for name in SIZE_FLAGS if getattr(args, name, None) is not None}
    epochs = getattr(args, "epochs", None)
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint is not None:
        if sizes or epochs is not None:
            given = ", ".join(f"--{n.replace('_', '-')}" for n in (*sizes, *(["epochs"] if epochs
                                                                             is not None else [])))
            raise InputError(f"expected either --checkpoint or model sizes to train, got both "
                             f"--checkpoint and {given}: the file's weights fix its sizes")
        return (checkpoint,)
    if not sizes and epochs is None:
        return None
    return (TrainConfig(model=ModelConfig(**sizes), **({} if epochs is None else {"epochs": epochs})),)


def open_models(sources: tuple[ModelSource, ...], args: argparse.Namespace, err: Console,
                accept=None) -> dict[ModelSource, Checkpoint]:
    """Every model of a run: the files first, each read and checked (``accept`` may refuse
    one, raising), so that a bad file is refused before any model is trained; then each
    config, loaded from the cache or trained."""
    from harness.core.checkpoint import open_checkpoint

    loaded: dict[ModelSource, Checkpoint] = {}
    for path in (s for s in sources if isinstance(s, Path)):
        checkpoint = open_checkpoint(path)
        if accept is not None:
            accept(checkpoint)
        loaded[path] = checkpoint
        err.print(f"checkpoint (file): {path}: {checkpoint.model.config.label}, "
                  f"sha256 {checkpoint.sha256[:12]}…", highlight=False)
    for config in (s for s in sources if isinstance(s, TrainConfig)):
        loaded[config] = load_model(args, err, config)
    return loaded


def load_model(args: argparse.Namespace, err: Console, config: TrainConfig | None = None,
               retrain: bool = False) -> Checkpoint:
    """The cached checkpoint for ``config``, trained (with a progress bar) when missing, or
    always with ``retrain``."""
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
                                            on_train_start=progress.start if config.epochs else None,
                                            retrain=retrain)
    finally:
        progress.stop()
    state = ("trained" if trained else "cached") if config.epochs else "seeded, untrained"
    err.print(f"checkpoint ({state}): {checkpoint.weights_path} {config.model.label}, "
              f"val MSE {checkpoint.metadata['val_mse']:.2e}, sha256 {checkpoint.sha256[:12]}…",
              highlight=False)
    return checkpoint

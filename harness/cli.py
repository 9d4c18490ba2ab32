"""Command line: ``python -m harness run|train``.

Errors inside the code are typed exceptions; this module alone turns them into one-line
messages and exit codes: 0 success, 1 a backend disagreed or failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from harness.errors import CheckpointError, DeviceUnavailableError, HarnessError, InputError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so that the run unwinds and keeps its rows."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signal.Signals(signum).name)


def _interrupted_status(exc: KeyboardInterrupt) -> int:
    """The shell's convention: 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def _positive_ints(flag: str):
    def parse(text: str) -> tuple[int, ...]:
        values = []
        for part in text.split(","):
            part = part.strip()
            try:
                value = int(part)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{flag} expects comma-separated integers >= 1, got {part!r}") from None
            if value < 1:
                raise argparse.ArgumentTypeError(
                    f"{flag} expects integers >= 1, got {value}")
            values.append(value)
        return tuple(values)
    return parse


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _positive_float(flag: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{flag} expects a number > 0, got {text}")
        return value
    return parse


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every bad input takes one path."""

    def error(self, message: str) -> None:
        raise InputError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="Run one trained LSTMPredictor through many "
                     "inference backends; prove they agree with a float64 reference; time them.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    common = _Parser(add_help=False)
    common.add_argument("--cache-dir", type=Path, default=None,
                        help="checkpoint cache (default: $LSTM_HARNESS_CACHE or ~/.cache/lstm-harness)")
    common.add_argument("--threads", type=_positive_ints("--threads"), default=None,
                        help="intra-op threads for torch and ORT (default: physical cores)")
    common.add_argument("--ort-spinning", action="store_true",
                        help="let ONNX Runtime's threads spin between calls (off by default: "
                        "spinning steals the cores from interleaved backends)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")

    run = sub.add_parser("run", parents=[common], help="check agreement and time every backend")
    run.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    run.add_argument("--backends", type=_names, default=None,
                     help="comma-separated backend names (default: all)")
    run.add_argument("--batch-sizes", type=_positive_ints("--batch-sizes"), default=None)
    run.add_argument("--seq-len", type=_positive_ints("--seq-len"), default=None,
                     help="one or more comma-separated sequence lengths (default: 50)")
    run.add_argument("--dtype", default="fp32", help="fp32 (default), bf16 or fp16")
    run.add_argument("--atol", type=float, default=None, help="absolute tolerance (default per dtype)")
    run.add_argument("--rtol", type=float, default=None, help="relative tolerance (default per dtype)")
    run.add_argument("--budget", type=_positive_float("--budget"), default=None,
                     help="timing budget per row in seconds (default 2)")
    run.add_argument("--out", type=Path, default=None, help="write results JSON here")
    run.add_argument("--workdir", type=Path, default=None,
                     help="where exported artifacts go (default: a temporary directory)")
    run.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                     help="import MODULE and register the backends in its BACKENDS list")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                     help="prepare and measure each backend in its own worker process, so a crash "
                     "or hang costs only its rows (default; --no-isolate runs all in this process)")
    run.add_argument("--backend-timeout", type=_positive_float("--backend-timeout"), default=600.0,
                     metavar="SECONDS", help="longest wait for one call into an isolated backend, "
                     "preparation included (default 600)")

    train = sub.add_parser("train", parents=[common], help="train and cache the checkpoint")
    train.add_argument("--epochs", type=_positive_ints("--epochs"), default=None)
    return parser


def _settings(args: argparse.Namespace):
    from harness import settings

    threads = args.threads[0] if args.threads else None
    return settings.apply(replace(settings.default_settings(threads),
                                  ort_allow_spinning=args.ort_spinning))


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            "expected a CUDA device for --device cuda, but torch sees none on this machine "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'no CUDA'}); "
            "use --device cpu")
    return device


def _load_model(args: argparse.Namespace, err: Console, config=None):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from harness.checkpoint import load_or_train
    from harness.training import TrainConfig

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


def cmd_train(args: argparse.Namespace, out: Console, err: Console) -> int:
    from harness.checkpoint import default_cache_dir, paths_for
    from harness.training import TrainConfig

    _settings(args)
    config = TrainConfig() if args.epochs is None else TrainConfig(epochs=args.epochs[0])
    for path in paths_for(args.cache_dir or default_cache_dir(), config):
        path.unlink(missing_ok=True)  # `train` always trains afresh
    checkpoint = _load_model(args, err, config)
    out.print_json(data=checkpoint.metadata)
    return EXIT_OK


def cmd_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    from backends.registry import load_registry, suggest
    from harness import environment
    from harness.agreement import DEFAULT_TOLERANCES, Tolerance
    from harness.memory import check_fits
    from harness.roofline import measure_peak_gflops
    from harness.runner import RunConfig, benchmark
    from harness.timing import TimingConfig
    from harness.training import TrainConfig
    from reports.jsonio import write_json
    from reports.table import checks_table, results_table
    from scenarios import DEFAULT

    settings = _settings(args)
    device = _resolve_device(args.device)
    if args.dtype not in DEFAULT_TOLERANCES:
        raise InputError(f"unknown dtype {args.dtype!r}; expected one of "
                         f"{', '.join(DEFAULT_TOLERANCES)}{suggest(args.dtype, DEFAULT_TOLERANCES)}")
    registry = load_registry(args.plugin)
    scenario = DEFAULT
    backends = args.backends or tuple(b for b in scenario.backends
                                      if not (device != "cpu" and b == "reference"))
    for name in backends:
        registry.create(name)  # refuses unknown names before any work
    default_tol = DEFAULT_TOLERANCES[args.dtype]
    tolerance = Tolerance(args.atol if args.atol is not None else default_tol.atol,
                          args.rtol if args.rtol is not None else default_tol.rtol)
    scenario = replace(scenario, backends=backends, dtypes=(args.dtype,),
                       batch_sizes=args.batch_sizes or scenario.batch_sizes,
                       seq_lens=args.seq_len or scenario.seq_lens,
                       budget_s=args.budget or scenario.budget_s)
    timing = TimingConfig(budget_s=scenario.budget_s, seed=args.seed)
    model_config = TrainConfig().model
    check_fits([(b, s) for s in scenario.seq_lens for b in scenario.batch_sizes],
               model_config.input_size, model_config.hidden_size, len(backends), timing.n_inputs)
    if args.out is not None:
        _check_writable(args.out)
    checkpoint = _load_model(args, err)

    err.print(f"measuring machine peak (fp32 GEMM on {device})…")
    peak = measure_peak_gflops(device)
    finished: list = []  # the latest partial result, kept for an interrupt

    def save_partial(partial) -> None:
        finished[:] = [partial]
        if args.out is not None:
            write_json(args.out, partial.to_dict())

    previous_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with tempfile.TemporaryDirectory(prefix="lstm-harness-") as tmp:
            config = RunConfig(backends=backends, device=device, dtype=args.dtype,
                               batch_sizes=scenario.batch_sizes, seq_lens=scenario.seq_lens,
                               tolerance=tolerance, timing=timing,
                               workdir=args.workdir or Path(tmp), scenario=scenario.name,
                               seed=args.seed, isolate=args.isolate,
                               backend_timeout_s=args.backend_timeout)
            result = benchmark(
                checkpoint.model, {"weights_sha256": checkpoint.sha256,
                                   "val_mse": checkpoint.metadata["val_mse"],
                                   "config": checkpoint.config.model.to_dict()},
                config, registry, settings, environment.collect(device, settings),
                {**scenario.to_dict(), "device": device},
                on_event=lambda b, m: err.print(f"  {b}: {m}", highlight=False, soft_wrap=True),
                peak_gflops=peak, on_rows=save_partial)
    except KeyboardInterrupt as exc:
        _report_interrupted(finished[0] if finished else None, args.out, out, err)
        return _interrupted_status(exc)
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    data = result.to_dict()
    out.print(results_table(data))
    out.print(checks_table(data))
    if args.out is not None:
        err.print(f"results written to {write_json(args.out, data)}")
    if result.failed:
        err.print("[bold red]FAILED:[/] at least one backend disagreed with the reference or failed")
        return EXIT_FAILED
    return EXIT_OK


def _report_interrupted(partial, out_path: Path | None, out: Console, err: Console) -> None:
    """Show what finished before the interrupt and say where it is kept."""
    from reports.table import results_table

    if partial is None:
        err.print("interrupted before the first shape was finished: no rows to keep")
        return
    out.print(results_table(partial.to_dict()))
    n = len(partial.rows)
    where = f"saved to {out_path}" if out_path is not None else "not saved (no --out given)"
    err.print(f"interrupted: the {n} rows of every finished shape are shown above and {where}",
              highlight=False, soft_wrap=True)


def _check_writable(path: Path) -> None:
    """Refuse an unwritable --out before spending minutes on a run."""
    parent = path.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    import os

    if path.is_dir() or not os.access(probe, os.W_OK):
        raise InputError(f"expected a writable file path for --out, got {path}")


COMMANDS = {"run": cmd_run, "train": cmd_train}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Off a terminal (CI logs, pipes) rich would wrap the wide table at 80 columns.
    width = None if sys.stdout.isatty() else 220
    out, err = Console(width=width), Console(stderr=True, width=width)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args, out, err)
    except (InputError, CheckpointError) as exc:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except HarnessError as exc:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        err.print("interrupted")
        return _interrupted_status(exc)

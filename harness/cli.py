"""Command line: ``python -m harness run|train|scenarios``.

Errors inside the code are typed exceptions; this module alone turns them into one-line
messages and exit codes: 0 success, 1 a backend disagreed or failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console

from harness import report_commands
from harness.errors import CheckpointError, DeviceUnavailableError, HarnessError, InputError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# On CUDA the CPU-only reference is left out of the table (it still judges agreement), and
# the CUDA-only variants join.
CUDA_BACKENDS = ("eager", "torchscript", "compile", "compile-cudagraphs", "onnxruntime",
                 "onnxruntime-trt")


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
    run.add_argument("--scenario", default=None, metavar="NAME|FILE",
                     help="a preset (see `harness scenarios`) or a scenario TOML file; the flags "
                     "below override its fields (default: the `default` preset)")
    run.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None,
                     help="cpu (the default scenario's), cuda or auto")
    run.add_argument("--backends", type=_names, default=None,
                     help="comma-separated backend names (default: all)")
    run.add_argument("--batch-sizes", type=_positive_ints("--batch-sizes"), default=None)
    run.add_argument("--seq-len", type=_positive_ints("--seq-len"), default=None,
                     help="one or more comma-separated sequence lengths (default: 50)")
    run.add_argument("--dtype", type=_names, default=None,
                     help="comma-separated: fp32 (default), bf16, fp16")
    run.add_argument("--horizon", type=_positive_ints("--horizon"), default=None,
                     help="rollout mode: steps to forecast (default 200)")
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
    report_commands.add_db_flags(run, recording=True)

    run.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                     help="prepare and measure each backend in its own worker process, so a crash "
                     "or hang costs only its rows (default; --no-isolate runs all in this process)")
    run.add_argument("--backend-timeout", type=_positive_float("--backend-timeout"), default=600.0,
                     metavar="SECONDS", help="longest wait for one call into an isolated backend, "
                     "preparation included (default 600)")

    doctor = sub.add_parser("doctor", parents=[common],
                            help="which backends, devices, dtypes and providers are usable here")
    doctor.add_argument("--plugin", action="append", default=[], metavar="MODULE")

    train = sub.add_parser("train", parents=[common], help="train and cache the checkpoint")
    train.add_argument("--epochs", type=_positive_ints("--epochs"), default=None)
    sub.add_parser("scenarios", help="list the scenario presets, one line each")
    report_commands.add_parsers(sub)
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


def cmd_scenarios(args: argparse.Namespace, out: Console, err: Console) -> int:
    from scenarios import EXAMPLES_DIR, PRESETS

    width = max(len(name) for name in PRESETS)
    for name, scenario in PRESETS.items():
        out.print(f"{name:<{width}}  {scenario.mode:<9}  {scenario.description}", highlight=False)
    out.print(f"TOML examples: {EXAMPLES_DIR}", highlight=False)
    return EXIT_OK


def _effective_scenario(args: argparse.Namespace):
    """The named scenario (or the default) with every flag given on the command line applied."""
    from backends.registry import suggest
    from harness.agreement import DEFAULT_TOLERANCES
    from scenarios import DEFAULT, resolve

    for dtype in args.dtype or ():
        if dtype not in DEFAULT_TOLERANCES:
            raise InputError(f"unknown dtype {dtype!r}; expected one of "
                             f"{', '.join(DEFAULT_TOLERANCES)}{suggest(dtype, DEFAULT_TOLERANCES)}")
    scenario = resolve(args.scenario) if args.scenario else DEFAULT
    flags = {"batch_sizes": args.batch_sizes, "seq_lens": args.seq_len, "backends": args.backends,
             "dtypes": args.dtype, "devices": (args.device,) if args.device else None,
             "budget_s": args.budget, "horizon": args.horizon[0] if args.horizon else None}
    return replace(scenario, **{k: v for k, v in flags.items() if v is not None})


def _devices(scenario, strict: bool) -> list[str]:
    """Resolve ``auto``. A CUDA device asked for on the command line must exist (bad input
    otherwise); one listed by a scenario becomes rows that say it is unavailable."""
    resolved = []
    for device in scenario.devices:
        if strict or device == "auto":
            device = _resolve_device(device)
        if device not in resolved:
            resolved.append(device)
    return resolved


def _backends_on(scenario, device: str) -> tuple[str, ...]:
    """A scenario's backends on a device: the CPU-only reference is left out off the CPU (it
    still judges agreement), and a scenario that keeps every backend gets the CUDA variants."""
    from scenarios import ALL_BACKENDS

    if device == "cpu":
        return scenario.backends
    if scenario.backends == ALL_BACKENDS:
        return CUDA_BACKENDS
    return tuple(b for b in scenario.backends if b != "reference")


def _tolerance(scenario, dtype: str, args: argparse.Namespace):
    from harness.agreement import DEFAULT_TOLERANCES, Tolerance

    atol, rtol = scenario.tolerance_overrides().get(
        dtype, (DEFAULT_TOLERANCES[dtype].atol, DEFAULT_TOLERANCES[dtype].rtol))
    return Tolerance(args.atol if args.atol is not None else atol,
                     args.rtol if args.rtol is not None else rtol)


def cmd_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    from backends.registry import load_registry
    from harness import environment
    from harness.memory import check_fits
    from harness.results import merge_results
    from harness.roofline import measure_peak_gflops
    from harness.runner import RunConfig, benchmark
    from harness.timing import TimingConfig
    from harness.training import TrainConfig
    from reports.jsonio import write_json
    from reports.progress import run_progress
    from reports.table import tables_for

    settings = _settings(args)
    scenario = _effective_scenario(args)
    devices = _devices(scenario, strict=args.device is not None)
    registry = load_registry(args.plugin)
    for name in scenario.backends:
        registry.create(name)  # refuses unknown names before any work
    timing = TimingConfig(budget_s=scenario.budget_s, seed=args.seed)
    model_config = TrainConfig().model
    check_fits([(b, s) for s in scenario.seq_lens for b in scenario.batch_sizes],
               model_config.input_size, model_config.hidden_size,
               max(len(args.backends or _backends_on(scenario, d)) for d in devices), timing.n_inputs)
    if args.out is not None:
        _check_writable(args.out)
    checkpoint = _load_model(args, err)
    model_info = {"weights_sha256": checkpoint.sha256, "val_mse": checkpoint.metadata["val_mse"],
                  "config": checkpoint.config.model.to_dict()}
    record = {**scenario.to_dict(), "device": devices[0], "devices": devices,
              "timing": asdict(timing)}
    # One-window checks on the whole grid prove the forward pass; the streaming and rollout
    # modes check their own work at their own shapes on top of the one-window check there.
    grid = {} if scenario.mode == "forward" else {"check_batch_sizes": scenario.batch_sizes,
                                                  "check_seq_lens": scenario.seq_lens}
    results: list = []  # one finished result per device x dtype
    latest: list = []  # everything finished so far, kept for an interrupt

    def save_partial(partial) -> None:
        latest[:] = [merge_results([*results, partial])]
        if args.out is not None:
            write_json(args.out, latest[0].to_dict())

    several = len(devices) * len(scenario.dtypes) > 1
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with tempfile.TemporaryDirectory(prefix="lstm-harness-") as tmp, \
                run_progress(err) as on_event:
            for device in devices:
                err.print(f"measuring machine peak (fp32 GEMM on {device})…")
                peak = measure_peak_gflops(device) if device == "cpu" or _cuda_ok() else None
                backends = args.backends or _backends_on(scenario, device)
                for dtype in scenario.dtypes:
                    config = RunConfig(
                        backends=backends, device=device, dtype=dtype,
                        batch_sizes=scenario.batch_sizes, seq_lens=scenario.seq_lens,
                        tolerance=_tolerance(scenario, dtype, args), timing=timing,
                        workdir=(args.workdir or Path(tmp)) / f"{device}-{dtype}",
                        scenario=scenario.name, seed=args.seed, mode=scenario.mode,
                        horizon=scenario.horizon, isolate=args.isolate,
                        backend_timeout_s=args.backend_timeout, **grid)
                    results.append(benchmark(
                        checkpoint.model, model_info, config, registry, settings,
                        environment.collect(device, settings), record,
                        on_event=(lambda b, m, tag=f"{device}/{dtype}": on_event(f"{b} [{tag}]", m))
                        if several else on_event,
                        peak_gflops=peak, on_rows=save_partial))
    except KeyboardInterrupt as exc:
        _report_interrupted(latest[0] if latest else None, args.out, out, err)
        return _interrupted_status(exc)
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    result = merge_results(results)
    data = result.to_dict()
    for table in tables_for(data):
        out.print(table)
    if args.out is not None:
        err.print(f"results written to {write_json(args.out, data)}")
    report_commands.record_run(args, data, err)
    if result.failed:
        err.print("[bold red]FAILED:[/] at least one backend disagreed with the reference or failed")
        return EXIT_FAILED
    return EXIT_OK


def _cuda_ok() -> bool:
    import torch

    return torch.cuda.is_available()


def _report_interrupted(partial, out_path: Path | None, out: Console, err: Console) -> None:
    """Show what finished before the interrupt and say where it is kept."""
    from reports.table import tables_for

    if partial is None:
        err.print("interrupted before the first shape was finished: no rows to keep")
        return
    for table in tables_for(partial.to_dict()):
        out.print(table)
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


def cmd_doctor(args: argparse.Namespace, out: Console, err: Console) -> int:
    from rich.table import Table
    from rich.text import Text

    from backends.registry import load_registry
    from harness.doctor import availability, machine_summary

    settings = _settings(args)
    summary = machine_summary()
    for key, value in summary.items():
        out.print(f"{key}: {value}", highlight=False)
    table = Table(title="Backends on this machine", title_justify="left")
    for header in ("backend", "device", "dtype", "status"):
        table.add_column(header, no_wrap=header != "status")
    for entry in availability(load_registry(args.plugin), settings.intra_op_threads):
        status = Text("usable", style="green") if entry["available"] else \
            Text(f"unavailable: {entry['reason']}", style="yellow")
        table.add_row(entry["backend"], entry["device"], entry["dtype"], status)
    out.print(table)
    return EXIT_OK


COMMANDS = {"run": cmd_run, "train": cmd_train, "doctor": cmd_doctor, "scenarios": cmd_scenarios,
            **report_commands.COMMANDS}


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

"""Command line: ``python -m harness run|train|doctor|scenarios|report|history|compare``.

Errors inside the code are typed exceptions; this module alone turns them into one-line
messages and exit codes: 0 success, 1 a backend disagreed or failed, 2 bad input, 3 a run
(or a gated comparison) timed on a contended or unsteady machine.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from rich.console import Console

from harness.cli import report_commands
from harness.cli.arguments import OneLineParser, int_at_least, number, path_arg
from harness.cli.common import apply_settings, check_cache, load_model, model_sources
from harness.cli.run import EXIT_FAILED, EXIT_OK, cmd_run, interrupted_status
from harness.cli.styles import labelled
from harness.core.errors import CheckpointError, HarnessError, InputError
from harness.core.memory import check_trainable
from harness.core.model import ModelConfig
from harness.core.targets import DTYPES
from harness.core.timing import MAX_PROCESSES, TimingConfig
from harness.core.training import TrainConfig
from harness.workloads.base import DAY_S
from harness.workloads.forward import CHECK_GRIDS

EXIT_USAGE = 2
# Far beyond any machine the harness runs on, and far inside what torch, ONNX Runtime and
# the operating system accept: a value past them is a typo, refused before any work.
MAX_THREADS = 1024


def _each_once(flag: str, what: str, values: tuple) -> tuple:
    """``values``, refused in one line where one is given twice (it would run twice)."""
    twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if twice is not None:
        raise argparse.ArgumentTypeError(f"{flag} expects each {what} once, got {twice!r} twice")
    return values


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
        return _each_once(flag, "value", tuple(values))
    return parse


def _names(flag: str):
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        if not names:
            raise argparse.ArgumentTypeError(f"{flag} expects one or more comma-separated names, "
                                             f"got {text!r}")
        return _each_once(flag, "name", names)
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="harness", description="Run one trained LSTMPredictor through many "
                     "inference backends; prove they agree with a float64 reference; time them.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    common = OneLineParser(add_help=False)
    common.add_argument("--cache-dir", type=path_arg("--cache-dir", "directory"), default=None,
                        help="checkpoint cache (default: $LSTM_HARNESS_CACHE, else "
                        "$XDG_CACHE_HOME/lstm-harness, else ~/.cache/lstm-harness)")
    common.add_argument("--threads", type=int_at_least("--threads", 1, MAX_THREADS), default=None,
                        help="intra-op threads for torch and ORT (default: physical cores; one fewer "
                        "in server mode)")
    common.add_argument("--ort-spinning", action="store_true",
                        help="let ONNX Runtime's threads spin between calls (off by default: "
                        "spinning steals the cores from interleaved backends)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")

    # The LSTMPredictor's constructor arguments, and how long to train it.
    sizes = OneLineParser(add_help=False)
    for name, default in ModelConfig().to_dict().items():
        flag = f"--{name.replace('_', '-')}"
        sizes.add_argument(flag, type=int_at_least(flag, 1), default=None, metavar="N",
                           help=f"the model's {name} (default {default})")
    sizes.add_argument("--epochs", type=int_at_least("--epochs", 0), default=None, metavar="N",
                       help=f"training epochs (default {TrainConfig().epochs}; 0 keeps the seeded "
                       "initial weights, untrained)")
    checkpoint_flag = OneLineParser(add_help=False)
    checkpoint_flag.add_argument(
        "--checkpoint", type=path_arg("--checkpoint"), default=None, metavar="PATH",
        help="a model file: a state_dict saved with torch.save(model.state_dict(), PATH), a "
        "safetensors file, or one of the harness's own checkpoints")

    run = sub.add_parser("run", parents=[common, checkpoint_flag, sizes],
                         help="check agreement and time every backend")
    run.add_argument("--scenario", default=None, metavar="NAME|FILE",
                     help="a preset (see `harness scenarios`) or a scenario TOML file; the flags "
                     "below override its fields (default: the `default` preset)")
    run.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None,
                     help="cpu (the default scenario's), cuda or auto")
    run.add_argument("--backends", type=_names("--backends"), default=None,
                     help="comma-separated backend names (default: every backend of the default "
                     "set for the device and dtype; `harness doctor` lists them)")
    run.add_argument("--batch-sizes", type=_positive_ints("--batch-sizes"), default=None)
    run.add_argument("--seq-len", type=_positive_ints("--seq-len"), default=None,
                     help="one or more comma-separated sequence lengths (default: 50)")
    run.add_argument("--dtype", type=_names("--dtype"), default=None,
                     help=f"comma-separated: {', '.join(DTYPES)} (default fp32)")
    run.add_argument("--horizon", type=int_at_least("--horizon", 1), default=None,
                     help="rollout mode: steps to forecast (default 200)")
    run.add_argument("--check-grid", choices=CHECK_GRIDS, default=None,
                     help="forward mode: check agreement on the full grid (batch 1, 64, 1024 x "
                     "seq_len 50, 200, 13, and the timed shapes; the default) or at the timed shapes "
                     "only (for large models, whose float64 reference is slow)")
    run.add_argument("--latency-bound-ms", type=number("--latency-bound-ms"), default=None,
                     metavar="MS", help="server mode: the bound on LoadGen's p99 latency (default 5)")
    run.add_argument("--max-wait-ms", type=number("--max-wait-ms", at_least=0),
                     default=None, metavar="MS",
                     help="server mode: the longest the dynamic batcher lets the oldest query wait "
                     "for others (default 0.5); --batch-sizes sets the largest batch it forms")
    run.add_argument("--full", action="store_true", default=None,
                     help="serving modes: LoadGen tests of MLPerf's own minimum length (600 s "
                     "each) instead of short ones")
    run.add_argument("--atol", type=number("--atol", at_least=0), default=None,
                     help="absolute tolerance (default per dtype)")
    run.add_argument("--rtol", type=number("--rtol", at_least=0), default=None,
                     help="relative tolerance (default per dtype)")
    run.add_argument("--task-budget", type=number("--task-budget"), default=None,
                     metavar="RATIO", help="dtypes below fp32 (bf16, fp16, int8): the most task "
                     "MSE against the true sine, next step and forecast, as a multiple of the fp32 "
                     "model's (default 1.5)")
    run.add_argument("--budget", type=number("--budget"), default=None,
                     help="timing budget per row in seconds, over all its worker processes "
                     "(default: the scenario's; 1.5 for `default`, 2 for most others)")
    run.add_argument("--out", type=path_arg("--out"), default=None, help="write results JSON here")
    run.add_argument("--workdir", type=path_arg("--workdir", "directory"), default=None,
                     help="where exported artifacts go (default: a temporary directory)")
    run.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                     help="import MODULE and register the backends in its BACKENDS list")
    run.add_argument("--seed", type=int_at_least("--seed", 0), default=0)
    report_commands.add_db_flags(run, recording=True)

    run.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                     help="prepare and measure each backend in its own worker process, so a crash "
                     "or hang costs only its rows (default; --no-isolate runs all in this process)")
    run.add_argument("--processes", type=int_at_least("--processes", 1, MAX_PROCESSES), default=None,
                     help="fresh worker processes per backend whose rounds make up each row, "
                     "so the CIs span what differs between processes (default 2)")
    run.add_argument("--allow-contended", action="store_true",
                     help="exit 0 even when work outside the run took the CPU during too many "
                     "rounds (the verdict still says contended)")
    run.add_argument("--allow-unsteady", action="store_true",
                     help="exit 0 even when the host kept changing the machine's speed while the "
                     "run timed (the verdict still says unsteady)")
    run.add_argument("--max-canary-spread", type=number("--max-canary-spread", at_least=1),
                     default=None, metavar="RATIO",
                     help="the canary's upper-quartile time over its lower-quartile above which "
                     f"a run is unsteady (default {TimingConfig.max_canary_spread:g})")
    run.add_argument("--backend-timeout", type=number("--backend-timeout", at_most=DAY_S), default=600.0,
                     metavar="SECONDS", help="longest wait for one call into an isolated backend, "
                     "preparation included (default 600)")

    doctor = sub.add_parser("doctor", parents=[common, checkpoint_flag],
                            help="which backends, devices, dtypes and providers are usable here "
                            "(and with --checkpoint, the model read from it)")
    doctor.add_argument("--plugin", action="append", default=[], metavar="MODULE")

    sub.add_parser("train", parents=[common, sizes],
                   help="train (afresh) and cache a model of the given sizes on the sine series")
    sub.add_parser("scenarios", help="list the scenario presets, one line each")
    report_commands.add_parsers(sub, checkpoint_flag)
    return parser


def cmd_train(args: argparse.Namespace, out: Console, err: Console) -> int:
    config = (model_sources(args) or (TrainConfig(),))[0]
    check_cache(args, [config], training=True)
    check_trainable(config.model)
    apply_settings(args)
    checkpoint = load_model(args, err, config, retrain=True)  # `train` always trains afresh
    out.print_json(data=checkpoint.metadata)
    return EXIT_OK


def cmd_scenarios(args: argparse.Namespace, out: Console, err: Console) -> int:
    from scenarios import EXAMPLES_DIR, PRESETS

    width = max(len(name) for name in PRESETS)
    modes = max(len(scenario.mode) for scenario in PRESETS.values())
    for name, scenario in PRESETS.items():
        out.print(f"{name:<{width}}  {scenario.mode:<{modes}}  {scenario.description}",
                  highlight=False)
    out.print(f"TOML examples: {EXAMPLES_DIR}", highlight=False)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, out: Console, err: Console) -> int:
    from rich.table import Table
    from rich.text import Text

    from backends.registry import load_registry
    from harness.engine.doctor import availability, machine_summary, workload_availability
    from harness.workloads import load_workloads

    settings = apply_settings(args)
    registry = load_registry(args.plugin)
    workloads = load_workloads(args.plugin)
    model = {}
    if args.checkpoint is not None:  # read first: a bad file is refused before anything prints
        from harness.core.checkpoint import open_checkpoint
        from harness.engine.doctor import model_summary

        model = model_summary(open_checkpoint(args.checkpoint), workloads)
    for key, value in {**machine_summary(registry), **model}.items():
        out.print(f"{key}: {value}", highlight=False)
    table = Table(title="Backends on this machine", title_justify="left")
    for header in ("backend", "device", "dtype", "status"):
        table.add_column(header, no_wrap=header != "status")
    for entry in availability(registry, settings.intra_op_threads):
        status = Text("usable", style="green") if entry.available else \
            Text(f"unavailable: {entry.reason}", style="yellow")
        table.add_row(entry.backend, entry.device, entry.dtype, status)
    out.print(table)
    modes = Table(title="Modes (workloads) on this machine", title_justify="left")
    for header in ("mode", "status"):
        modes.add_column(header, no_wrap=header != "status")
    for mode, reason in workload_availability(workloads).items():
        modes.add_row(mode, Text("usable", style="green") if reason is None else
                      Text(f"unavailable: {reason}", style="yellow"))
    out.print(modes)
    return EXIT_OK


COMMANDS = {"run": cmd_run, "train": cmd_train, "doctor": cmd_doctor, "scenarios": cmd_scenarios,
            **report_commands.COMMANDS}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Off a terminal (CI logs, pipes) rich would wrap the wide table at 80 columns.
    width = None if sys.stdout.isatty() else 220
    # Markup off: what is printed carries paths, process names and install lines ('.[cpu]')
    # that rich would read as style tags and drop; styles are given as Text instead.
    out = Console(width=width, markup=False)
    err = Console(stderr=True, width=width, markup=False)
    debug = False  # tracebacks only once the command line asked for them and parsed
    try:
        args = build_parser().parse_args(argv)
        debug = getattr(args, "debug", False)
        return COMMANDS[args.command](args, out, err)
    except (InputError, CheckpointError) as exc:
        if debug:
            traceback.print_exc()
        err.print(labelled("error:", "bold red", str(exc)), highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except HarnessError as exc:
        if debug:
            raise
        err.print(labelled("error:", "bold red", str(exc)), highlight=False, soft_wrap=True)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        err.print("interrupted")
        return interrupted_status(exc)

"""The `report`, `history` and `compare` commands, and recording a run into history.

Kept apart from harness/cli/run.py so the run command stays small; harness/cli/main.py
registers these parsers, dispatches to them, and turns their typed errors into messages and
exit codes.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from rich.console import Console

from harness.cli.arguments import int_at_least, path_arg
from harness.cli.styles import labelled
from harness.core.errors import InputError

FORMATS = ("table", "md", "html")
MAX_RUN_ID = 2**63 - 1  # SQLite's largest integer
# `run` on a contended or unsteady run, and a gated `compare` with such a side: neither pass
# nor fail, the numbers cannot be trusted
EXIT_UNTRUSTED = 3


def _percentage(text: str) -> float:
    """'5%' or '5' -> 0.05."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"--fail-on-regression expects a percentage such as 5%, "
                                         f"got {text!r}")
    return float(match.group(1)) / 100.0


def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.5 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"--confidence expects a number in [0.5, 1), got {text!r}")
    return value


def add_db_flags(parser: argparse.ArgumentParser, recording: bool) -> None:
    parser.add_argument("--db", type=path_arg("--db"), default=None,
                        help="history database (default: $LSTM_HARNESS_DB or "
                        "$XDG_DATA_HOME/lstm-harness/history.sqlite)")
    if recording:
        parser.add_argument("--no-history", action="store_true", help="do not record this run")


def add_parsers(sub, checkpoint_flag: argparse.ArgumentParser) -> None:
    report = sub.add_parser("report", parents=[checkpoint_flag],
                            help="render a results file (or pytest-benchmark JSON); with "
                            "--checkpoint, only the rows measured on that model")
    report.add_argument("results", type=Path, help="results JSON from `run --out`")
    report.add_argument("--format", choices=FORMATS, default="table")
    report.add_argument("--output", type=path_arg("--output"), default=None,
                        help="write here (default: stdout)")
    report.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE so rows of its WORKLOADS show their own columns")

    history = sub.add_parser("history", help="list recorded runs, most recent first")
    add_db_flags(history, recording=False)
    history.add_argument("--limit", type=int_at_least("--limit", 1, MAX_RUN_ID), default=20,
                         help="how many runs (default 20)")

    compare = sub.add_parser("compare", help="compare two runs row by row, with significance")
    compare.add_argument("base", help="a run id from `history` or a results JSON file")
    compare.add_argument("new", help="a run id from `history` or a results JSON file")
    add_db_flags(compare, recording=False)
    compare.add_argument("--fail-on-regression", type=_percentage, default=None, metavar="PCT",
                         help="exit 1 when a row is slower by more than PCT and significantly so")
    compare.add_argument("--confidence", type=_confidence, default=0.95,
                         help="confidence of the significance test (default 0.95)")


def db_path(args: argparse.Namespace) -> Path:
    from harness.io.history import default_db_path

    return args.db or default_db_path()


def existing_db(args: argparse.Namespace) -> Path | None:
    """The history database to read, None where there is none yet; one the system will not
    look up (a name too long) is bad input."""
    db = db_path(args)
    try:
        return db if db.exists() else None
    except OSError as exc:
        raise InputError(f"expected a history database path for {db_label(args)}, got {db}: "
                         f"{exc.strerror or exc}") from None


def db_label(args: argparse.Namespace) -> str:
    """What named the history database, as a message names it."""
    from harness.io.history import ENV_VAR

    if args.db is not None:
        return "--db"
    return ENV_VAR if os.environ.get(ENV_VAR) else "the history database"


def record_run(args: argparse.Namespace, data: dict, err: Console) -> None:
    """Record a finished run unless --no-history; say where it went."""
    if args.no_history:
        return
    from harness.io.history import record

    db = db_path(args)
    try:
        err.print(f"recorded as run {record(db, data)} in {db}", highlight=False)
    except InputError as exc:
        # The run itself is done and printed; losing its history entry must not change its verdict.
        err.print(labelled("warning:", "bold yellow", f"run not recorded: {exc}"), highlight=False,
                  soft_wrap=True)


def _render(data: dict, fmt: str, width: int | None, workloads: dict) -> str:
    if fmt == "md":
        from reports.markdown import render_markdown

        return render_markdown(data, workloads)
    if fmt == "html":
        from reports.html import render_html

        return render_html(data, workloads)
    import io

    from reports.table import report

    console = Console(file=io.StringIO(), width=width or 220, force_terminal=False, color_system=None,
                      markup=False)
    for part in report(data, workloads):
        console.print(part)
    return console.file.getvalue()


def cmd_report(args: argparse.Namespace, out: Console, err: Console) -> int:
    from harness.cli.common import check_own_files, check_writable, model_files
    from harness.io.sources import load_results
    from harness.workloads import load_workloads

    check_writable(args.output, "--output")
    check_own_files({"--output": args.output}, {"the results file it reads": args.results,
                                                **model_files([args.checkpoint])})
    workloads = load_workloads(args.plugin)
    data = load_results(args.results, workloads)
    if args.checkpoint is not None:
        data = _of_checkpoint(data, args.checkpoint, args.results)
    if args.output is None and args.format == "table":
        from reports.table import report

        for part in report(data, workloads):
            out.print(part)
        return 0
    text = _render(data, args.format, out.width, workloads)
    if args.output is None:
        out.file.write(text)
        return 0
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"expected a writable file for --output, got {args.output}: "
                         f"{exc.strerror or exc}") from exc
    err.print(f"{args.format} report written to {args.output}", highlight=False)
    return 0


def _of_checkpoint(data: dict, path: Path, origin: Path) -> dict:
    """The results of the model in ``path`` alone; refused when none of the rows were
    measured on it (its weights' SHA-256 is the model's identity)."""
    from harness.core.checkpoint import open_checkpoint
    from harness.core.results import for_model, models_of

    checkpoint = open_checkpoint(path)
    mine = for_model(data, checkpoint.sha256)
    if not mine["rows"]:
        held = ", ".join(f"{(m.get('label') or '?')} (sha256 {str(m.get('weights_sha256'))[:12]}…)"
                         for m in models_of(data)) or "no recorded model"
        raise InputError(f"expected results measured on {path} ({checkpoint.model.config.label}, "
                         f"sha256 {checkpoint.sha256[:12]}…), but {origin} holds rows of {held} only")
    return mine


def cmd_history(args: argparse.Namespace, out: Console, err: Console) -> int:
    from harness.io.history import list_runs
    from reports.runs import history_table

    db = existing_db(args)
    if db is None:
        err.print(f"no history yet: {db_path(args)} does not exist", highlight=False)
        return 0
    out.print(history_table(list_runs(db, args.limit), str(db)))
    return 0


def _side(text: str, args: argparse.Namespace) -> tuple[dict, str]:
    """A run id from history when it is a number and no such file exists, else a results file."""
    from harness.io.sources import load_results

    path = Path(text)
    if re.fullmatch(r"[0-9]+", text) and not path.exists():
        from harness.io.history import load

        db = existing_db(args)
        if db is None:
            raise InputError(f"expected a results file or a run id from `harness history`, got {text!r}: "
                             f"there is no such file and no history database at {db_path(args)}")
        if int(text) > MAX_RUN_ID:
            raise InputError(f"expected a run id from `harness history` ({db}), got {text}: "
                             "no such run")
        return load(db, int(text)), f"run {text}"
    return load_results(path), path.name


def cmd_compare(args: argparse.Namespace, out: Console, err: Console) -> int:
    from harness.core.compare import compare_results
    from harness.workloads import WORKLOADS
    from reports.runs import comparison_table

    (base, base_label), (new, new_label) = _side(args.base, args), _side(args.new, args)
    figures = {mode: cls.compare_by for mode, cls in WORKLOADS.items() if cls.compare_by}
    comparison = compare_results(base, new, args.confidence, figures)
    out.print(comparison_table(comparison, base_label, new_label, args.fail_on_regression))
    failures = comparison.failures(args.fail_on_regression)
    if failures:
        names = ", ".join(f"{c.base['backend']} {c.base['batch_size']}×{c.base['seq_len']}"
                          for c in failures)
        err.print(labelled("FAILED:", "bold red", f"{len(failures)} row(s) regressed: {names}"))
        return 1
    if comparison.untrusted:
        labels = {"base": base_label, "new": new_label}
        why = {"contended": "while work outside the run took the CPU",
               "unsteady": "while the host kept changing the machine's speed"}
        sides = " and ".join(f"{labels[side]} was timed {why[verdict]}"
                             for side, verdict in comparison.untrusted)
        names = "/".join(dict.fromkeys(v.upper() for _, v in comparison.untrusted))
        gate = "the regression gate was not applied: " if args.fail_on_regression is not None else ""
        err.print(labelled(f"{names}:", "bold yellow",
                           f"{gate}{sides}; compare runs made on a quiet, steady machine"),
                  highlight=False)
        return EXIT_UNTRUSTED if args.fail_on_regression is not None else 0
    return 0


COMMANDS = {"report": cmd_report, "history": cmd_history, "compare": cmd_compare}

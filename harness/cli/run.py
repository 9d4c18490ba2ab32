"""`python -m harness run`: plan, load the models, run each model x device x dtype, print and record."""

from __future__ import annotations

import argparse
import os
import re
import signal
import tempfile
import time
from pathlib import Path

from rich.console import Console

from harness.cli import report_commands
from harness.cli.common import (
    apply_settings,
    check_cache,
    check_own_files,
    check_writable,
    model_files,
    model_sources,
    open_models,
)
from harness.cli.progress import run_progress
from harness.cli.styles import labelled
from harness.core.checkpoint import Checkpoint
from harness.core.results import RunResult, merge_results
from harness.core.roofline import Peak
from harness.engine.context import environment_for, machine_peak
from harness.engine.plan import Overrides, cuda_available, plan
from harness.engine.runner import benchmark
from harness.io.history import check_history

EXIT_OK, EXIT_FAILED = 0, 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so that the run unwinds and keeps its rows."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signal.Signals(signum).name)


def interrupted_status(exc: KeyboardInterrupt) -> int:
    """The shell's convention: 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


# Flags that set a workload's settings: flag attribute -> setting name.
SETTING_FLAGS = {"latency_bound_ms": "latency_bound_ms", "max_wait_ms": "max_wait_ms",
                 "full": "full"}


def overrides_from(args: argparse.Namespace) -> Overrides:
    params = {setting: value for flag, setting in SETTING_FLAGS.items()
              if (value := getattr(args, flag)) is not None}
    if args.horizon:
        params["horizon"] = args.horizon
    if args.check_grid:
        params["check_grid"] = args.check_grid
    return Overrides(batch_sizes=args.batch_sizes, seq_lens=args.seq_len, backends=args.backends,
                     dtypes=args.dtype, devices=(args.device,) if args.device else None,
                     budget_s=args.budget, processes=args.processes,
                     max_canary_spread=args.max_canary_spread,
                     atol=args.atol, rtol=args.rtol, task_budget=args.task_budget,
                     models=model_sources(args), params=params)


def files_dir_for(out: Path | None, db: Path, scenario: str) -> Path:
    """Where a run's own files (LoadGen's logs) go: beside ``--out`` (results.json ->
    results-files/), else beside the history database, a folder per run."""
    if out is not None:
        return out.resolve().with_name(f"{out.stem}-files")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", scenario)[:64]  # a folder name has its limit
    return db.resolve().parent / "files" / f"{stamp}-{slug}-{os.getpid()}"


def cmd_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    from backends.registry import load_registry
    from harness.io.jsonio import write_json
    from harness.workloads import load_workloads
    from reports.columns import verdict_text
    from reports.table import tables_for
    from scenarios import DEFAULT, resolve

    db = None if args.no_history else report_commands.db_path(args)
    db_flag = report_commands.db_label(args)
    check_writable(args.out, "--out")
    check_writable(args.workdir, "--workdir", directory=True)
    if db is not None:
        check_writable(db, db_flag)
        check_history(db)
    registry = load_registry(args.plugin)
    workloads = load_workloads(args.plugin)
    scenario = resolve(args.scenario, workloads) if args.scenario else DEFAULT
    with tempfile.TemporaryDirectory(prefix="lstm-harness-") as tmp:
        the_plan = plan(scenario, overrides_from(args), registry, workloads,
                        workdir=args.workdir or Path(tmp), seed=args.seed,
                        isolate=args.isolate, backend_timeout_s=args.backend_timeout,
                        files_dir=files_dir_for(args.out, report_commands.db_path(args),
                                                scenario.name))
        check_own_files({"--out": args.out, db_flag: db}, {
            **model_files(the_plan.models),
            "the scenario file": Path(scenario.source) if scenario.source else None})
        check_cache(args, the_plan.models)
        if the_plan.workload.keeps_files:
            check_writable(the_plan.configs[0].files_dir, "the run's files folder (named from --out, "
                           "else beside the history database)", directory=True)
        settings = apply_settings(args, the_plan.workload)

        def accept(checkpoint: Checkpoint) -> None:
            the_plan.workload.refuse_model(checkpoint.model.config)
            the_plan.refuse_oversized(checkpoint.model.config)

        checkpoints = open_models(the_plan.models, args, err, accept)
        record = the_plan.record()
        results: list[RunResult] = []  # one finished result per device x dtype
        latest: list[RunResult] = []  # everything finished so far, kept for an interrupt

        def save_partial(partial: RunResult) -> None:
            latest[:] = [merge_results([*results, partial])]
            if args.out is not None:
                write_json(args.out, latest[0].to_dict())

        several_models = len(the_plan.models) > 1
        several = len(the_plan.configs) > len(the_plan.models)  # devices x dtypes per model
        previous_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            with run_progress(err) as on_event:
                peaks: dict[str, Peak] = {}
                for config in the_plan.configs:
                    if config.device not in peaks:
                        err.print(f"measuring machine peak (fp32 GEMM on {config.device})…")
                        usable = config.device == "cpu" or cuda_available()
                        peaks[config.device] = machine_peak(config.device, settings, registry) \
                            if usable else Peak.best_of({})
                    checkpoint = checkpoints[config.model]
                    tag = " ".join([*([checkpoint.model.config.label] if several_models else []),
                                    *([f"{config.device}/{config.dtype}"] if several else [])])
                    results.append(benchmark(
                        checkpoint.model, checkpoint.info(), config, registry, settings,
                        environment_for(config.device, settings, registry), record,
                        on_event=(lambda e, tag=tag: on_event(e.tagged(tag))) if tag else on_event,
                        peak=peaks[config.device], on_rows=save_partial))
        except KeyboardInterrupt as exc:
            _report_interrupted(latest[0] if latest else None, args.out, out, err, workloads)
            return interrupted_status(exc)
        finally:
            signal.signal(signal.SIGTERM, previous_sigterm)
    result = merge_results(results)
    data = result.to_dict()
    for table in tables_for(data, workloads):
        out.print(table)
    if args.out is not None:
        err.print(f"results written to {write_json(args.out, data)}")
    files_dir = the_plan.configs[0].files_dir
    if the_plan.workload.keeps_files and files_dir is not None and files_dir.exists():
        err.print(f"the run's own files (LoadGen's logs) are in {files_dir}", highlight=False)
    report_commands.record_run(args, data, err)
    verdict = verdict_text(data)
    if verdict:
        err.print(verdict, style="bold red" if result.contended or result.unsteady else None,
                  highlight=False, soft_wrap=True)
    if result.failed:
        err.print(labelled("FAILED:", "bold red",
                           "at least one backend disagreed with the reference or failed"))
        return EXIT_FAILED
    if (result.contended and not args.allow_contended) or \
            (result.unsteady and not args.allow_unsteady):
        return report_commands.EXIT_UNTRUSTED
    return EXIT_OK


def _report_interrupted(partial: RunResult | None, out_path: Path | None, out: Console,
                        err: Console, workloads: dict) -> None:
    """Show what finished before the interrupt and say where it is kept."""
    from reports.table import tables_for

    if partial is None:
        err.print("interrupted before the first shape was finished: no rows to keep")
        return
    for table in tables_for(partial.to_dict(), workloads):
        out.print(table)
    n = len(partial.rows)
    where = f"saved to {out_path}" if out_path is not None else "not saved (no --out given)"
    err.print(f"interrupted: the {n} rows of every finished shape are shown above and {where}",
              highlight=False, soft_wrap=True)

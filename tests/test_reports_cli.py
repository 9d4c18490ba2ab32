"""report, history and compare end to end, on real runs recorded into a temporary database."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from harness.cli.main import main
from harness.cli.progress import run_progress
from harness.engine.events import Event, Phase
from harness.io.jsonio import write_json
from tests.results_fixture import make_results

RUN = ["run", "--backends", "reference,eager", "--batch-sizes", "1,4", "--budget", "0.05",
       "--allow-contended", "--allow-unsteady"]


@pytest.mark.slow
def test_two_runs_then_history_compare_and_every_report_format(cached, history_db, tmp_path, capsys):
    results = tmp_path / "first.json"
    assert main([*RUN, "--out", str(results)]) == 0
    first = capsys.readouterr()
    # stderr is not a terminal under pytest: progress falls back to one line per event
    assert "reference: prepare" in first.err and "eager: time batch=4 seq_len=50" in first.err
    assert f"recorded as run 1 in {history_db}" in first.err
    assert main(RUN) == 0
    assert "recorded as run 2" in capsys.readouterr().err

    assert main(["history"]) == 0
    listing = capsys.readouterr().out
    assert "│  2 │" in listing and "│  1 │" in listing
    assert "default · h64 L1 · reference,eager · batch 1,4 · seq 50 · all agree" in listing

    assert main(["compare", "1", "2"]) == 0  # no gate: timing changes alone never fail
    table = capsys.readouterr().out
    # both runs timed each row in two processes: the change is tested as their CIs are built
    assert table.count("│ eager ") == 2 and "bootstrap" in table and "Mann-Whitney" not in table
    # the gate passes, unless a side was timed on a busy machine or an unsteady host (RUN
    # allows both): then it is not applied, and compare says so with exit 3
    code = main(["compare", str(results), "2", "--fail-on-regression", "1000%"])
    assert code == 0 or (code == 3 and "gate was not applied" in capsys.readouterr().err)

    capsys.readouterr()
    for fmt, marker in (("table", "│ reference"), ("md", "| reference |"), ("html", "<img alt=")):
        out = tmp_path / f"report.{fmt}"
        assert main(["report", str(results), "--format", fmt, "--output", str(out)]) == 0
        assert marker in out.read_text(encoding="utf-8")
    assert main(["report", str(results), "--format", "md"]) == 0
    assert capsys.readouterr().out.startswith("### lstm-harness · default")


@pytest.mark.slow
def test_no_history_records_nothing(cached, history_db, capsys):
    assert main([*RUN[:4], "1", *RUN[5:], "--processes", "1", "--no-history"]) == 0
    assert not history_db.exists() and "recorded" not in capsys.readouterr().err


def test_compare_gate_on_files_fails_a_significant_slowdown(tmp_path, capsys):
    base = write_json(tmp_path / "base.json", make_results(noise=0.01))
    slower = write_json(tmp_path / "new.json", make_results(scale=1.1, noise=0.01, seed=50))
    assert main(["compare", str(base), str(slower)]) == 0
    assert main(["compare", str(base), str(slower), "--fail-on-regression", "5%"]) == 1
    captured = capsys.readouterr()
    assert "slower" in captured.out and "FAILED: 6 row(s) regressed" in captured.err
    lost = make_results(noise=0.01)
    lost["rows"][0]["agrees"] = False
    lost_path = write_json(tmp_path / "lost.json", lost)
    assert main(["compare", str(base), str(lost_path)]) == 1
    assert "agreement lost" in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragment", [
    (["report", "missing.json"], "results file not found: missing.json"),
    (["report", "x.json", "--format", "pdf"], "invalid choice: 'pdf'"),
    (["compare", "1", "2"], "no such run"),
    (["compare", "a.json", "b.json", "--fail-on-regression", "lots"], "percentage such as 5%"),
    (["history", "--db", "h" * 300], "expected a history database path for --db, got hhh"),
    (["compare", "1", "2", "--db", "h" * 300], "expected a history database path for --db"),
    (["report", "r" * 300 + ".json"], "expected a readable JSON results file, got rrr"),
])
def test_bad_input_exits_2_with_one_line(argv, fragment, history_db, tmp_path, capsys):
    from harness.io import history

    history.record(history_db, make_results())  # run 1 exists, run 2 does not
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in " ".join(err.split()) and "Traceback" not in err


# A row that names its backend, shape and status: what follows it is the case's own.
ROW = (b'{"schema_version": 4, "rows": [{"backend": "x", "device": "cpu", "dtype": "fp32", '
       b'"batch_size": 1, "seq_len": 50, "status": "ok", ')


@pytest.mark.parametrize("content, fragment", [
    (b"\xff\xee not text", "is not UTF-8 text"),
    (b'{"schema_version": 4, "rows": 5}', "expected rows to be a list of objects"),
    (b'{"schema_version": 4, "rows": [], "checks": [1]}', "expected checks to be a list of objects"),
    (b'{"schema_version": 4, "rows": [], "checks": [{}]}',
     "to carry backend as string, absent; batch_size as integer, absent; seq_len as integer, absent"),
    (b'{"schema_version": 4, "rows": [{"backend": "x", "batch_size": true}]}',
     "to carry device as string, absent; dtype as string, absent; batch_size as integer, got true"),
    (b'{"schema_version": 4, "rows": [{"backend": "x", "device": "cpu", "dtype": "fp32", '
     b'"batch_size": 1, "seq_len": 50, "status": "ok", "median_ms": "fast", "mode": null}]}',
     "bad.json to carry mode as string, got null; median_ms as number, got \"fast\""),
    (b'{"schema_version": 4, "rows": [{"backend": "x", "device": "cpu", "dtype": "fp32", '
     b'"batch_size": 1, "seq_len": 50, "status": "done", "samples_ms": [1, "2"]}]}',
     'status as one of "ok", "unavailable", "failed", got "done"; samples_ms as [number, ...], '
     'got [1, "2"]'),
    (b'{"schema_version": 4, "rows": [{"backend": "x", "device": "cpu", "dtype": "fp32", '
     b'"batch_size": 1, "seq_len": 50, "status": ["ok"], "verdict": {}}]}',
     'status as one of "ok", "unavailable", "failed", got ["ok"]; verdict as one of "valid", '
     '"contended", "unsteady", "unchecked", got {}'),
    (b'{"schema_version": 4, "rows": [], "checks": [{"backend": "x", "batch_size": 1, "seq_len": 5, '
     b'"agrees": "yes", "max_abs_err": null}]}',
     "bad.json to carry max_rel_err as number, absent; agrees as true or false, got \"yes\""),
    (b'{"schema_version": 4, "rows": [], "verdict": "valid"}',
     "expected verdict to be an object in"),
    (b'{"schema_version": 2, "rows": [], "model": [1]}', "expected model to be an object in"),
    (b'{"schema_version": 4, "rows": [], "verdict": {"verdict": "fine", "rows_contended": 0, '
     b'"max_foreign_cores": 0.4, "busiest": [{"pid": 1}]}}',
     'carry verdict as one of "valid", "contended", "unsteady", "unchecked", got "fine"; '
     'max_set_aside as number, absent; busiest as [{pid, name, cores}, ...], got [{"pid": 1}]'),
    (b'{"schema_version": 4, "rows": [], "verdict": {"verdict": "valid", "rows_contended": 0, '
     b'"max_foreign_cores": 0.4, "max_set_aside": 0.25, "max_canary_spread": 1.06}}',
     "canary_spread as number or null, absent; canary_rounds as integer, absent"),
    (b'{"benchmarks": [{"name": "x", "stats": {}, "extra_info": {"backend": "eager", "device": "cpu", '
     b'"dtype": "fp32", "batch_size": 1, "seq_len": 50, "agrees": true}}], "machine_info": {}}',
     "expected a pytest-benchmark file of the harness's benchmark suite"),
    (b'{"benchmarks": [{"name": "b1", "stats": {"median": 0.001, "min": 0.001, "mean": 0.001, '
     b'"stddev": 0, "iqr": 0, "rounds": 5}, "extra_info": {"backend": "eager", "device": "cpu", '
     b'"dtype": "fp32", "batch_size": 1, "seq_len": 50, "model": {"config": {"hidden_size": null}}}}], '
     b'"machine_info": {}}',
     "expected the extra_info model config of benchmark 'b1' to give the model's sizes: model "
     "hidden_size must be an integer >= 1, got None"),
    # a workload's own fields: forward's, a rollout's, a server's search, the task check's
    (ROW + b'"throughput_seq_s": "fast", "pct_peak": [5]}]}',
     'throughput_seq_s as number, got "fast"; pct_peak as number or null, got [5]'),
    (ROW + b'"mode": "rollout", "rollout_err": [0.1, "x"], "drift_horizon": 2.5}]}',
     'drift_horizon as integer or null, got 2.5; rollout_err as [number or null, ...], got [0.1, "x"]'),
    (ROW + b'"mode": "server", "search": [{"process": 0, "offered_qps": 100}]}]}',
     "search as [{process, offered_qps, full, valid, scheduled_qps, p99_ms}, ...], got"),
    (ROW + b'"mode": "offline", "batches_formed": [[4, "x"]], "task_agrees": "yes"}]}',
     'batches_formed as [[integer, integer], ...], got [[4, "x"]]; task_agrees as true or false, got "yes"'),
    (ROW + b'"mode": "offline", "batches_formed": [[4]]}]}',
     "batches_formed as [[integer, integer], ...], got [[4]]"),
    (ROW + b'"mode": "a-plugins", "gflops": "x"}]}', 'gflops as number, got "x"'),
    (b'{"schema_version": 4, "rows": [], "checks": [{"backend": "x", "batch_size": 1, "seq_len": 5, '
     b'"agrees": null, "max_abs_err": null, "max_rel_err": null, "mode": null}]}',
     "agrees as true or false, got null; mode as string, got null"),
    (b'{"schema_version": true, "rows": []}',
     "expected results schema_version as an integer from 1 to 4, got true"),
    (b'{"schema_version": 0, "rows": []}', "schema_version as an integer from 1 to 4, got 0 in"),
    (b'{"schema_version": 2, "rows": [], "model": {"config": [1]}}',
     "expected model.config to be an object in"),
    (b'{"schema_version": 4, "rows": [], "model": {"models": [1]}}',
     "expected model.models to be a list of objects in"),
    (ROW + b'"diagnostics": ["a"]}]}', 'diagnostics as object, got ["a"]'),
    # values of the right type that no run writes, each of which broke a report or a plot
    (b'{"schema_version": 4, "rows": [{"backend": "", "device": "cpu", "dtype": "fp32", '
     b'"batch_size": -3, "seq_len": 0, "status": "ok", "median_ms": -1.0}]}',
     "backend as a string of 1 or more characters, got \"\"; batch_size as an integer from 1 to "
     "9007199254740992, got -3; seq_len as an integer from 1 to 9007199254740992, got 0; median_ms "
     "as a number >= 0, got -1.0"),
    (ROW[:-len(b'"seq_len": 50, "status": "ok", ')] + b'"seq_len": 1000000000000000000000000000000, '
     b'"status": "ok", "hidden_size": 0}]}',
     "seq_len as an integer from 1 to 9007199254740992, got 1000000000000000000000000000000; "
     "hidden_size as an integer from 1 to 9007199254740992, got 0"),
    (b'{"schema_version": 4, "rows": [], "checks": [{"backend": "x", "batch_size": 1, "seq_len": 5, '
     b'"agrees": true, "max_abs_err": -0.5, "max_rel_err": 0}]}',
     "max_abs_err as a number >= 0, got -0.5"),
    (ROW + b'"median_ms": NaN}]}', "whose numbers are finite, got NaN in"),
    (ROW + b'"median_ms": 1e400}]}', "whose numbers are finite, got Infinity in"),
    (ROW + b'"samples_ms": [0.5, -1], "first_call_ms": -5, "speedup_vs_eager": -1}]}',
     "samples_ms as a list of numbers >= 0, got [0.5, -1]; speedup_vs_eager as a number >= 0, "
     "got -1; first_call_ms as a number >= 0, got -5"),
    (ROW + b'"throughput_seq_s": -2.5}]}', "throughput_seq_s as a number >= 0, got -2.5"),
    (ROW + b'"x": ' + b"9" * 5000 + b"}]}", "holds an integer of more than 4300 digits"),
])
def test_a_malformed_results_file_exits_2_with_one_line(content, fragment, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    good = write_json(tmp_path / "good.json", make_results())
    for argv in (["report", str(bad)], ["compare", str(good), str(bad)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert fragment in " ".join(err.split()) and "Traceback" not in err


def test_a_run_read_back_from_the_history_is_checked_like_a_file(history_db, tmp_path, capsys):
    import json
    import sqlite3

    from harness.io import history

    history.record(history_db, make_results())
    with sqlite3.connect(history_db) as conn:
        (data,) = conn.execute("SELECT data FROM rows WHERE run_id = 1 AND idx = 0").fetchone()
        conn.execute("UPDATE rows SET data = ? WHERE run_id = 1 AND idx = 0",
                     (json.dumps({**json.loads(data), "gflops": "many"}),))
    good = write_json(tmp_path / "good.json", make_results())
    assert main(["compare", "1", str(good)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert 'expected row 0 of run 1 of' in err and 'gflops as number, got "many"' in err


def test_brackets_in_paths_reasons_and_errors_print_as_they_are(tmp_path, capsys):
    """Paths, install lines ('.[cpu]') and errors reach the console whole, not read as style tags."""
    results = make_results()
    unavailable = next(r for r in results["rows"] if r["status"] == "unavailable")
    unavailable["reason"] = "needs pip install -e '.[cpu]'"
    path = write_json(tmp_path / "[run].json", results)
    assert main(["report", str(path)]) == 0
    assert "pip install -e '.[cpu]'" in capsys.readouterr().out
    assert main(["report", str(path), "--format", "md", "--output", str(tmp_path / "[run].md")]) == 0
    assert "[run].md" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "[missing].json")]) == 2
    assert "[missing].json" in capsys.readouterr().err


def test_a_row_that_names_no_mode_reads_as_a_forward_row():
    from harness.core.targets import DEFAULT_MODE
    from harness.io.sources import as_results

    results = make_results()
    del results["rows"][0]["mode"]
    assert as_results(results, "hand-made.json")["rows"][0]["mode"] == DEFAULT_MODE


def test_a_folder_given_as_results_exits_2_with_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "expected a readable JSON results file" in err and "Traceback" not in err


def test_history_stores_what_the_results_file_holds_non_finite_figures_as_null(history_db, tmp_path):
    from harness.io import history

    results = make_results()
    results["rows"][0]["speedup_vs_eager"] = float("nan")
    stored = history.load(history_db, history.record(history_db, results))
    assert stored["rows"][0]["speedup_vs_eager"] is None
    assert stored["rows"][1] == {**results["rows"][1], "samples_ms": stored["rows"][1]["samples_ms"]}


def test_history_without_a_database_says_so(history_db, capsys):
    assert main(["history"]) == 0
    assert "no history yet" in capsys.readouterr().err and not history_db.exists()
    assert main(["compare", "1", "2"]) == 2
    assert "no history database at" in capsys.readouterr().err and not history_db.exists()


def test_a_history_that_cannot_be_written_warns_but_keeps_the_run_verdict(tmp_path, capsys):
    from argparse import Namespace

    from harness.cli.report_commands import record_run

    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database " * 100)
    err = Console(file=io.StringIO(), width=200)
    record_run(Namespace(no_history=False, db=junk), make_results(), err)
    assert "warning: run not recorded: expected an lstm-harness history database" in err.file.getvalue()


def test_live_progress_has_a_task_per_backend_phase_and_shape():
    console = Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)
    with run_progress(console) as on_event:
        on_event(Event("eager", Phase.PREPARE))
        on_event(Event("onnxruntime", Phase.PREPARE))
        on_event(Event("onnxruntime", Phase.FAILED, reason="RuntimeError: no"))
        on_event(Event("eager", Phase.CHECK))
        on_event(Event("eager", Phase.TIME, shape=(64, 50), workload="forward"))
        on_event(Event("reference", Phase.TIME, shape=(64, 50), workload="forward"))
        tasks = on_event.progress.tasks
        assert [(t.description, t.fields["phase"], t.finished) for t in tasks] == [
            ("eager", "[cyan]prepare[/]", True),
            ("onnxruntime", "[bold red]failed[/] RuntimeError: no", True),
            ("eager", "[cyan]check[/]", True),
            ("eager batch=64 seq_len=50", "[cyan]time[/]", False),  # interleaved: both open
            ("reference batch=64 seq_len=50", "[cyan]time[/]", False)]
    assert all(t.finished and t.elapsed is not None for t in tasks)
    assert "eager batch=64 seq_len=50" in console.file.getvalue()


def test_live_progress_shows_the_device_and_dtype_tag_in_brackets_as_written():
    console = Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)
    with run_progress(console) as on_event:
        on_event(Event("eager", Phase.PREPARE, tag="cpu/fp32"))
        on_event(Event("eager", Phase.TIME, shape=(64, 50), workload="forward", tag="cpu/fp32"))
    shown = console.file.getvalue()
    assert "eager [cpu/fp32] batch=64 seq_len=50" in shown
    assert "eager [cpu/fp32]" in shown.split("batch=64")[0]


def test_a_backend_measured_on_its_own_closes_its_task_when_done():
    console = Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)
    with run_progress(console) as on_event:
        on_event(Event("eager", Phase.TIME, shape=(64, 50), workload="server"))
        on_event(Event("eager", Phase.DONE, shape=(64, 50), workload="server"))
        on_event(Event("onnxruntime", Phase.TIME, shape=(64, 50), workload="server"))
        tasks = on_event.progress.tasks
        assert [(t.description, t.finished) for t in tasks] == [
            ("eager batch=64 seq_len=50", True), ("onnxruntime batch=64 seq_len=50", False)]


def test_off_a_terminal_each_event_is_one_plain_line():
    console = Console(file=io.StringIO(), force_terminal=False, width=200)
    with run_progress(console) as on_event:
        on_event(Event("eager", Phase.TIME, shape=(64, 50), workload="streaming", tag="cpu/bf16"))
        on_event(Event("onnxruntime", Phase.FAILED, reason="SIGSEGV: the worker died"))
    lines = console.file.getvalue().splitlines()
    assert lines[0].endswith("eager [cpu/bf16]: time batch=64 seq_len=50 (streaming)")
    assert lines[1].endswith("onnxruntime: failed: SIGSEGV: the worker died")

"""Process isolation end to end: faulty backends (tests/plugins/faults.py) beside real eager.

Each faulty backend must cost only its own rows, with the reason named, while eager in the
same run still produces its timing; the run exits 1.
"""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backends.eager import EagerBackend
from harness.cli import main
from harness.data import sine_batch
from harness.errors import BackendError
from harness.handles import LocalHandle
from harness.isolation import WorkerHandle, death_reason

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--batch-sizes", "1", "--budget", "0.05"]
PLUGINS = ["--plugin", "tests.plugins.faults", "--plugin", "tests.plugins.wrong_backend"]


@pytest.fixture(scope="module")
def fault_run(checkpoint, cache_dir, tmp_path_factory):
    """One run of eager beside every crashing, raising and wrong backend."""
    out = tmp_path_factory.mktemp("faults") / "results.json"
    os.environ["LSTM_HARNESS_CACHE"] = str(cache_dir)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            code = main(["run", *PLUGINS, "--backends", "eager,segfault,abort,raises,nan,wrong,stale",
                         "--out", str(out), *FAST])
    finally:
        del os.environ["LSTM_HARNESS_CACHE"]
    data = json.loads(out.read_text())
    return code, {r["backend"]: r for r in data["rows"]}, printed.getvalue()


def test_a_run_with_faulty_backends_exits_1_and_keeps_eager(fault_run):
    code, rows, printed = fault_run
    eager_line = next(line for line in printed.splitlines() if line.startswith("│ eager "))
    assert "✓" in eager_line and "SIGSEGV" in printed  # the table is printed, failures and all
    assert code == 1
    eager = rows["eager"]
    assert eager["status"] == "ok" and eager["agrees"] is True
    assert eager["median_ms"] > 0 and len(eager["samples_ms"]) == eager["rounds"] >= 3
    assert eager["isolation_startup_s"] > 0 and eager["prepare_s"] is not None


@pytest.mark.parametrize("backend, fragments", [
    ("segfault", ("SIGSEGV", "the worker died during", "while timing batch=1 seq_len=50")),
    ("abort", ("SIGABRT", "during prepare")),
    ("raises", ("RuntimeError: injected failure in run", "while timing")),
])
def test_a_crash_or_exception_fails_only_that_backend_and_says_why(fault_run, backend, fragments):
    row = fault_run[1][backend]
    assert row["status"] == "failed" and row["median_ms"] is None
    for fragment in fragments:
        assert fragment in row["reason"]


@pytest.mark.parametrize("backend, max_abs_err", [("nan", None), ("wrong", 1e-3), ("stale", None)])
def test_wrong_answers_are_measured_but_marked_disagreeing(fault_run, backend, max_abs_err):
    row = fault_run[1][backend]
    assert row["status"] == "ok" and row["agrees"] is False and row["median_ms"] > 0
    if max_abs_err is not None:
        assert row["max_abs_err"] == pytest.approx(max_abs_err, rel=1e-3)


def test_repeat_calls_report_determinism(fault_run):
    rows = fault_run[1]
    assert rows["eager"]["deterministic"] is True and rows["eager"]["repeat_max_diff"] == 0.0
    # A stale cache answers the repeat with the first call's (different) input's output.
    assert rows["stale"]["deterministic"] is False and rows["stale"]["repeat_max_diff"] > 1e-3


def test_a_hanging_backend_times_out_and_eager_goes_on(checkpoint, cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LSTM_HARNESS_CACHE", str(cache_dir))
    out = tmp_path / "hang.json"
    start = time.perf_counter()
    code = main(["run", *PLUGINS, "--backends", "eager,hang", "--backend-timeout", "10",
                 "--out", str(out), *FAST])
    assert code == 1 and time.perf_counter() - start < 300
    rows = {r["backend"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["hang"]["status"] == "failed"
    assert "timeout: no answer to" in rows["hang"]["reason"] and "within 10 s" in rows["hang"]["reason"]
    assert rows["eager"]["status"] == "ok" and rows["eager"]["median_ms"] > 0


def test_a_worker_gives_the_same_bits_as_this_process(checkpoint, cpu_target, process_settings):
    x = sine_batch(8, 50, 3)
    worker = WorkerHandle.open(EagerBackend(), checkpoint.model, cpu_target, x, process_settings, 120)
    try:
        local = LocalHandle.open(EagerBackend(), checkpoint.model, cpu_target, x)
        np.testing.assert_array_equal(worker.predict(x), local.predict(x))
        timer = worker.timer([x])
        timer.warm_up(0.0)
        assert timer.calibrate(1e-3) >= 1 and timer.round() > 0
        assert worker.startup_s > 0 and "isolation_startup_s" in worker.diagnostics()
    finally:
        worker.close()
    with pytest.raises(BackendError):
        worker.predict(x)  # closed: refused, not hung


def test_a_dead_worker_is_named_by_its_signal():
    assert death_reason(-signal.SIGSEGV) == "SIGSEGV"
    assert death_reason(-signal.SIGKILL) == "SIGKILL"
    assert death_reason(3) == "exit status 3"


def _default_sigint() -> None:
    # A shell's background job starts with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt; give the child the disposition a terminal would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_signal_mid_run_keeps_the_finished_shapes(checkpoint, cache_dir, tmp_path, signum):
    """SIGTERM or Ctrl-C mid-run: exit 128+signal, the file holds every finished shape.

    SIGKILL cannot be handled: the last file written is still complete and readable.
    """
    out = tmp_path / "partial.json"
    env = {**os.environ, "LSTM_HARNESS_CACHE": str(cache_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--backends", "eager",
                             "--batch-sizes", "1,64,1024", "--budget", "2", "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 240
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert out.exists(), "no shape finished in time"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    rows = json.loads(out.read_text())["rows"]
    assert rows and all(r["status"] == "ok" and r["median_ms"] > 0 for r in rows)
    if signum == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        return
    assert proc.returncode == 128 + signum, stderr
    assert f"saved to {out}" in " ".join(stderr.split()) and "Traceback" not in stderr
    assert "eager" in stdout  # the finished rows are shown too


def test_without_isolation_a_raising_backend_still_fails_alone(checkpoint, cache_dir, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv("LSTM_HARNESS_CACHE", str(cache_dir))
    out = tmp_path / "inproc.json"
    code = main(["run", *PLUGINS, "--no-isolate", "--backends", "eager,raises,stale",
                 "--out", str(out), *FAST])
    assert code == 1
    rows = {r["backend"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["raises"]["status"] == "failed"
    assert "RuntimeError: injected failure in run" in rows["raises"]["reason"]
    assert rows["stale"]["agrees"] is False and rows["eager"]["median_ms"] > 0

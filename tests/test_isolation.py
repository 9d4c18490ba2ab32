"""Process isolation end to end: faulty backends (tests/plugins/faults.py) beside real eager.

Each faulty backend must cost only its own rows, with the reason named, while eager in the
same run still produces its timing; the run exits 1.
"""

import contextlib
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from backends.eager import EagerBackend
from harness.cli.main import main
from harness.core.data import sine_batch
from harness.core.errors import BackendError
from harness.core.timing import TimingConfig
from harness.engine.handles import LocalHandle
from harness.engine.isolation import WorkerHandle, death_reason
from harness.workloads.base import PRIMARY
from harness.workloads.forward import FORWARD
from tests.conftest import FAST

ROOT = Path(__file__).resolve().parent.parent
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


@pytest.mark.slow
def test_a_run_with_faulty_backends_exits_1_and_keeps_eager(fault_run):
    code, rows, printed = fault_run
    eager_line = next(line for line in printed.splitlines() if line.startswith("│ eager "))
    assert "✓" in eager_line and "SIGSEGV" in printed  # the table is printed, failures and all
    assert code == 1
    eager = rows["eager"]
    assert eager["status"] == "ok" and eager["agrees"] is True
    assert eager["median_ms"] > 0 and len(eager["samples_ms"]) == eager["rounds"] >= 3
    assert eager["isolation_startup_s"] > 0 and eager["prepare_s"] is not None


@pytest.mark.slow
@pytest.mark.parametrize("backend, fragments", [
    ("segfault", ("SIGSEGV", "the worker died during warm-up", "while timing batch=1 seq_len=50")),
    ("abort", ("SIGABRT", "during prepare")),
    ("raises", ("RuntimeError: injected failure in run", "while timing")),
])
def test_a_crash_or_exception_fails_only_that_backend_and_says_why(fault_run, backend, fragments):
    row = fault_run[1][backend]
    assert row["status"] == "failed" and row["median_ms"] is None
    for fragment in fragments:
        assert fragment in row["reason"]


@pytest.mark.slow
@pytest.mark.parametrize("backend, max_abs_err", [("nan", None), ("wrong", 1e-3), ("stale", None)])
def test_wrong_answers_are_measured_but_marked_disagreeing(fault_run, backend, max_abs_err):
    row = fault_run[1][backend]
    assert row["status"] == "ok" and row["agrees"] is False and row["median_ms"] > 0
    if max_abs_err is not None:
        assert row["max_abs_err"] == pytest.approx(max_abs_err, rel=1e-3)


@pytest.mark.slow
def test_repeat_calls_report_determinism(fault_run):
    rows = fault_run[1]
    assert rows["eager"]["deterministic"] is True and rows["eager"]["repeat_max_diff"] == 0.0
    # A stale cache answers the repeat with the first call's (different) input's output.
    assert rows["stale"]["deterministic"] is False and rows["stale"]["repeat_max_diff"] > 1e-3


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_worker_gives_the_same_bits_as_this_process(checkpoint, cpu_target, process_settings):
    x = sine_batch(8, 50, 3)
    worker = WorkerHandle.open(EagerBackend(), checkpoint.model, cpu_target, x, process_settings, 120)
    try:
        local = LocalHandle.open(EagerBackend(), checkpoint.model, cpu_target, x)
        np.testing.assert_array_equal(worker.outputs(FORWARD, x), local.outputs(FORWARD, x))
        timer = worker.timer(FORWARD, PRIMARY, [x])
        timer.warm_up(0.0)
        assert timer.calibrate(1e-3) >= 1 and timer.round() > 0
        assert worker.info.startup_s > 0 and worker.info.pid != os.getpid()
        assert local.info.startup_s is None and local.info.pid == os.getpid()
    finally:
        worker.close()
    with pytest.raises(BackendError):
        worker.outputs(FORWARD, x)  # closed: refused, not hung


def test_a_dead_worker_is_named_by_its_signal():
    assert death_reason(-signal.SIGSEGV) == "SIGSEGV"
    assert death_reason(-signal.SIGKILL) == "SIGKILL"
    assert death_reason(3) == "exit status 3"


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (the run's workers, its resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Running, or a zombie nobody has reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _default_sigint() -> None:
    # A shell's background job starts with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt; give the child the disposition a terminal would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_signal_mid_run_keeps_the_finished_shapes(checkpoint, cache_dir, tmp_path, signum):
    """SIGTERM or Ctrl-C mid-run: exit 128+signal, the file holds every finished shape.

    SIGKILL cannot be handled: the last file written is still complete and readable.
    """
    out = tmp_path / "partial.json"
    env = {**os.environ, "LSTM_HARNESS_CACHE": str(cache_dir)}
    planned = [(1, 50), (64, 50), (1024, 50)]
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--backends", "reference,eager",
                             "--batch-sizes", "1,64,1024", "--budget", "2", "--no-history",
                             "--check-grid", "timed", "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 240
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert out.exists(), "no shape finished in time"
    workers = _children(proc.pid)
    assert len(workers) >= 4  # two processes each for reference and eager
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    rows = json.loads(out.read_text())["rows"]
    shapes = list(dict.fromkeys((r["batch_size"], r["seq_len"]) for r in rows))
    # exactly the finished shapes: the first ones planned, each with a row per backend
    assert shapes == planned[:len(shapes)] and len(rows) == 2 * len(shapes)
    assert all(r["status"] == "ok" and r["median_ms"] > 0 for r in rows)
    time.sleep(1.0)  # a killed parent's orphans are reaped by init
    assert [pid for pid in workers if _alive(pid)] == []
    if signum == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        return
    assert proc.returncode == 128 + signum, stderr
    said = " ".join(stderr.split())
    assert f"the {len(rows)} rows of every finished shape" in said and f"saved to {out}" in said
    assert "Traceback" not in stderr
    assert "eager" in stdout  # the finished rows are shown too


@pytest.mark.slow
@pytest.mark.parametrize(("phase", "workers_then"),
                         [("eager: prepare", 1), ("eager: check", 2 * TimingConfig().processes)])
def test_ctrl_c_before_the_first_shape_stops_every_worker_quietly(checkpoint, cache_dir, tmp_path,
                                                                  phase, workers_then):
    """A terminal's Ctrl-C, which reaches the whole process group, while the first worker
    imports torch or while the later ones start beside the first ones' checks: exit 130, one
    line saying nothing finished, no worker's traceback, and none of the workers left."""
    out = tmp_path / "never.json"
    env = {**os.environ, "LSTM_HARNESS_CACHE": str(cache_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--backends", "eager,torchscript",
                             "--no-history", "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()  # stderr, read on a thread so waiting can time out
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    try:
        seen = []
        while not any(phase in line for line in seen):
            seen.append(lines.get(timeout=240))
        time.sleep(0.2)  # into the worker's imports
        workers = _workers(proc.pid)
        assert len(workers) == workers_then
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # on a failure, the workers too
        proc.wait()
    stderr = "".join(seen + list(lines.queue))
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "interrupted before the first shape was finished: no rows to keep" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert not out.exists()
    time.sleep(1.0)
    assert [pid for pid in workers if _alive(pid)] == []


def test_a_ctrl_c_as_a_worker_spawns_leaves_no_worker_behind(checkpoint, cpu_target, monkeypatch):
    """Ctrl-C that lands as the spawn returns: the worker, which no caller will ever hold, is
    killed before the interrupt goes on."""
    from harness.core.settings import default_settings
    from harness.engine import isolation

    @contextlib.contextmanager
    def interrupted_as_it_ends():
        yield
        raise KeyboardInterrupt

    monkeypatch.setattr(isolation, "_ctrl_c_held", interrupted_as_it_ends)
    before = set(_workers(os.getpid()))
    with pytest.raises(KeyboardInterrupt):
        WorkerHandle.start(EagerBackend(), checkpoint.model, cpu_target, sine_batch(1, 50, 0),
                           default_settings(1), 300.0)
    assert [pid for pid in set(_workers(os.getpid())) - before if _alive(pid)] == []


def _workers(pid: int) -> list[int]:
    """``pid``'s children but multiprocessing's resource tracker."""

    def tracker(child: int) -> bool:
        try:
            return b"resource_tracker" in Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            return False

    return [child for child in _children(pid) if not tracker(child)]


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_run_that_timed_nothing_carries_no_verdict(checkpoint, cache_dir, tmp_path, monkeypatch,
                                                     capsys):
    """Its only backend failed while timing: no round was kept, so there is no machine to call
    quiet (the verdict would have said valid)."""
    monkeypatch.setenv("LSTM_HARNESS_CACHE", str(cache_dir))
    out = tmp_path / "nothing.json"
    code = main(["run", *PLUGINS, "--no-isolate", "--backends", "raises", "--out", str(out), *FAST])
    assert code == 1
    data = json.loads(out.read_text())
    assert [r["status"] for r in data["rows"]] == ["failed"] and data["verdict"] is None
    assert "verdict:" not in capsys.readouterr().err


@pytest.mark.parametrize("freeze", [True, False])
def test_a_worker_freezes_what_exists_once_its_backend_is_prepared(checkpoint, cpu_target, freeze):
    """A full collection over torch's objects stalls whichever round or query triggers it;
    frozen objects are skipped, and the setting that asks for it is honoured either way."""
    from dataclasses import replace

    from harness.core.settings import default_settings
    from tests.plugins.environment_backend import DeclaresEnvironment

    settings = replace(default_settings(1), gc_freeze_after_prepare=freeze)
    worker = WorkerHandle.open(DeclaresEnvironment(), checkpoint.model, cpu_target,
                               sine_batch(1, 50, 0), settings, 300.0)
    try:
        frozen = worker.facts().diagnostics["gc_frozen"]
    finally:
        worker.close()
    assert (frozen > 10_000) if freeze else (frozen == 0)


def _short_run(checkpoint, tmp_path: Path, processes: int, isolate: bool):
    """Eager and TorchScript at batch 1, checked at the timed shapes, with a tiny budget.
    Without isolation the "processes" are further handles in this one, which the CLI
    refuses but which lets a test watch every one of them from here."""
    from backends.registry import load_registry
    from harness.core.settings import default_settings
    from harness.engine.plan import Overrides, plan
    from harness.engine.runner import Runner
    from scenarios import DEFAULT

    registry = load_registry()
    the_plan = plan(DEFAULT, Overrides(backends=("eager", "torchscript"), batch_sizes=(1,),
                                       budget_s=0.05, params={"check_grid": "timed"}),
                    registry, workdir=tmp_path, isolate=isolate)
    config = the_plan.configs[0]
    config = replace(config, timing=replace(config.timing, processes=processes))
    return Runner(checkpoint.model, config, registry, default_settings()).run()


def test_every_worker_ends_its_memory_window_once_checked(checkpoint, tmp_path, monkeypatch):
    """A window left open samples memory on a thread of its own through every later request,
    a serving measurement's LoadGen tests among them: every process's window ends with its
    checks, not only the first's."""
    from harness.engine.handles import Served

    served, ended = [], []
    real_init, real_facts = Served.__init__, Served.facts

    def init(self, *args, **kwargs):
        served.append(self)
        real_init(self, *args, **kwargs)

    def facts(self):
        ended.append(self)
        return real_facts(self)

    monkeypatch.setattr(Served, "__init__", init)
    monkeypatch.setattr(Served, "facts", facts)
    _short_run(checkpoint, tmp_path, processes=2, isolate=False)
    assert len(served) == 4
    assert all(any(s is e for e in ended) for s in served)


@pytest.mark.parametrize("fails", ["its second worker's preparation", "its first worker's check"])
def test_later_workers_start_side_by_side_and_a_failed_backend_s_are_stopped(checkpoint, tmp_path,
                                                                              monkeypatch, fails):
    """The first worker of each backend opens alone, as its start-up and preparation are
    measured; later ones, whose are not, all start at once, before the first ones' checks,
    and are checked in turn. A backend that fails has the workers it already started
    stopped at once, never used."""
    from harness.core.results import Outcome
    from harness.engine.runner import Runner

    log: list[tuple[str, str]] = []
    started: dict[str, int] = {}

    class RecordedWorker:
        """A worker that opens in this process and logs when it starts, opens and stops."""

        def __init__(self, backend, model, target, first, settings, timeout_s, with_step=False):
            started[backend.name] = started.get(backend.name, 0) + 1
            self.label = f"{backend.name}#{started[backend.name]}"
            self._open = lambda: LocalHandle.open(backend, model, target, first, with_step=with_step)
            log.append(("start", self.label))

        def ready(self):
            log.append(("ready", self.label))
            if self.label == "torchscript#2" and fails == "its second worker's preparation":
                raise BackendError("planted: the second worker failed to prepare")
            return self._open()

        def stop(self):
            log.append(("stop", self.label))

    real_check = Runner._check

    def check(self, backend, handle, ctx):
        log.append(("check", backend.name))
        if backend.name == "torchscript" and fails == "its first worker's check" \
                and log.count(("check", "torchscript")) == 1:
            return Outcome.failed("planted: the first worker's check failed")
        return real_check(self, backend, handle, ctx)

    monkeypatch.setattr(WorkerHandle, "start", RecordedWorker)
    monkeypatch.setattr(Runner, "_check", check)
    result = _short_run(checkpoint, tmp_path, processes=3, isolate=True)
    assert log[:8] == [("start", "eager#1"), ("ready", "eager#1"),
                       ("start", "torchscript#1"), ("ready", "torchscript#1"),
                       ("start", "eager#2"), ("start", "torchscript#2"),
                       ("start", "eager#3"), ("start", "torchscript#3")]
    assert log[8:10] == [("check", "eager"), ("check", "torchscript")]
    never_used = ["torchscript#3"] if fails == "its second worker's preparation" \
        else ["torchscript#2", "torchscript#3"]
    for label in never_used:
        assert ("ready", label) not in log
        assert log.index(("stop", label)) < log.index(("ready", "eager#3"))
    rows = {row.backend: row for row in result.rows}
    assert rows["eager"].outcome.status == "ok" and rows["eager"].load.processes == 3
    assert "planted" in rows["torchscript"].outcome.reason


def test_starting_a_worker_does_not_wait_for_its_imports(cpu_target, process_settings):
    """A model's arrays larger than a pipe's buffer, sent with the process's arguments, would
    hold ``start`` until the worker had imported enough to read them; later workers could then
    not start side by side."""
    from harness.core.model import LSTMPredictor, ModelConfig

    model = LSTMPredictor(ModelConfig(hidden_size=512)).eval()  # 4 MB of weights
    x = sine_batch(2, 50, 3)
    began = time.perf_counter()
    worker = WorkerHandle.start(EagerBackend(), model, cpu_target, x, process_settings, 120)
    returned_s = time.perf_counter() - began
    try:
        worker.ready()
        assert returned_s < worker.info.startup_s / 4, (returned_s, worker.info.startup_s)
        local = LocalHandle.open(EagerBackend(), model, cpu_target, x)
        np.testing.assert_array_equal(worker.outputs(FORWARD, x), local.outputs(FORWARD, x))
    finally:
        worker.close()

"""Load accounting: the counters, the arithmetic, and a real neighbour taking a core."""

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from harness.cli.main import main
from harness.core import load
from harness.core.load import (
    MIN_CANARY_ROUNDS,
    CpuSample,
    LoadMeter,
    RoundLoad,
    busiest,
    canary_s,
    canary_spread,
    canary_threads,
    foreign_cores,
    own_cpu_s,
    process_cpu_s,
    process_times,
    thread_cpu_s,
)
from harness.core.results import LoadSummary, RunResult, RunVerdict, Verdict, merge_results
from harness.core.settings import physical_cores
from harness.core.stats import hierarchical_median_ci, median_ci, summarize
from harness.core.timing import Measurement, Timer, TimingConfig, combine, measure_interleaved
from harness.engine.runner import alone_measurement, load_summary, speedup_over
from harness.workloads.base import Alone
from reports.columns import verdict_text
from tests.results_fixture import measured_row

ROOT = Path(__file__).resolve().parent.parent
LINUX = Path("/proc/stat").exists()


def test_foreign_cores_is_busy_time_less_the_runs_own_plus_steal_over_wall():
    before = CpuSample(wall=10.0, busy=100.0, steal=1.0, own={1: 30.0, 2: 10.0})
    after = CpuSample(wall=12.0, busy=103.5, steal=1.5, own={1: 31.5, 2: 10.5})
    # 3.5 s busy, 2 s of it the run's own, 0.5 s stolen, over 2 s of wall time
    assert foreign_cores(before, after) == pytest.approx((3.5 - 2.0 + 0.5) / 2.0)
    # the run's own time read slightly high never makes the load negative
    assert foreign_cores(before, CpuSample(12.0, 101.0, 1.0, {1: 33.0, 2: 10.0})) == 0.0


def test_the_runs_own_time_is_each_threads_change_so_a_thread_that_ends_takes_only_its_own():
    before = CpuSample(wall=0.0, busy=0.0, steal=0.0, own={1: 5.0, 2: 30.0})
    # thread 2 (a worker closed when its backend failed) is gone; thread 3 started meanwhile
    after = CpuSample(wall=1.0, busy=1.0, steal=0.0, own={1: 5.6, 3: 0.3})
    assert own_cpu_s(before, after) == pytest.approx(0.6 + 0.3)
    # the ended thread's 30 s before the round are not taken for outside work in it
    assert foreign_cores(before, after) == pytest.approx(0.1)


def test_busiest_names_the_processes_outside_the_run_by_cpu_share():
    before = {1: ("init", 5.0), 10: ("harness", 1.0), 20: ("spinner", 0.0), 30: ("idle", 2.0)}
    after = {1: ("init", 5.1), 10: ("harness", 3.0), 20: ("spinner", 1.9), 30: ("idle", 2.0),
             40: ("new", 9.0)}
    shares = busiest(before, after, wall_s=2.0, exclude=[10])
    assert [(s.pid, s.name) for s in shares] == [(20, "spinner"), (1, "init")]
    assert shares[0].cores == pytest.approx(0.95)


def _steady_canaries(n: int, seed: int = 0) -> np.ndarray:
    return 1e-4 * np.exp(np.random.default_rng(seed).normal(0.0, 0.005, n))


def test_the_canary_spread_reads_a_host_that_keeps_changing_speed_not_a_slow_moment():
    steady = _steady_canaries(200)
    assert canary_spread(steady) < 1.02
    # a host that moves the machine between two speeds 30% apart
    switching = np.concatenate([steady[:100], steady[100:] * 1.3])
    assert canary_spread(switching) == pytest.approx(1.3, rel=0.03)
    # one slow canary in ten (the run's own threads waking beside it) is a moment, not a host
    spiky = steady.copy()
    spiky[::10] *= 1.5
    assert canary_spread(spiky) < 1.03
    assert canary_spread(steady[:MIN_CANARY_ROUNDS - 1]) is None
    assert canary_spread(steady[:MIN_CANARY_ROUNDS]) is not None


def _rows_timed_together(canaries_s: np.ndarray, verdict: Verdict = Verdict.VALID,
                         best_s: float | None = None) -> tuple:
    """Two backends' rows timed in the same rounds, as the runner writes them: each row
    carries every round's canary, relative to the run's best (``best_s``, else theirs)."""
    n, best_s = len(canaries_s), best_s or float(canaries_s.min())
    ms = np.full(n, 1.0)
    load = LoadSummary(verdict, 0.0, 1.0, 0, 1, [0.0] * n, list(canaries_s / best_s), [0] * n)
    return tuple(replace(measured_row(name, 64, ms, ms), load=load) for name in ("eager", "onnxruntime"))


def _judge(rows: tuple, best_s: float, limit: float = 1.06) -> RunVerdict:
    return RunVerdict.of(rows, 0.4, 0.25, limit, best_s, canary_threads=2)


def test_a_run_is_unsteady_when_its_canary_spread_passes_the_limit_each_round_counted_once():
    steady = _steady_canaries(40)
    judged = _judge(_rows_timed_together(steady), steady.min())
    assert judged.verdict is Verdict.VALID and judged.canary_spread < 1.02
    assert judged.canary_rounds == 40  # the two rows' rounds are the same 40
    switching = _steady_canaries(40) * np.repeat([1.0, 1.3], 20)
    judged = _judge(_rows_timed_together(switching), switching.min())
    assert judged.verdict is Verdict.UNSTEADY and judged.canary_spread == pytest.approx(1.3, rel=0.03)
    assert _judge(_rows_timed_together(switching), switching.min(), limit=1.5).verdict is Verdict.VALID
    # another shape's rounds count beside these; a contended row decides the verdict first
    other_shape = _steady_canaries(40, seed=1) * np.repeat([1.0, 1.3], 20)
    both = _rows_timed_together(switching) + _rows_timed_together(other_shape, Verdict.CONTENDED)
    judged = _judge(both, switching.min())
    assert judged.verdict is Verdict.CONTENDED and judged.canary_rounds == 80
    # ... yet the host's unsteadiness is still told, and gated on its own
    assert judged.host_unsteady
    result = RunResult({}, {}, {}, {}, rows=both, checks=(), verdict=judged)
    assert result.contended and result.unsteady
    assert "The host was also unsteady (the canary GEMM's upper-quartile time" in \
        verdict_text(result.to_dict())
    few = _judge(_rows_timed_together(switching[:MIN_CANARY_ROUNDS - 1]), switching.min())
    assert few.verdict is Verdict.VALID and few.canary_spread is None
    # rows without a load account add nothing; a load that could not be read is unchecked
    unmeasured = tuple(replace(row, load=None) for row in _rows_timed_together(steady))
    assert _judge(unmeasured + _rows_timed_together(switching), switching.min()).canary_rounds == 40
    unread = tuple(replace(row, load=replace(row.load, verdict=Verdict.UNCHECKED))
                   for row in _rows_timed_together(switching))
    assert _judge(unread, switching.min()).verdict is Verdict.UNCHECKED
    steady_contended = _judge(_rows_timed_together(steady, Verdict.CONTENDED), steady.min())
    assert not steady_contended.host_unsteady and "unsteady" not in \
        verdict_text({"verdict": steady_contended.to_dict()})


def test_runs_merged_into_one_result_are_judged_on_one_scale():
    """Each run's rows carry canaries relative to its own best: a host that slowed the
    machine by 30% between two steady runs (two dtypes, say) makes the whole unsteady."""
    runs = []
    for level, seed in ((1.0, 0), (1.3, 1)):
        canaries = _steady_canaries(40, seed) * level
        rows = _rows_timed_together(canaries)
        runs.append(RunResult({}, {}, {}, {"dtype": "fp32"}, rows, (), _judge(rows, canaries.min())))
    assert [run.verdict.verdict for run in runs] == [Verdict.VALID, Verdict.VALID]
    merged = merge_results(runs)
    assert merged.verdict.verdict is Verdict.UNSTEADY and merged.verdict.canary_rounds == 80
    assert merged.verdict.canary_spread == pytest.approx(1.3, rel=0.03)
    assert merged.verdict.canary_best_s == runs[0].verdict.canary_best_s
    assert merged.verdict.canary_threads == 2
    slower = [row.load.canary_rel for row in merged.rows[2:]]
    assert slower == pytest.approx([1.3 * runs[1].rows[0].load.canary_rel] * 2, rel=0.02)


@pytest.mark.skipif(physical_cores() < 2, reason="needs two cores for a canary on two threads")
@pytest.mark.skipif(not LINUX, reason="reads the threads' CPU time from /proc, which only Linux has")
def test_the_canary_runs_on_as_many_threads_as_the_backends_compute_with():
    """A host that stalls one core stalls every barrier of a two-thread backend, and only a
    canary that runs on both threads stalls with it. Each thread it runs on spends CPU time:
    one thread works on one, two on two. NumPy's BLAS is held to one thread, as the harness
    holds it."""
    before = torch.get_num_threads()
    working = {}
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            for threads in (1, 2):
                torch.set_num_threads(threads)
                assert canary_threads() == threads
                canary_s()
                cpu_s, began = thread_cpu_s(os.getpid()), time.perf_counter()
                while time.perf_counter() < began + 0.5:
                    canary_s()
                wall_s = time.perf_counter() - began
                spent = {tid: s - cpu_s.get(tid, 0.0) for tid, s in thread_cpu_s(os.getpid()).items()}
                # a thread that worked for 40% of the time or more: one a busy neighbour shares
                # its core with still does (the process's total would fall short), and a pool
                # another test left spinning for its last 0.1 s does not
                working[threads] = sum(s >= 0.4 * wall_s for s in spent.values())
    finally:
        torch.set_num_threads(before)
    assert working == {1: 1, 2: 2}


@pytest.mark.parametrize("verdict, said", [
    ({}, "the host's steadiness not judged"),  # a results file from before it was judged
    ({"max_canary_spread": 1.06, "canary_spread": None, "canary_rounds": 12},
     "too few rounds (12) to judge the host's steadiness"),
    ({"max_canary_spread": 1.055, "canary_spread": 1.04, "canary_rounds": 200},
     "upper-quartile time 1.040× its lower-quartile over 200 rounds; unsteady above 1.055×"),
    ({"max_canary_spread": 1.06, "canary_spread": 1.02, "canary_rounds": 90, "canary_threads": 2},
     "upper-quartile time 1.020× its lower-quartile over 90 rounds on 2 threads; unsteady above 1.06×"),
])
def test_the_valid_verdict_says_what_the_canary_made_of_the_host(verdict, said):
    line = verdict_text({"verdict": {"verdict": "valid", "max_foreign_cores": 0.4,
                                     "max_set_aside": 0.25, **verdict}})
    assert line.startswith("verdict: valid (no timed row had outside work above 0.4 cores") and said in line


@pytest.mark.skipif(not LINUX, reason="load accounting reads /proc, which only Linux has")
def test_the_runs_own_cpu_time_counts_every_thread_in_nanoseconds():
    start, cpu_start = process_cpu_s(os.getpid()), time.process_time()
    while time.process_time() < cpu_start + 0.2:  # 0.2 s of CPU, however long the wall takes
        pass
    spent, cpu_spent = process_cpu_s(os.getpid()) - start, time.process_time() - cpu_start
    # schedstat (every thread, in nanoseconds) counts the CPU the kernel's process clock does
    assert spent == pytest.approx(cpu_spent, abs=0.02)
    assert process_cpu_s(2**22 + 12345) == 0.0  # a pid that cannot exist: nothing, no error
    assert os.getpid() in process_times()


@pytest.mark.skipif(not LINUX, reason="load accounting reads /proc, which only Linux has")
def test_a_spinning_neighbour_shows_as_foreign_load_and_this_process_does_not():
    meter = LoadMeter([os.getpid()])

    def spin_here(seconds: float) -> float:
        before = meter.sample()
        end_at = time.perf_counter() + seconds
        while time.perf_counter() < end_at:
            pass
        return foreign_cores(before, meter.sample())

    own = spin_here(0.5)
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        before = meter.sample()
        time.sleep(0.5)
        foreign = foreign_cores(before, meter.sample())
    finally:
        neighbour.kill()
        neighbour.wait()
    assert own < 0.4  # this process's own spinning is not foreign
    assert foreign > 0.7  # the neighbour's is, about one core of it


@pytest.mark.skipif(not LINUX, reason="load accounting reads /proc, which only Linux has")
def test_a_worker_of_the_run_that_ends_between_samples_is_not_outside_work():
    worker = subprocess.Popen([sys.executable, "-c", SPIN_THEN_WAIT])
    try:
        assert _wait_for_cpu(worker.pid, 0.5)
        meter = LoadMeter([os.getpid(), worker.pid])
        before = meter.sample()
        worker.kill()  # as a failed backend's worker is closed in the middle of a round
        worker.wait()
        time.sleep(0.3)
        foreign = foreign_cores(before, meter.sample())
    finally:
        worker.kill()
        worker.wait()
    assert foreign < 0.4  # its half second of work before the round is not the round's


def test_without_the_threads_schedstat_the_load_is_not_measured_rather_than_all_outside(
        tmp_path, monkeypatch):
    (tmp_path / "stat").write_text("cpu  100 0 50 1000 0 0 0 3 0 0\n")
    # a kernel without schedstat: the run's threads are listed, their time is not
    (tmp_path / "self" / "task" / "1").mkdir(parents=True)
    (tmp_path / str(os.getpid()) / "task" / "1").mkdir(parents=True)
    monkeypatch.setattr("harness.core.load.PROC", tmp_path)
    assert not LoadMeter([os.getpid()]).available
    (tmp_path / str(os.getpid()) / "task" / "1" / "schedstat").write_text("250000000 0 0\n")
    assert LoadMeter([os.getpid()]).available


SPIN_THEN_WAIT = (
    "import time\nend = time.perf_counter() + 0.6\nwhile time.perf_counter() < end: pass\n"
    "time.sleep(60)")


def _wait_for_cpu(pid: int, seconds: float) -> bool:
    """Whether ``pid`` has used ``seconds`` of CPU within ten seconds of waiting."""
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline:
        if process_cpu_s(pid) >= seconds:
            return True
        time.sleep(0.05)
    return False


def _groups(rng, k: int, n: int, between: float, within: float) -> tuple[np.ndarray, np.ndarray]:
    offsets = rng.normal(0.0, between, k)
    values = np.concatenate([offsets[g] + rng.normal(0.0, within, n) for g in range(k)])
    return values, np.repeat(np.arange(k), n)


@pytest.mark.slow
def test_the_two_level_ci_covers_a_known_between_process_spread():
    """Processes whose medians differ (between-process sd 1) and rounds within each (sd 1):
    the true median is 0. Resampling rounds alone ignores the processes and covers 0 far
    less often than 95%; resampling both levels comes near it."""
    rng = np.random.default_rng(7)
    trials, covered, naive = 200, 0, 0
    for _ in range(trials):
        values, groups = _groups(rng, k=6, n=20, between=1.0, within=1.0)
        lo, hi = hierarchical_median_ci(values, groups, n_boot=400, seed=int(rng.integers(1e9)))
        covered += lo <= 0.0 <= hi
        lo, hi = median_ci(values)
        naive += lo <= 0.0 <= hi
    assert covered / trials >= 0.80
    assert naive / trials <= 0.55


def test_without_a_between_process_spread_the_two_level_ci_is_no_wider_than_needed():
    rng = np.random.default_rng(3)
    widths = []
    for _ in range(50):
        values, groups = _groups(rng, k=2, n=40, between=0.0, within=1.0)
        lo, hi = hierarchical_median_ci(values, groups, n_boot=400)
        o_lo, o_hi = median_ci(values)
        widths.append((hi - lo) / (o_hi - o_lo))
    assert 0.7 < np.median(widths) < 1.4
    one = np.ones(10)
    assert hierarchical_median_ci(one, np.zeros(10)) == median_ci(one)  # one process: as before
    with pytest.raises(ValueError):
        hierarchical_median_ci(one, np.zeros(9))


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="load accounting reads /proc, which only Linux has")
def test_a_run_beside_a_spinning_process_says_contended_names_it_and_exits_3(cached, tmp_path):
    out = tmp_path / "busy.json"
    env = {**os.environ, "LSTM_HARNESS_CACHE": str(cached)}
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        done = subprocess.run([sys.executable, "-m", "harness", "run", "--backends", "eager,onnxruntime",
                               "--batch-sizes", "64", "--budget", "0.3", "--processes", "1",
                               "--no-history", "--out", str(out)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
    finally:
        neighbour.kill()
        neighbour.wait()
    assert done.returncode == 3, done.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["verdict"]["verdict"] == "contended"
    assert neighbour.pid in [p["pid"] for p in data["verdict"]["busiest"]]
    rows = [r for r in data["rows"] if r["status"] == "ok"]
    assert rows and all(r["verdict"] == "contended" and r["foreign_load"] > 0.4 for r in rows)
    stderr = " ".join(done.stderr.split())
    assert "verdict: CONTENDED" in stderr and "busiest outside processes: pid" in stderr
    # the banner names the three busiest; on a machine this test has to itself, the spinner
    if data["verdict"]["busiest"][0]["pid"] == neighbour.pid:
        assert f"pid {neighbour.pid} python" in stderr
    allowed = subprocess.run([sys.executable, "-m", "harness", "report", str(out)], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120, check=False)
    assert allowed.returncode == 0 and "CONTENDED" in allowed.stdout


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="load accounting reads /proc, which only Linux has")
def test_a_run_past_its_canary_spread_limit_says_unsteady_and_exits_3(cached, tmp_path, capsys):
    out = tmp_path / "unsteady.json"
    # No host keeps a canary's quartiles equal: with a limit of 1 every judged run is unsteady.
    # The budget lets both rows reach MIN_CANARY_ROUNDS together in rounds of min_metered_s.
    run = ["run", "--backends", "eager,torchscript", "--batch-sizes", "1,4", "--budget", "1.5",
           "--processes", "1", "--no-isolate", "--no-history", "--check-grid", "timed",
           "--max-canary-spread", "1", "--out", str(out)]
    for _ in range(3):  # again, should something else take the machine: contended comes first
        assert main(run) == 3
        data = json.loads(out.read_text())
        verdict = data["verdict"]
        if verdict["verdict"] != "contended":
            break
    assert verdict["verdict"] == "unsteady" and verdict["max_canary_spread"] == 1
    assert verdict["canary_rounds"] >= MIN_CANARY_ROUNDS and verdict["canary_spread"] > 1
    # every row's canary is relative to the fastest row's, whose time the verdict keeps
    assert verdict["canary_best_s"] > 0
    assert verdict["canary_threads"] == data["environment"]["threads"]["torch_intra_op"]
    assert min(r["canary_rel"] for r in data["rows"]) == pytest.approx(1)
    said = " ".join(capsys.readouterr().err.split())
    assert "verdict: UNSTEADY: the host kept changing this machine's speed" in said
    assert f"over {verdict['canary_rounds']} rounds on {verdict['canary_threads']} thread" in said
    assert main(["report", str(out)]) == 0 and "UNSTEADY" in capsys.readouterr().out
    assert main([*run, "--allow-unsteady", "--allow-contended"]) == 0


class _ScriptedMeter:
    """A meter whose rounds saw the given foreign load, in cores, one value per round."""

    def __init__(self, per_round: list[float]) -> None:
        self.per_round, self.calls, self.busy = list(per_round), 0, 0.0

    def sample(self) -> CpuSample:
        if self.calls % 2:  # the sample after a round: one second of wall time has passed
            self.busy += self.per_round[self.calls // 2]
        self.calls += 1
        return CpuSample(wall=float(self.calls // 2), busy=self.busy, steal=0.0, own={})


@pytest.mark.parametrize("per_round, kept", [
    ([0.0, 1.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 7),  # enough clean rounds: the contended one dropped
    ([0.0, 1.5, 1.5, 1.5], 4),  # too few: every round is kept, and the row is contended
])
def test_the_foreign_load_of_a_row_counts_every_round_it_took_once(per_round, kept):
    # a budget no round comes near, so that only max_rounds ends it, however slow the machine
    cfg = TimingConfig(warmup_s=0.0, min_round_s=1e-5, min_metered_s=0.0, settle_s=0.0,
                       budget_s=60.0, max_rounds=len(per_round), target_ci=1e-9)
    m = measure_interleaved({"a": Timer(lambda _: None, [0])}, cfg,
                            meter=_ScriptedMeter(per_round))["a"]
    assert m.rounds_taken == len(per_round) and len(m.samples_s) == kept
    assert len(m.set_aside) == sum(load > cfg.max_foreign_cores for load in per_round)
    summary = load_summary(m, cfg.max_set_aside, best_canary=None)
    assert summary.foreign_load == pytest.approx(np.mean(per_round))
    assert summary.verdict is (Verdict.CONTENDED if kept == len(per_round) else Verdict.VALID)


def test_a_metered_rounds_turns_together_last_as_long_as_the_load_counters_need():
    cfg = TimingConfig(warmup_s=0.0, min_round_s=1e-3, min_metered_s=0.1, settle_s=0.0,
                       budget_s=60.0, max_rounds=3, target_ci=1e-9)

    def timers() -> dict[str, Timer]:
        # each call takes exactly 1 ms of a clock of the test's own: a slow moment of the
        # machine during calibration would otherwise shorten the rounds it calibrated
        now = [0.0]

        def call(_: object) -> None:
            now[0] += 1e-3
        return {name: Timer(call, [0], clock=lambda: now[0]) for name in ("a", "b")}

    def round_s(m) -> float:
        return m.calls_per_round * m.summary.median

    metered = measure_interleaved(timers(), cfg, meter=_ScriptedMeter([0.0] * 3))
    assert all(round_s(m) >= 0.1 / 2 for m in metered.values())  # two turns make a round
    unmetered = measure_interleaved(timers(), cfg)  # no counters to read: the round's own floor
    assert all(round_s(m) < 0.02 for m in unmetered.values())


def test_a_row_pooled_from_processes_is_contended_when_any_one_of_them_was():
    def one_process(per_round: list[float], process: int):
        cfg = TimingConfig(warmup_s=0.0, min_round_s=1e-5, min_metered_s=0.0, settle_s=0.0,
                           budget_s=60.0, max_rounds=len(per_round), target_ci=1e-9)
        return measure_interleaved({"a": Timer(lambda _: None, [0])}, cfg,
                                   meter=_ScriptedMeter(per_round), process=process)["a"]

    cfg_target = TimingConfig().target_ci
    quiet = one_process([0.0] * 45, process=0)
    busy = one_process([1.5] * 12, process=1)  # no clean round: it keeps all twelve
    assert not quiet.contended(0.25) and busy.contended(0.25) and len(busy.samples_s) == 12
    # 12 of the 57 rounds (21%) were set aside in all, under the 25% limit, yet a fifth of
    # the row's samples were taken beside the outside work
    assert combine([quiet, busy], cfg_target).contended(0.25)
    assert not combine([quiet, one_process([0.0] * 12, process=1)], cfg_target).contended(0.25)


def test_a_served_row_is_contended_when_any_one_of_its_processes_was():
    quiet, busy = RoundLoad(0.0, 1e-3, 1.0), RoundLoad(1.5, 1e-3, 1.0)
    alone = Alone(samples_s=(1e-3,) * 57, processes=(0,) * 45 + (1,) * 12, fields={},
                  stop_reason="loadgen")

    def measured(second: RoundLoad):
        probes = [SimpleNamespace(loads=[quiet] * 45, runs=45),
                  SimpleNamespace(loads=[second] * 12, runs=12)]
        return alone_measurement(alone, probes, max_foreign_cores=0.4)

    busy_second = measured(busy)
    # 12 of the 57 runs (21%) were contended in all, under the 25% limit, but every one of
    # the second process's was
    assert busy_second.rounds_taken == 57 and len(busy_second.set_aside) == 12
    assert busy_second.contended(0.25)
    assert not measured(quiet).contended(0.25)


def _two_processes(rng: np.random.Generator, centres: tuple[float, float], n: int = 60,
                   sd: float = 0.02) -> tuple[np.ndarray, tuple[int, ...]]:
    """``n`` log-normal rounds from each of two processes whose medians are ``centres``."""
    values = np.concatenate([c * np.exp(rng.normal(0.0, sd, n)) for c in centres])
    return values, (0,) * n + (1,) * n


def test_a_pooled_rows_speedup_ci_spans_its_processes_not_only_their_rounds():
    # eager's rounds are alike in both processes; the backend's are 5% slower in the second,
    # a difference its 120 rounds alone would read as noise around the pooled median
    rng = np.random.default_rng(3)
    eager, processes = _two_processes(rng, (2e-3, 2e-3))
    own, _ = _two_processes(rng, (1e-3, 1.05e-3))

    def measurement(samples: np.ndarray) -> Measurement:
        return Measurement(samples_s=tuple(samples), calls_per_round=1, stop_reason="ci",
                           summary=summarize(samples, processes), processes=processes)

    speedup = speedup_over(measurement(eager), measurement(own))
    ratios = eager / own
    per_process = [float(np.median(ratios[np.array(processes) == p])) for p in (0, 1)]
    assert speedup.speedup_ci95_low < min(per_process) and speedup.speedup_ci95_high > max(per_process)
    rounds_alone = median_ci(ratios)
    assert speedup.speedup_ci95_high - speedup.speedup_ci95_low > 2 * (rounds_alone[1] - rounds_alone[0])


def test_a_served_rows_ci_spans_its_processes_not_only_their_rounds():
    rng = np.random.default_rng(4)
    samples, processes = _two_processes(rng, (1e-3, 1.05e-3))
    alone = Alone(samples_s=tuple(samples), processes=processes, fields={}, stop_reason="loadgen")
    probes = [SimpleNamespace(loads=[], runs=60), SimpleNamespace(loads=[], runs=60)]
    summary = alone_measurement(alone, probes, max_foreign_cores=0.4).summary
    per_process = [float(np.median(samples[:60])), float(np.median(samples[60:]))]
    assert summary.ci95_low < min(per_process) and summary.ci95_high > max(per_process)


def test_steal_and_busy_time_are_read_from_the_first_line_of_proc_stat(monkeypatch, tmp_path):
    (tmp_path / "stat").write_text("cpu  100 5 50 1000 10 3 2 7 0 0\ncpu0 50 2 25 500 5 1 1 3 0 0\n")
    monkeypatch.setattr(load, "PROC", tmp_path)
    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    # user, nice, system, irq and softirq are busy; idle and iowait are not; steal on its own
    assert load._system_times() == (pytest.approx(160 * tick), pytest.approx(7 * tick))

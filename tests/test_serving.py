"""Serving: the dynamic batcher, the rate search, LoadGen's verdicts on real LoadGen tests,
the refusal of bad settings, and (slow) the server, single-stream and offline scenarios end
to end with plugin backends that are slow or wrong under load."""

import json
import sys
import threading
import time

import numpy as np
import pytest

from backends.registry import load_registry
from harness.cli.main import main
from harness.core.agreement import DEFAULT_TOLERANCES
from harness.core.load import canary_s, canary_spread
from harness.core.settings import default_settings, physical_cores
from harness.core.timing import TimingConfig
from harness.engine.plan import Overrides, plan
from harness.engine.runner import Runner
from harness.workloads import WORKLOADS
from harness.workloads.batching import Batching, BatchQueue
from harness.workloads.loadgen_sut import Capacity, LoadGenTest, loadgen_missing
from harness.workloads.rate_search import find_peak
from scenarios import PRESETS
from tests.results_fixture import undeclared

TOL = DEFAULT_TOLERANCES["fp32"]
WINDOWS = np.random.default_rng(0).standard_normal((256, 50, 1)).astype(np.float32)
EXPECTED = WINDOWS[:, -1, :].astype(np.float64)  # what the fake sessions below answer


class LastSample:
    """A session whose answer is each window's last sample: instant and exactly known."""

    def __init__(self, delay_s: float = 0.0, bias: float = 0.0, fail_after: int | None = None):
        self.delay_s, self.bias, self.fail_after = delay_s, bias, fail_after
        self.calls, self.sizes = 0, []

    def to_native(self, x):
        return x

    def run(self, x):
        self.calls += 1
        self.sizes.append(len(x))
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("injected failure under load")
        if self.delay_s:
            time.sleep(self.delay_s)
        return x[:, -1, :] + self.bias

    def synchronize(self):
        pass

    def to_numpy(self, y):
        return np.asarray(y, dtype=np.float64)


def _test(scenario: str, max_batch: int = 8, **targets) -> LoadGenTest:
    return LoadGenTest(scenario, WINDOWS, EXPECTED, TOL, Batching(max_batch, 0.0), full=False,
                       min_duration_s=0.2, min_query_count=targets.pop("queries", 64), **targets)


# -- the batcher ---------------------------------------------------------------------------
def test_batches_never_exceed_the_maximum_and_keep_arrival_order():
    queue = BatchQueue(Batching(max_batch=4, max_wait_s=0.0))
    queue.put((i, 100 + i) for i in range(10))
    queue.close()
    batches = []
    while (batch := queue.next_batch()) is not None:
        batches.append([q.index for q in batch])
    assert batches == [[100, 101, 102, 103], [104, 105, 106, 107], [108, 109]]
    assert queue.sizes == {4: 2, 2: 1}


def test_a_query_that_waited_long_enough_leaves_at_once_with_what_is_queued():
    now, readings = [0.0], [0]

    def clock() -> float:  # a microsecond per reading: a batcher that waits reads it often
        now[0] += 1e-6
        readings[0] += 1
        return now[0]

    queue = BatchQueue(Batching(max_batch=64, max_wait_s=1e-3), clock=clock)
    queue.put([(1, 1), (2, 2)])
    now[0] += 2e-3  # the oldest has waited past max_wait while the last batch ran
    readings[0] = 0
    assert [q.id for q in queue.next_batch()] == [1, 2]
    assert readings[0] < 10  # no wait: a 1 ms wait would take about a thousand readings


def test_a_lone_query_waits_for_company_up_to_the_maximum_wait():
    queue = BatchQueue(Batching(max_batch=4, max_wait_s=0.3))
    start = time.perf_counter()
    queue.put([(1, 1)])
    threading.Timer(0.05, lambda: queue.put([(2, 2)])).start()
    batch = queue.next_batch()
    waited = time.perf_counter() - start
    assert [q.id for q in batch] == [1, 2]  # the second joined the first
    assert waited >= 0.3 - 1e-3  # and the batch left only at the first query's deadline


def test_a_full_batch_leaves_without_waiting_for_the_deadline():
    queue = BatchQueue(Batching(max_batch=2, max_wait_s=30.0))
    queue.put([(1, 1), (2, 2), (3, 3)])
    start = time.perf_counter()
    assert len(queue.next_batch()) == 2
    assert time.perf_counter() - start < 15.0  # far from the 30 s deadline
    queue.close()
    assert [q.id for q in queue.next_batch()] == [3] and queue.next_batch() is None


# -- the search ----------------------------------------------------------------------------
@pytest.mark.parametrize("start", [10.0, 1234.0, 9000.0])
def test_the_search_finds_the_highest_passing_rate_within_its_precision(start):
    limit = 1234.0
    search = find_peak(lambda rate: (rate <= limit, rate), start, precision=0.05, max_trials=20)
    assert search.converged
    assert limit / 1.05 <= search.best.rate <= limit
    assert all(t.passed == (t.rate <= limit) for t in search.trials)
    assert len(search.trials) <= 20


def test_the_search_stops_at_its_floor_and_its_trial_budget():
    never = find_peak(lambda rate: (False, None), 400.0, min_rate=50.0, max_trials=20)
    assert never.best is None and not never.converged
    assert min(t.rate for t in never.trials) == 50.0 and len(never.trials) == 4  # 400, 200, 100, 50
    capped = find_peak(lambda rate: (rate <= 1e6, None), 1.0, max_trials=4)
    assert len(capped.trials) == 4 and not capped.converged and capped.best.rate == 8.0


def test_a_refined_search_starts_near_its_first_guess():
    search = find_peak(lambda rate: (rate <= 1000.0, None), 980.0, factor=1.25, precision=0.05)
    assert [round(t.rate) for t in search.trials[:2]] == [980, 1225]
    assert len(search.trials) <= 5 and 1000 / 1.05 <= search.best.rate <= 1000


def test_the_server_search_starts_from_the_warmed_up_capacity():
    server = WORKLOADS["server"]()  # a 5 ms bound
    # full batches of 64 in 20 ms would break the bound: start from one at a time, 2 ms each
    assert server.first_rate(Capacity(batch1_s=2e-3, max_batch_s=20e-3, max_batch=64)) == 250.0
    # 64 in 2 ms fits: half of 32,000/s, but no higher than the batcher's own cost allows
    assert server.first_rate(Capacity(batch1_s=1e-4, max_batch_s=2e-3, max_batch=64)) == 2000.0
    assert server.first_rate(Capacity(batch1_s=2e-3, max_batch_s=2e-3, max_batch=2)) == 500.0


# -- one LoadGen test, against a session that is fast, slow, wrong or broken ------------------
def test_a_server_test_well_under_its_bound_is_valid_and_every_answer_is_checked():
    session = LastSample()
    result = _test("Server", target_qps=3000.0, latency_bound_s=0.05, queries=600).run(session)
    assert result.valid and result.invalid_reason is None
    assert result.answers.checked == result.queries == len(result.answer_s) >= 600
    assert result.answers.wrong == 0 and result.answers.agrees
    assert sum(size * n for size, n in result.batch_sizes.items()) == result.queries
    assert max(result.batch_sizes) <= 8 and max(session.sizes) <= 8
    assert 0 < result.latency_ms["50.00"] <= result.latency_ms["99.00"] < 50
    assert result.scheduled_qps == pytest.approx(3000.0, rel=0.2)


def test_a_server_test_over_its_bound_is_invalid_and_says_why():
    result = _test("Server", max_batch=1, target_qps=400.0, latency_bound_s=0.002).run(
        LastSample(delay_s=0.005))
    assert not result.valid
    assert result.latency_ms["99.00"] > 2.0
    assert "the latency bound was missed" in result.invalid_reason


def test_wrong_answers_under_load_are_counted_not_hidden():
    result = _test("Offline", target_qps=20000.0).run(LastSample(bias=1e-3))
    assert result.answers.checked > 0 and result.answers.wrong == result.answers.checked
    assert not result.answers.agrees and result.answers.max_abs_err == pytest.approx(1e-3, rel=1e-3)


def test_a_backend_that_raises_mid_test_fails_it_after_loadgen_has_finished():
    session = LastSample(fail_after=10)
    with pytest.raises(RuntimeError, match="injected failure under load"):
        _test("SingleStream", expected_latency_s=1e-4).run(session)
    assert session.calls == 11  # never called again after the failure


def test_single_and_multi_stream_queries_are_batched_as_loadgen_issues_them():
    single = _test("SingleStream", max_batch=8, expected_latency_s=1e-4).run(LastSample())
    assert single.valid and set(single.batch_sizes) == {1}  # the next query waits for the last
    assert single.completed_qps > 0  # queries per second, LoadGen's overhead included
    multi = _test("MultiStream", max_batch=8, expected_latency_s=1e-4, samples_per_query=8,
                  queries=600).run(LastSample())
    assert multi.valid and set(multi.batch_sizes) == {8} and multi.latency_ms["99.00"] > 0


# -- settings, availability ------------------------------------------------------------------
@pytest.mark.parametrize("argv, fragment", [
    (["--latency-bound-ms", "0"], "--latency-bound-ms expects a number > 0, got 0"),
    (["--latency-bound-ms", "-5"], "--latency-bound-ms expects a number > 0, got -5"),
    (["--max-wait-ms", "-1"], "--max-wait-ms expects a number >= 0, got -1"),
    (["--batch-sizes", "0"], "--batch-sizes expects integers >= 1, got 0"),
])
def test_bad_serving_settings_exit_2_with_one_line_before_any_work(argv, fragment, capsys,
                                                                    monkeypatch):
    monkeypatch.setattr("harness.cli.run.open_models", pytest.fail)  # no work may start
    assert main(["run", "--scenario", "server", *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in " ".join(err.split()) and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("line, fragment", [
    ("latency_bound_ms = 0",
     "key 'latency_bound_ms' must be a number of milliseconds > 0, at most 86400000 (a day), got 0"),
    ("max_wait_ms = -0.5",
     "key 'max_wait_ms' must be a number of milliseconds >= 0, at most 86400000 (a day), got -0.5"),
    ("batch_sizes = [0]", "key 'batch_sizes' must be a non-empty list of integers >= 1"),
    ("full = 1", "key 'full' must be true or false, got 1"),
])
def test_bad_serving_settings_in_a_scenario_file_exit_2(tmp_path, capsys, line, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(f'mode = "server"\n{line}\n')
    assert main(["run", "--scenario", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert fragment in err and "Traceback" not in err


def test_a_serving_flag_on_a_mode_without_that_setting_is_refused(capsys):
    assert main(["run", "--latency-bound-ms", "5"]) == 2  # the default mode is forward
    assert "'latency_bound_ms' must be a setting of mode 'forward'" in capsys.readouterr().err


def test_the_serving_presets_and_their_settings():
    modes = {name: PRESETS[name].mode for name in ("server", "single-stream", "multi-stream", "offline")}
    assert modes == {name: name for name in modes}
    server = WORKLOADS["server"]()
    assert (server.latency_bound_ms, server.full) == (5.0, False)
    assert WORKLOADS["multi-stream"]().samples_per_query == 8


@pytest.mark.parametrize("threads_flag, cores, expected", [
    (None, 2, {"server": 1, "single-stream": 2, "offline": 2, "forward": 2}),
    (None, 1, {"server": 1, "single-stream": 1, "offline": 1, "forward": 1}),
    (None, 16, {"server": 15, "single-stream": 16, "offline": 16, "forward": 16}),
    (2, 2, {"server": 2, "single-stream": 2, "offline": 2, "forward": 2}),
])
def test_a_server_run_leaves_loadgen_a_core_unless_threads_are_given(monkeypatch, threads_flag,
                                                                     cores, expected):
    """Server queries arrive while the backend computes, so LoadGen's threads need a core of
    their own; modes where LoadGen waits for each answer, and --threads, keep the rule."""
    import argparse

    from harness.cli.common import apply_settings
    from harness.core import settings

    monkeypatch.setattr(settings, "physical_cores", lambda: cores)
    args = argparse.Namespace(threads=threads_flag, ort_spinning=False)
    try:
        found = {mode: apply_settings(args, WORKLOADS[mode]()).intra_op_threads for mode in expected}
    finally:
        settings.apply(default_settings())
    assert found == expected


def test_without_loadgen_every_serving_row_says_unavailable_with_the_install_line(
        checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)  # import raises: not installed
    reason = loadgen_missing()
    assert "pip install -e '.[serving]'" in reason
    the_plan = plan(PRESETS["server"], Overrides(backends=("eager", "onnxruntime")), load_registry(),
                    workdir=tmp_path)
    result = Runner(checkpoint.model, the_plan.configs[0], load_registry(), default_settings()).run()
    assert [(r.backend, str(r.outcome.status), r.outcome.reason) for r in result.rows] == [
        ("eager", "unavailable", reason), ("onnxruntime", "unavailable", reason)]
    assert main(["doctor"]) == 0
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert any(line.startswith("│ server │ unavailable: MLPerf LoadGen") for line in lines)


# -- end to end (slow) -----------------------------------------------------------------------
def _scenario(tmp_path, **settings) -> str:
    """A scenario file: a preset with short tests (these tests judge behaviour, not speed)."""
    path = tmp_path / "serving.toml"
    path.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items()) + "\n")
    return str(path)


SERVER_BOUND_MS = 50.0


@pytest.fixture(scope="module")
def server_run(checkpoint, cache_dir, tmp_path_factory):
    """`run --scenario server` on eager and the 2 ms sleepy backend, at batch 1 and 16, under
    a 50 ms bound. A sleepy call answers in about 4 ms at the median (the sleep, eager's
    call, the hand-offs), close to the default 5 ms bound, where a shared 2-core CI machine's
    tail would decide; under 50 ms what limits it is the 500 calls a second its sleep
    allows, which is what the tests below are about."""
    tmp = tmp_path_factory.mktemp("server")
    out = tmp / "results.json"
    scenario = _scenario(tmp, extends="server", duration_s=0.5)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LSTM_HARNESS_CACHE", str(cache_dir))
        code = main(["run", "--scenario", scenario, "--plugin", "tests.plugins.serving_backends",
                     "--backends", "eager,sleepy", "--batch-sizes", "1,16", "--processes", "1",
                     "--latency-bound-ms", str(SERVER_BOUND_MS), "--allow-contended",
                     "--allow-unsteady", "--no-history", "--out", str(out)])
    return code, json.loads(out.read_text()), out


@pytest.mark.slow
def test_server_finds_a_valid_rate_per_backend_and_records_how(server_run):
    code, data, out = server_run
    assert code == 0 and undeclared(data) == set()
    assert data["environment"]["settings"]["intra_op_threads"] == max(1, physical_cores() - 1)
    rows = {(r["backend"], r["batch_size"]): r for r in data["rows"]}
    for row in rows.values():
        assert row["status"] == "ok" and row["agrees"] is True and row["mode"] == "server"
        assert row["loadgen_valid"] is True and row["max_qps"] > 0
        assert row["loadgen_p99_ms"] <= row["latency_bound_ms"] == SERVER_BOUND_MS
        assert row["max_wait_ms"] == 0.5 and row["full"] is False and row["min_duration_s"] == 0.5
        assert max(size for size, _ in row["batches_formed"]) <= row["batch_size"]
        assert row["responses_wrong"] == 0 and row["responses_checked"] >= 1024
        assert any(t["valid"] for t in row["search"]) and row["stop_reason"] in ("converged", "max_trials")
        # the rate reported is the highest VALID offered rate of its search
        assert row["max_qps"] == max(t["offered_qps"] for t in row["search"] if t["valid"])
        assert len(row["samples_ms"]) == row["rounds"] > 0
        logs = out.parent / "results-files"
        assert row["loadgen_logs"].startswith(str(logs))
        summary = (logs / row["loadgen_logs"]).joinpath("mlperf_log_summary.txt").read_text()
        assert "Result is : VALID" in summary


@pytest.mark.slow
def test_a_backend_sleeping_2_ms_per_call_sustains_a_correspondingly_lower_rate(server_run):
    """One batch at a time, a call that sleeps 2 ms caps the rate at 500 queries/s; eager,
    which answers one window in well under a millisecond, holds at least twice that here.
    With batches of up to 16 the sleep is shared, and the sleepy backend's rate rises."""
    _, data, _ = server_run
    rate = {(r["backend"], r["batch_size"]): r["max_qps"] for r in data["rows"]}
    assert rate["sleepy", 1] < 500.0
    assert rate["eager", 1] > 2 * rate["sleepy", 1]
    assert rate["sleepy", 16] > rate["sleepy", 1]


@pytest.mark.slow
def test_the_html_report_draws_latency_against_offered_rate_and_compare_matches_rows(
        server_run, tmp_path, capsys):
    _, data, out = server_run
    html = tmp_path / "report.html"
    assert main(["report", str(out), "--format", "html", "--output", str(html)]) == 0
    assert 'id="fig-serving"' in html.read_text()
    capsys.readouterr()
    assert main(["compare", str(out), str(out)]) == 0
    table = capsys.readouterr().out
    # every row matched, and compared by its rate (answer times at each run's own rate are not)
    assert "only in" not in table and table.count("unchanged") == len(data["rows"])
    assert table.count("max_qps") == 2 * len(data["rows"])


@pytest.mark.slow
def test_a_backend_wrong_under_load_fails_its_row_though_its_checks_passed(cached, tmp_path, capsys):
    out = tmp_path / "results.json"
    code = main(["run", "--scenario", _scenario(tmp_path, extends="offline", duration_s=0.5),
                 "--plugin", "tests.plugins.serving_backends", "--backends", "eager,wrong-under-load",
                 "--processes", "1", "--allow-contended", "--allow-unsteady", "--out", str(out)])
    assert code == 1
    data = json.loads(out.read_text())
    rows = {r["backend"]: r for r in data["rows"]}
    wrong, eager = rows["wrong-under-load"], rows["eager"]
    assert eager["agrees"] is True and eager["responses_wrong"] == 0
    assert wrong["agrees"] is False and wrong["responses_wrong"] > 0
    assert wrong["max_abs_err"] == pytest.approx(1e-3, rel=1e-2)
    checks = [c for c in data["checks"] if c["backend"] == "wrong-under-load"]
    assert all(c["agrees"] for c in checks if c["mode"] == "forward")  # fine when idle
    assert not all(c["agrees"] for c in checks if c["mode"] == "offline")  # wrong under load
    assert "✗" in capsys.readouterr().out


@pytest.mark.slow
def test_single_stream_p90_agrees_with_the_harness_batch_1_p90(checkpoint, cpu_target):
    """LoadGen's single-stream p90 against the p90 the harness's own timer gives the same
    eager session at batch 1, within 15%.

    Like with like: LoadGen times each query alone, so the harness's ``Timer`` takes one call
    per sample here (a run's rounds of ~30 calls average each call's jitter away). At the
    same time: the development VM's speed drifts by 10-30% between runs minutes apart, and
    by as much within seconds, so the two alternate in short blocks in one process: each
    LoadGen block's p90 is divided by the p90 of the harness's calls just before and just
    after it, and the median of those paired ratios is compared with 1 (as a run's speedups
    pair backends within rounds).
    What LoadGen adds is the system under test's hand-off, its thread to the
    batcher and back: 0.16-0.6 ms on that VM, as much as 20-50% of a 1 ms call at seq_len
    200, so the windows are 2000 long (a call of about 8 ms), where it is a few percent.
    15% is what the issue asks; a system under test that took 2 ms more per query fails.
    A host that stalls one core now and then stretches that hand-off most (it crosses
    cores), so where the harness's own canary, timed beside the blocks, calls the host
    unsteady, only a gross error is pinned: 35%, which a system under test that took twice
    as long per query fails."""
    from backends.eager import EagerBackend
    from backends.reference import ReferenceModel
    from harness.core.data import sine_batch
    from harness.core.timing import Timer

    session = EagerBackend().prepare(checkpoint.model, cpu_target)
    windows = sine_batch(64, 2000, seed=3).astype(np.float32)
    expected = ReferenceModel(checkpoint.model).forward(windows)
    timer = Timer(session.run, [session.to_native(windows[i:i + 1]) for i in range(4)],
                  sync=session.synchronize)
    timer.warm_up(0.2)  # calls_per_round stays 1: a sample is one call

    canaries = []

    def harness_block() -> list[float]:
        canaries.extend(canary_s() for _ in range(3))
        return [timer.round() for _ in range(120)]

    loadgen, harness = [], []
    before = harness_block()
    for _ in range(7):
        test = LoadGenTest("SingleStream", windows, expected, TOL, Batching(1, 0.0), full=False,
                           min_duration_s=0.5, min_query_count=256,
                           expected_latency_s=float(np.percentile(before, 90)))
        result = test.run(session)
        assert result.valid and result.answers.agrees
        after = harness_block()
        loadgen.append(result.percentile_ms("90.00") / 1e3)
        harness.append(float(np.percentile(before + after, 90)))
        before = after
    ratios = np.array(loadgen) / np.array(harness)
    steady = canary_spread(canaries) <= TimingConfig.max_canary_spread
    assert np.median(ratios) == pytest.approx(1.0, rel=0.15 if steady else 0.35), \
        (loadgen, harness, canary_spread(canaries))


@pytest.mark.slow
def test_multi_stream_runs_with_its_samples_per_query(cached, tmp_path):
    out = tmp_path / "results.json"
    assert main(["run", "--scenario", _scenario(tmp_path, extends="multi-stream", duration_s=0.3,
                                                samples_per_query=4),
                 "--backends", "eager", "--batch-sizes", "4", "--processes", "1",
                 "--allow-contended", "--allow-unsteady", "--out", str(out)]) == 0
    [row] = json.loads(out.read_text())["rows"]
    assert row["samples_per_query"] == 4 and row["loadgen_valid"] is True
    assert undeclared({"rows": [row]}) == set()
    assert {size for size, _ in row["batches_formed"]} == {4}  # each query is one batch

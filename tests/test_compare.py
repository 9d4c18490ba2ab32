"""Compare on synthetic samples: a real shift is caught, a shift inside noise is not."""

from __future__ import annotations

import numpy as np
import pytest

from harness.core.compare import Significance, compare_results, compare_samples, row_key
from harness.core.results import RowFigure
from tests.results_fixture import make_results, samples


def test_a_10_percent_shift_with_low_noise_is_significant():
    base, new = samples(1.0, 30, 0.01, seed=1), samples(1.1, 30, 0.01, seed=2)
    result = compare_samples(base, new)
    assert result.ratio == pytest.approx(1.1, rel=0.01)
    assert result.significant and result.p_value < 1e-6


def test_a_10_percent_shift_inside_noise_is_not():
    base, new = samples(1.0, 15, 0.5, seed=3), samples(1.1, 15, 0.5, seed=4)
    result = compare_samples(base, new)
    assert not result.significant and result.p_value > 0.05


def test_too_few_samples_are_never_called_significant():
    result = compare_samples([1.0, 1.0], [2.0, 2.0])
    assert result.ratio == 2.0 and result.p_value is None and not result.significant


def test_many_rounds_a_side_are_tested_too():
    # a serving row holds an answer per sample, thousands a side: C(n, k) is past any float
    result = compare_samples(samples(1.0, 2000, 0.01, seed=6), samples(1.1, 2000, 0.01, seed=7))
    assert result.significant and result.p_value is not None


def test_two_rounds_against_many_can_still_be_significant():
    # all 50 base rounds faster than both new ones: the rank test's p is 2 / C(52, 2)
    result = compare_samples(samples(1.0, 50, 0.01, seed=5), [2.0, 2.1])
    assert result.p_value is not None and result.p_value < 0.01 and result.significant


def _two_processes(first_ms: float, second_ms: float, seed: int) -> tuple[np.ndarray, list[int]]:
    """50 quiet rounds in each of two worker processes that sit apart, as processes do."""
    rounds = np.concatenate([samples(first_ms, 50, 0.01, seed), samples(second_ms, 50, 0.01, seed + 1)])
    return rounds, [0] * 50 + [1] * 50


def test_processes_that_sit_apart_are_not_taken_for_a_change():
    # each run's two processes 8% apart; NEW's medians 4% above BASE's, inside that spread
    base, base_processes = _two_processes(0.96, 1.04, seed=1)
    new, new_processes = _two_processes(1.00, 1.08, seed=3)
    # 200 rounds taken as independent draws: a change, beyond doubt
    unlabelled = compare_samples(base, new)
    assert unlabelled.p_value < 1e-6 and unlabelled.method is Significance.RANK
    # the processes drawn as well as their rounds: no more than the processes' own spread
    test = compare_samples(base, new, base_processes=base_processes, new_processes=new_processes)
    assert test.ratio == pytest.approx(1.04, rel=0.02) and not test.significant
    assert test.method is Significance.BOOTSTRAP
    assert test.p_value > 0.2


def test_a_change_beyond_the_processes_spread_is_significant():
    base, base_processes = _two_processes(0.98, 1.02, seed=1)
    new, new_processes = _two_processes(1.28, 1.32, seed=3)
    test = compare_samples(base, new, base_processes=base_processes, new_processes=new_processes)
    assert test.significant and test.p_value < 0.01 and test.ratio == pytest.approx(1.3, rel=0.02)


def test_the_gate_draws_the_processes_its_rows_record():
    base, new = make_results(seed=0), make_results(seed=50)
    for result, offsets in ((base, (0.96, 1.04)), (new, (1.00, 1.08))):
        for i, row in enumerate(r for r in result["rows"] if r.get("samples_ms")):
            rounds, processes = _two_processes(*(o * row["median_ms"] for o in offsets), seed=i)
            row.update(samples_ms=rounds.tolist(), samples_process=processes)
    assert compare_results(base, new).failures(0.03) == []
    for row in (*base["rows"], *new["rows"]):
        row.pop("samples_process", None)  # a file from before rounds were labelled
    assert compare_results(base, new).failures(0.03)


def test_the_gate_fails_a_real_slowdown_and_passes_one_inside_noise():
    base = make_results(scale=1.0, noise=0.01, seed=0)
    assert compare_results(base, make_results(scale=1.1, noise=0.01, seed=50)).failures(0.05)
    noisy_base = make_results(scale=1.0, noise=0.5, n=15, seed=0)
    noisy_new = make_results(scale=1.1, noise=0.5, n=15, seed=50)
    assert compare_results(noisy_base, noisy_new).failures(0.05) == []
    # 10% slower and significant, but under a 20% gate
    assert compare_results(base, make_results(scale=1.1, noise=0.01, seed=50)).failures(0.20) == []
    # without a gate a slowdown alone never fails
    assert compare_results(base, make_results(scale=1.1, noise=0.01, seed=50)).failures(None) == []


def test_a_faster_run_never_fails_the_gate():
    base = make_results(scale=1.0, noise=0.01)
    comparison = compare_results(base, make_results(scale=0.8, noise=0.01, seed=9))
    assert comparison.failures(0.05) == []
    assert {c.verdict(0.05) for c in comparison.changes if c.test} == {"faster"}


def test_lost_agreement_always_fails_even_without_a_gate():
    base, new = make_results(), make_results()
    new["rows"][0]["agrees"] = False
    comparison = compare_results(base, new)
    failures = comparison.failures(None)
    # a backend wrong at one shape: none of its rows' speedups count
    backend = base["rows"][0]["backend"]
    assert [row_key(c.base) for c in failures] == [
        row_key(r) for r in base["rows"] if r["backend"] == backend]
    assert {c.verdict(0.05) for c in failures} == {"agreement lost"}


def test_a_check_failing_only_at_an_untimed_shape_loses_every_row_of_that_backend():
    base, new = make_results(), make_results()
    wrong = {**new["checks"][1], "seq_len": 200, "agrees": False}
    new["checks"].append(wrong)
    failures = compare_results(base, new).failures(None)
    assert failures and {c.new["backend"] for c in failures} == {wrong["backend"]}
    assert {c.new["batch_size"] for c in failures} == {1, 64}
    assert {c.verdict(0.05) for c in failures} == {"agreement lost"}
    # already wrong in BASE: nothing was lost
    assert compare_results(new, new).failures(None) == []


def test_rows_on_one_side_only_are_listed():
    base, new = make_results(), make_results()
    gone = base["rows"][0]
    new["rows"] = new["rows"][1:] + [{**new["rows"][1], "batch_size": 4096}]
    comparison = compare_results(base, new)
    assert [row_key(r) for r in comparison.only_base] == [row_key(gone)]
    assert [r["batch_size"] for r in comparison.only_new] == [4096]
    assert len(comparison.changes) == len(base["rows"]) - 1


def test_unmeasured_rows_are_compared_without_a_test():
    comparison = compare_results(make_results(), make_results())
    unmeasured = [c for c in comparison.changes if c.base["status"] != "ok"]
    assert unmeasured and all(c.test is None for c in unmeasured)
    assert {c.verdict(0.05) for c in unmeasured} == {"not measured"}
    assert np.isfinite([c.test.ratio for c in comparison.changes if c.test]).all()


UNTRUSTED_VERDICTS = {
    "contended": ({"verdict": "contended", "rows_contended": 6, "canary_spread": 1.02,
                   "canary_rounds": 200, "busiest": [{"pid": 4242, "name": "python3", "cores": 0.97}]},
                  "CONTENDED: the regression gate was not applied: new.json was timed while work "
                  "outside the run took the CPU"),
    "unsteady": ({"verdict": "unsteady", "rows_contended": 0, "canary_spread": 1.3,
                  "canary_rounds": 200, "busiest": []},
                 "UNSTEADY: the regression gate was not applied: new.json was timed while the host "
                 "kept changing the machine's speed"),
}


@pytest.mark.parametrize("verdict", sorted(UNTRUSTED_VERDICTS))
def test_a_contended_or_unsteady_side_is_flagged_and_the_speed_gate_neither_passes_nor_fails(
        verdict, tmp_path, capsys):
    from harness.cli.main import main
    from harness.io.jsonio import write_json

    fields, message = UNTRUSTED_VERDICTS[verdict]
    base = make_results(noise=0.01)
    slower = make_results(scale=1.5, noise=0.01, seed=9)
    slower["verdict"] = {**fields, "max_foreign_cores": 0.4, "max_set_aside": 0.25,
                         "max_canary_spread": 1.06}
    comparison = compare_results(base, slower)
    assert comparison.untrusted == (("new", verdict),) and not comparison.gate_applies
    assert comparison.failures(0.05) == []  # 50% slower, but taken on a busy or unsteady machine
    lost = make_results(noise=0.01)
    lost["verdict"] = slower["verdict"]
    lost["rows"][0]["agrees"] = False
    assert compare_results(base, lost).failures(0.05)  # lost agreement still fails
    paths = [write_json(tmp_path / f"{n}.json", d) for n, d in (("base", base), ("new", slower))]
    assert main(["compare", *map(str, paths), "--fail-on-regression", "5%"]) == 3
    captured = capsys.readouterr()
    assert message in " ".join(captured.err.split())
    assert f"gate not applied: new {verdict}" in " ".join(captured.out.split())
    assert main(["compare", *map(str, paths)]) == 0  # no gate asked for: nothing to refuse


def _server(results: dict, max_qps: float | None, latency_scale: float) -> dict:
    """``results`` as server rows: each at its own highest rate, its answer times scaled."""
    rows = [{**r, "mode": "server", "max_qps": max_qps,
             "samples_ms": [x * latency_scale for x in r["samples_ms"]]} for r in results["rows"]]
    return {**results, "rows": rows}


def test_server_rows_compare_by_their_rate_not_by_answer_times_at_different_rates():
    """A server that holds a higher rate answers slower at that rate: by its samples it would
    look slower; by its rate, which is what it is judged on, it is better. One rate a side
    cannot be tested, so no gate fails on it."""
    base = _server(make_results(noise=0.01), 1000.0, 1.0)
    new = _server(make_results(noise=0.01, seed=5), 1500.0, 2.0)
    figures = {"server": RowFigure("max_qps", higher_is_better=True)}
    comparison = compare_results(base, new, figures=figures)
    measured = [c for c in comparison.changes if c.base["status"] == "ok"]
    assert measured and all(c.test is None and c.figure.worse_by == pytest.approx(-0.5) for c in measured)
    assert {c.verdict(0.05) for c in measured} == {"better (untested)"}
    worse = compare_results(new, base, figures=figures)
    assert {c.verdict(0.05) for c in worse.changes if c.base["status"] == "ok"} == {"worse (untested)"}
    assert worse.failures(0.05) == []  # untested: never gated
    # without the figure the doubled answer times read as a significant slowdown
    assert compare_results(base, new).failures(0.05)


def _with_an_int8_run(result: dict, slower: float) -> dict:
    """``result`` as a ``--dtype fp32,int8`` run writes it: each eager row again, timed in the
    int8 run as that run's baseline (here ``slower`` times slower), with its own samples."""
    eager = [r for r in result["rows"] if r["backend"] == "eager"]
    again = [{**r, "run_dtype": "int8", "median_ms": r["median_ms"] * slower,
              "samples_ms": [s * slower for s in r["samples_ms"]]} for r in eager]
    return {**result, "rows": [*result["rows"], *again]}


def test_an_eager_row_of_an_int8_run_is_compared_with_its_own_not_with_the_fp32_runs():
    from rich.console import Console

    from reports.runs import comparison_table

    base = _with_an_int8_run(make_results(seed=0), slower=1.0)
    new = _with_an_int8_run(make_results(seed=50), slower=1.3)
    comparison = compare_results(base, new)
    eager = [c for c in comparison.changes if c.base["backend"] == "eager"]
    assert len(eager) == 2 * sum(r["backend"] == "eager" for r in make_results()["rows"])
    by_run = {c.base.get("run_dtype"): c for c in eager}
    assert by_run["int8"].test.ratio == pytest.approx(1.3, rel=0.05)
    assert by_run[None].test.ratio == pytest.approx(1.0, rel=0.05)
    console = Console(width=200, record=True)
    console.print(comparison_table(comparison, "a", "b", None))
    assert "fp32 (int8 run)" in console.export_text()

"""tools/host_steadiness: the canary, the one-thread NumPy GEMM it replaced, and eager's
forward, timed in the same rounds and judged as a run's verdict judges its canary."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from harness.core.load import MIN_CANARY_ROUNDS
from tools.host_steadiness import main, measure


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    with threadpool_limits(limits=1, user_api="blas"):  # as the harness's settings hold it
        yield
    torch.set_num_threads(before)


def test_every_series_is_timed_in_the_same_rounds_and_judged_from_enough_of_them(two_threads):
    found = measure(seconds=2.0)
    assert [s.name for s in found] == ["canary, 2 threads", "NumPy GEMM, 1 thread",
                                       "eager forward, batch 64, 2 threads"]
    rounds = len(found[0].times_s)
    assert rounds >= MIN_CANARY_ROUNDS and all(len(s.times_s) == rounds for s in found)
    for series in found:  # each judged as a verdict judges its canary: upper over lower quartile
        low, high = np.percentile(series.times_s, [25, 75])
        assert series.spread == pytest.approx(high / low)
    # the forward is fifty LSTM steps over 64 sequences, the canary one small GEMM
    assert min(found[2].times_s) > max(min(found[0].times_s), min(found[1].times_s))
    few = measure(seconds=0.01)
    assert len(few[0].times_s) < MIN_CANARY_ROUNDS and all(s.spread is None for s in few)


@pytest.mark.parametrize("argv, said", [
    (["--seconds", "0"], "--seconds expects a number > 0, got 0"),
    (["--seconds", "nan"], "--seconds expects a number > 0, got nan"),
    (["--seconds", "soon"], "--seconds expects a number, got 'soon'"),
    (["--threads", "0"], "--threads expects an integer >= 1, got 0"),
])
def test_bad_input_exits_2_in_one_line_before_any_timing(argv, said, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1

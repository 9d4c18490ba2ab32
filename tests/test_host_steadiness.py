"""tools/host_steadiness: the canary on one thread and on every thread, and eager's forward,
timed in the same rounds and judged as a run's verdict judges its canary."""

import pytest
import torch

from harness.core.load import MIN_CANARY_ROUNDS
from tools.host_steadiness import main, measure


@pytest.fixture
def threads_restored():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_every_series_is_timed_in_the_same_rounds_and_judged_from_enough_of_them(threads_restored):
    found = measure(seconds=2.0, threads=2)
    assert [s.name for s in found] == ["canary, 1 thread", "canary, 2 threads",
                                       "eager forward, batch 64, 2 threads"]
    rounds = len(found[0].times_s)
    assert rounds >= MIN_CANARY_ROUNDS and all(len(s.times_s) == rounds for s in found)
    assert all(s.spread >= 1 for s in found)
    # the forward is fifty LSTM steps over 64 sequences, the canary one small GEMM
    assert min(found[2].times_s) > max(min(found[0].times_s), min(found[1].times_s))
    few = measure(seconds=0.01, threads=1)
    assert len(few[0].times_s) < MIN_CANARY_ROUNDS and all(s.spread is None for s in few)
    assert few[1].name == "canary, 1 thread"


@pytest.mark.parametrize("argv", [["--seconds", "0"], ["--seconds", "soon"], ["--threads", "-1"]])
def test_bad_input_exits_2_before_any_timing(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "expected a positive" in err and argv[1] in err

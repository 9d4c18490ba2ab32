import numpy as np
import pytest

from harness.core.data import SineConfig, chronological_split, make_windows, sine_batch, sine_series
from harness.core.errors import InputError


def test_default_series_is_the_classic_sine():
    np.testing.assert_allclose(sine_series(), np.sin(np.linspace(0, 100, 1000)), atol=1e-12)


def test_series_parameters_shape_the_wave():
    s = sine_series(SineConfig(length=5, step=0.5, frequency=0.25, amplitude=2.0, phase=0.1))
    t = np.arange(5) * 0.5
    np.testing.assert_allclose(s, 2.0 * np.sin(2 * np.pi * 0.25 * t + 0.1))
    noisy = sine_series(SineConfig(noise=0.1, seed=3))
    assert not np.allclose(noisy, sine_series())
    np.testing.assert_array_equal(noisy, sine_series(SineConfig(noise=0.1, seed=3)))


def test_windows_pair_each_window_with_its_next_sample():
    series = np.arange(10, dtype=np.float64)
    x, y = make_windows(series, seq_len=3)
    assert x.shape == (7, 3, 1) and y.shape == (7, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_array_equal(x[0, :, 0], [0, 1, 2])
    np.testing.assert_array_equal(x[-1, :, 0], [6, 7, 8])
    np.testing.assert_array_equal(y[:, 0], np.arange(3, 10))


@pytest.mark.parametrize("seq_len", [0, 10, -1])
def test_windowing_refuses_impossible_lengths(seq_len):
    with pytest.raises(InputError, match="seq_len"):
        make_windows(np.arange(10.0), seq_len)


def test_split_is_chronological_with_no_leak():
    series = np.arange(200, dtype=np.float64)  # values are their own time indices
    x, y = make_windows(series, seq_len=20)
    (xt, yt), (xv, yv) = chronological_split(x, y, val_fraction=0.2)
    latest_training_sample = max(xt.max(), yt.max())
    assert latest_training_sample < xv.min()
    assert len(xv) == round(len(x) * 0.2)
    assert np.all(np.diff(yt[:, 0]) > 0) and np.all(np.diff(yv[:, 0]) > 0)


def test_sine_batch_is_real_sine_windows():
    x = sine_batch(4, 30, seed=1)
    assert x.shape == (4, 30, 1) and x.dtype == np.float32
    assert np.abs(x).max() <= 1.0
    # consecutive windows are shifted copies of one series
    np.testing.assert_array_equal(x[1, :-1, 0], x[0, 1:, 0])

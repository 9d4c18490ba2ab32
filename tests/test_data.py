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


def test_several_channels_are_the_classic_sine_shifted_in_phase():
    from harness.core.data import GOLDEN_ANGLE, sine_channels, training_windows

    series = sine_channels(SineConfig(), 4)
    assert series.shape == (1000, 4)
    np.testing.assert_array_equal(series[:, 0], sine_series())  # channel 0 is the classic one
    t = np.linspace(0, 100, 1000)
    for k in range(4):
        np.testing.assert_allclose(series[:, k], np.sin(t + k * GOLDEN_ANGLE), atol=1e-12)
    assert min(np.abs(series[:, i] - series[:, j]).max() for i in range(4) for j in range(i)) > 0.5
    x, y = training_windows(SineConfig(), 50, input_size=3, output_size=2)
    assert x.shape == (950, 50, 3) and y.shape == (950, 2)
    np.testing.assert_array_equal(x[1, -1], y[0, :2].tolist() + [np.float32(series[50, 2])])
    # one channel in and out: exactly the classic windows, so the default model is unchanged
    x1, y1 = training_windows(SineConfig(), 50)
    x0, y0 = make_windows(sine_series(), 50)
    np.testing.assert_array_equal(x1, x0)
    np.testing.assert_array_equal(y1, y0)


def test_sine_batches_have_one_channel_per_input():
    from harness.core.data import sine_forecast_batch

    x = sine_batch(4, 30, seed=1, channels=3)
    assert x.shape == (4, 30, 3)
    np.testing.assert_array_equal(x[..., 0], sine_batch(4, 30, seed=1)[..., 0])
    windows, truth = sine_forecast_batch(2, 30, 5, seed=2, channels=2)
    assert windows.shape == (2, 30, 2) and truth.shape == (2, 5, 2)
    np.testing.assert_allclose(windows[1, -1], truth[0, 0], atol=1e-6)  # the next window's last sample

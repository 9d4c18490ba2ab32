"""The comparator, element by element: the band, its edge, one bad element, NaN, shapes, rtol."""

import numpy as np
import pytest

from harness.core.agreement import Tolerance, compare, worst

# Values exactly representable in binary, so the band's edge is exact: 0.25 + 0.125 * 2 = 0.5.
TOL = Tolerance(atol=0.25, rtol=0.125)


def test_a_value_exactly_on_the_band_passes_and_one_just_past_it_fails():
    expected = np.array([[2.0]])
    on_edge = compare(np.array([[2.5]]), expected, TOL)
    assert on_edge.agrees and on_edge.max_abs_err == 0.5 and on_edge.max_rel_err == 0.25
    past = compare(np.array([[np.nextafter(2.5, 3.0)]]), expected, TOL)
    assert not past.agrees and past.max_abs_err > 0.5
    below = compare(np.array([[np.nextafter(1.5, 1.0)]]), expected, TOL)
    assert not below.agrees  # the band is two-sided


def test_the_relative_error_stays_bounded_where_the_reference_crosses_zero():
    fp32 = Tolerance(atol=1e-5, rtol=1e-4)
    expected = np.array([0.5, 1e-4, 0.0, -0.3])
    result = compare(expected + 2e-7, expected, fp32)
    # against the reference alone the exact zero would divide 2e-7 by the smallest float
    assert result.agrees and result.max_rel_err == pytest.approx(2e-7 / 0.1)
    rng = np.random.default_rng(0)
    sine = np.sin(np.linspace(0, 20, 10_000))
    worst_agreeing = sine + rng.uniform(-1, 1, sine.size) * (fp32.atol + fp32.rtol * np.abs(sine))
    agreeing = compare(worst_agreeing, sine, fp32)
    assert agreeing.agrees and agreeing.max_rel_err <= 2 * fp32.rtol
    # a band with no rtol is taken relative to atol
    assert compare(np.array([3e-5]), np.array([0.0]), Tolerance(1e-5, 0.0)).max_rel_err == pytest.approx(3.0)


def test_one_bad_element_among_many_fails_and_sets_the_errors():
    expected = np.linspace(-1.0, 1.0, 4096).reshape(1024, 4)
    actual = expected.copy()
    actual[517, 2] += 0.9  # the band there is at most 0.25 + 0.125 = 0.375
    result = compare(actual, expected, TOL)
    assert not result.agrees
    assert result.max_abs_err == pytest.approx(0.9)
    assert compare(expected, expected, TOL).agrees


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_nan_or_inf_fails(bad):
    expected = np.zeros((64, 1))
    actual = expected.copy()
    actual[13, 0] = bad
    assert not compare(actual, expected, Tolerance(1e9, 1e9)).agrees


def test_mismatched_shapes_fail():
    assert not compare(np.zeros((4, 1)), np.zeros((4,)), Tolerance(1.0, 1.0)).agrees
    assert not compare(np.zeros((3, 1)), np.zeros((4, 1)), Tolerance(1.0, 1.0)).agrees


def test_rtol_widens_the_band_for_large_outputs():
    expected = np.full((8, 1), 1000.0)
    actual = expected + 0.05  # 5e-5 relative: inside rtol 1e-4, far outside atol 1e-5
    assert compare(actual, expected, Tolerance(atol=1e-5, rtol=1e-4)).agrees
    assert not compare(actual, expected, Tolerance(atol=1e-5, rtol=0.0)).agrees
    assert not compare(actual, -expected, Tolerance(atol=1e-5, rtol=1e-4)).agrees


def test_a_non_finite_answer_shows_as_nan_error_and_repeat_diff_whichever_check_came_first():
    from harness.core.results import Check
    from harness.engine.runner import row_agreement

    good = Check("b", 1, 50, "sine", 1e-7, 1e-6, True, deterministic=True, repeat_max_diff=1e-8)
    bad = Check("b", 1, 50, "random", float("nan"), float("nan"), False, deterministic=False,
                repeat_max_diff=float("nan"))
    for checks in ([good, bad], [bad, good]):
        row = row_agreement(checks, "forward")
        assert not row.agrees and np.isnan(row.max_abs_err) and np.isnan(row.max_rel_err)
        assert row.deterministic is False and np.isnan(row.repeat_max_diff)
    assert worst([1e-7, 3e-7]) == 3e-7

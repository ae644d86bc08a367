"""Comparison: metrics on hand-made arrays, the pass rule, NaN/inf rules, default tolerances."""
import json
import math

import numpy as np
import pytest

from normconf.compare import FORMATS, compare, decimals, default_tolerance, ulp
from normconf.records import Metrics

DTYPES = ("float64", "float32", "float16", "bfloat16")


def test_max_abs_max_rel_and_worst_index():
    e = np.array([[1.0, -2.0, 4.0], [0.5, 8.0, -1.0]])
    a = e + np.array([[0.0, 0.25, -0.5], [0.125, 0.0, 0.0]])
    m = compare(e, a, "float64", atol=0.0, rtol=0.0)
    assert m.max_abs == 0.5
    assert m.max_rel == 0.25  # 0.125 / 0.5 beats 0.5 / 4 and 0.25 / 2
    assert m.bad == 3 and m.ok is False
    # worst = furthest out of tolerance; with atol only, that is the largest absolute difference
    m = compare(e, a, "float64", atol=0.01, rtol=0.0)
    assert m.worst_index == [0, 2]
    assert (m.expected_at_worst, m.actual_at_worst) == (4.0, 3.5)
    # with rtol only, the largest relative difference is furthest out
    m = compare(e, a, "float64", atol=0.0, rtol=0.01)
    assert m.worst_index == [1, 0]
    assert (m.atol, m.rtol) == (0.0, 0.01)


def test_identical_arrays_pass_with_zero_metrics():
    e = np.array([0.0, 1.0, -3.5])
    m = compare(e, e.copy(), "float32", atol=0.0, rtol=0.0)
    assert (m.max_abs, m.max_rel, m.max_ulp, m.bad, m.ok) == (0.0, 0.0, 0.0, 0, True)


def test_max_rel_of_a_zero_expected_value_is_inf():
    m = compare(np.array([0.0, 1.0]), np.array([1e-9, 1.0]), "float64", atol=1e-6, rtol=0.0)
    assert m.max_rel == math.inf and m.ok is True


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_ulp_distance_matches_np_spacing(dtype):
    t = np.dtype(dtype).type
    # normal values of several binades, and the smallest subnormal region
    values = np.array([1.0, 1.5, 3.0, -7.0, 1e-3, 0.3, 6.0e4 if dtype == "float16" else 1e6], dtype=dtype)
    np.testing.assert_array_equal(ulp(values.astype(np.float64), dtype), np.spacing(np.abs(values)).astype(np.float64))
    tiny = np.finfo(dtype).smallest_subnormal
    assert ulp(np.array([0.0, float(tiny) * 3]), dtype).tolist() == [float(tiny), float(tiny)]
    for k in (1, 3, 10):
        e = np.array([t(1.5), t(-3.0), t(0.3)])
        a = e + k * np.spacing(np.abs(e)) * np.sign(e)  # k ulps further from zero, exact in the dtype
        m = compare(e.astype(np.float64), a.astype(np.float64), dtype, atol=0.0, rtol=0.0)
        assert m.max_ulp == k


def test_bfloat16_ulp_by_hand():
    # bfloat16: 8 significant bits (7 stored), smallest normal 2**-126.
    assert FORMATS["bfloat16"] == (8, -126)
    # in [1, 2) the spacing is 2**(0 - 7); in [2, 4) 2**-6; in [256, 512) 2**1
    assert ulp(np.array([1.0, 1.9921875, 3.0, 300.0]), "bfloat16").tolist() == [2.0 ** -7, 2.0 ** -7, 2.0 ** -6, 2.0]
    # below 2**-126 the spacing is that of the subnormals, 2**(-126 - 7)
    assert ulp(np.array([2.0 ** -130, 0.0]), "bfloat16").tolist() == [2.0 ** -133, 2.0 ** -133]
    # 1 -> 1 + 3 * 2**-7 is three bfloat16 steps; 3.0 -> 3.0 + 2**-5 two
    m = compare(np.array([1.0, 3.0]), np.array([1.0 + 3 * 2.0 ** -7, 3.0 + 2.0 ** -5]), "bfloat16", atol=0, rtol=0)
    assert m.max_ulp == 3.0
    # the same difference is ~2**16 float32 ulps: the dtype matters
    assert compare(np.array([1.0]), np.array([1.0 + 2.0 ** -7]), "float32", atol=0, rtol=0).max_ulp == 2.0 ** 16


@pytest.mark.parametrize("atol, rtol", [(0.0, 0.0), (1e-3, 1e-3)])
def test_nan_must_meet_nan_in_the_same_place(atol, rtol):
    nan = np.nan
    assert compare(np.array([nan, 1.0]), np.array([nan, 1.0]), "float32", atol, rtol).ok is True
    m = compare(np.array([nan, 1.0]), np.array([1.0, 1.0]), "float32", atol, rtol)  # NaN expected, number got
    assert m.ok is False and m.worst_index == [0] and m.bad == 1 and m.nan_expected == 1
    m = compare(np.array([1.0, 1.0]), np.array([1.0, nan]), "float32", atol, rtol)  # number expected, NaN got
    assert m.ok is False and m.worst_index == [1] and m.nan_actual == 1
    assert m.max_abs == math.inf  # a NaN where a number belongs is infinitely wrong, not hidden
    # NaN in the wrong place: both have one NaN, but not at the same index
    m = compare(np.array([nan, 1.0]), np.array([1.0, nan]), "float32", atol, rtol)
    assert m.ok is False and m.bad == 2


@pytest.mark.parametrize("atol, rtol", [(0.0, 0.0), (1e-3, 1.0)])
def test_inf_must_meet_the_same_inf(atol, rtol):
    inf = np.inf
    assert compare(np.array([inf, -inf]), np.array([inf, -inf]), "float32", atol, rtol).ok is True
    assert compare(np.array([inf]), np.array([-inf]), "float32", atol, rtol).ok is False
    assert compare(np.array([inf]), np.array([3e38]), "float32", atol, rtol).ok is False
    assert compare(np.array([1.0]), np.array([inf]), "float32", atol, rtol).ok is False
    assert compare(np.array([inf]), np.array([np.nan]), "float32", atol, rtol).ok is False
    m = compare(np.array([0.0, -inf]), np.array([0.0, inf]), "float32", atol, rtol)
    assert m.worst_index == [1] and m.max_abs == math.inf


def test_metrics_of_a_wrong_infinity_are_inf_not_nan():
    # +inf against -inf is infinitely wrong in every metric; a NaN metric (inf/inf) would also swallow
    # the real relative differences of the other elements in max().
    m = compare(np.array([np.inf, 1.0]), np.array([-np.inf, 2.0]), "float32", atol=0.0, rtol=0.0)
    assert m.max_abs == math.inf
    assert m.max_rel == math.inf, f"max_rel is {m.max_rel!r}"
    assert m.max_ulp == math.inf


def test_pass_rule_exactly_at_the_boundary():
    # |a - e| <= atol + rtol |e| with exactly representable numbers: 0.5 <= 0.25 + 0.125 * 2
    e = np.array([2.0, -2.0])
    assert compare(e, np.array([2.5, -1.5]), "float64", atol=0.25, rtol=0.125).ok is True
    assert compare(e, np.array([1.5, -2.5]), "float64", atol=0.25, rtol=0.125).ok is True
    just_over = np.nextafter(2.5, np.inf)
    m = compare(e, np.array([just_over, -2.0]), "float64", atol=0.25, rtol=0.125)
    assert m.ok is False and m.bad == 1 and m.worst_index == [0]
    # rtol scales with |expected|, not |actual|: 0.5 from 2 is allowed with rtol 0.25, 0.5 from 1.5 ...
    assert compare(np.array([2.0]), np.array([1.5]), "float64", atol=0.0, rtol=0.25).ok is True
    assert compare(np.array([1.5]), np.array([2.0]), "float64", atol=0.0, rtol=0.25).ok is False
    # ... and atol alone at zero expected
    assert compare(np.array([0.0]), np.array([0.25]), "float64", atol=0.25, rtol=10.0).ok is True
    assert compare(np.array([0.0]), np.array([0.5]), "float64", atol=0.25, rtol=10.0).ok is False


def test_zero_tolerance_demands_exact_equality():
    e = np.array([1.0])
    assert compare(e, e, "float32", atol=0.0, rtol=0.0).ok is True
    assert compare(e, np.nextafter(e, 2.0), "float32", atol=0.0, rtol=0.0).ok is False


@pytest.mark.parametrize("expected, actual", [
    (np.zeros(3), np.zeros((1, 3))),
    (np.zeros((2, 3)), np.zeros((3, 2))),
    (np.zeros(4), np.zeros(3)),
])
def test_shape_mismatch_raises(expected, actual):
    with pytest.raises(ValueError, match="shape"):
        compare(expected, actual, "float32", atol=1.0, rtol=1.0)


def test_metrics_are_floats_and_their_json_is_json_safe():
    m = compare(np.array([np.nan]), np.array([1.0]), "float32", atol=0.0, rtol=0.0)
    assert m.max_abs == m.ratio == math.inf and math.isnan(m.expected_at_worst)  # floats while computing
    data = m.to_json()
    json.dumps(data, allow_nan=False)  # JSON has no NaN or inf: the edge writes them as strings
    assert (data["max_abs"], data["ratio"], data["expected_at_worst"], data["actual_at_worst"]) == ("inf", "inf", "nan", 1.0)
    back = Metrics.from_json(data)
    assert back.max_abs == math.inf and math.isnan(back.expected_at_worst) and back.to_json() == data


# ----------------------------------------------------------------------------- default tolerances

@pytest.mark.parametrize("dtype", DTYPES)
def test_default_tolerance_grows_with_condition_for_y_and_spreads_only(dtype):
    kappa = 1.0e4
    well = {name: default_tolerance(dtype, 1.0, name) for name in ("y", "running_var", "std", "running_mean", "mean")}
    ill = {name: default_tolerance(dtype, kappa, name) for name in well}
    # y: the absolute tolerance grows (the mean's rounding moves every output by ~u |mean| / std)
    assert ill["y"]["atol"] > well["y"]["atol"] and ill["y"]["rtol"] == well["y"]["rtol"]
    # spreads: the relative tolerance grows
    for name in ("running_var", "std"):
        assert ill[name]["rtol"] > well[name]["rtol"] and ill[name]["atol"] == well[name]["atol"]
    # means do not depend on the condition number
    for name in ("running_mean", "mean"):
        assert ill[name] == well[name]
    # a condition number below 1 is not a licence for a tighter tolerance than kappa = 1
    assert default_tolerance(dtype, 0.01, "y") == well["y"]
    assert default_tolerance(dtype, 0.0, "std") == well["std"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_default_tolerance_grows_linearly_in_the_accumulation_precision(dtype):
    a = default_tolerance(dtype, 1.0e3, "y")["atol"]
    b = default_tolerance(dtype, 2.0e3, "y")["atol"]
    base = default_tolerance(dtype, 1.0, "mean")["atol"]
    assert b - base == pytest.approx(2 * (a - base), rel=1e-3)
    # float16/bfloat16 pay the conditioning term at float32 precision (they accumulate in float32)
    acc = {"float64": 2.0 ** -53, "float32": 2.0 ** -24, "float16": 2.0 ** -24, "bfloat16": 2.0 ** -24}[dtype]
    assert (b - a) / 1.0e3 == pytest.approx((b - base) / 2.0e3, rel=1e-3)
    assert acc * 1 <= (b - a) / 1.0e3 <= acc * 64


def test_default_tolerance_orders_the_dtypes():
    atols = [default_tolerance(d)["atol"] for d in DTYPES]
    assert atols == sorted(atols) and len(set(atols)) == 4
    for dtype in DTYPES:
        tol = default_tolerance(dtype)
        p = FORMATS[dtype][0]
        # a handful of roundings of the dtype: more than one unit roundoff, far less than 2**-p * 2**10
        assert 2.0 ** -p < tol["rtol"] < 2.0 ** (10 - p)


def test_default_tolerance_passes_a_correctly_rounded_float32_result():
    # a float32 result rounded once from the float64 truth is within tolerance of it
    truth = np.random.default_rng(0).normal(size=1000)
    tol = default_tolerance("float32", 1.0, "y")
    assert compare(truth, truth.astype(np.float32).astype(np.float64), "float32", **tol).ok
    # ... and a float16 one is not
    assert not compare(truth, truth.astype(np.float16).astype(np.float64), "float32", **tol).ok


# ----------------------------------------------------------------------------- decimals

@pytest.mark.parametrize("values, places", [
    ([-0.9912], 4),
    ([-1.01167305], 8),
    ([1e-05], 5),
    ([1.0e-5, 0.5], 5),
    ([[0.5, -0.9912], [2.0, 1.01167305]], 8),
    ([3, 12.0, -7], 0),
    ([1.25e-7], 9),
    ([0.1], 1),
])
def test_decimals_of_printed_values(values, places):
    assert decimals(values) == places

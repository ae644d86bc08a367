"""Comparing outputs: metrics, per-dtype tolerances, NaN/inf rules.

>>> import numpy as np
>>> m = compare(np.array([1.0, 2.0]), np.array([1.0, 2.5]), "float32", atol=1e-6, rtol=1e-6)
>>> m.max_abs, m.worst_index, m.ok
(0.5, [1], False)
"""
from __future__ import annotations

import numpy as np

from .cases import GRADIENTS
from .records import Metrics

# p = mantissa bits (with the implicit one), emin = smallest normal exponent.
FORMATS = {"float64": (53, -1022), "float32": (24, -126), "float16": (11, -14), "bfloat16": (8, -126)}
# Unit roundoff u = 2**-p of each dtype.
UNIT = {name: 2.0 ** -p for name, (p, _) in FORMATS.items()}
# A correct implementation of a half-precision op accumulates in float32: the precision that the
# conditioning term of the tolerance is charged at.
ACCUMULATION = {"float64": "float64", "float32": "float32", "float16": "float32", "bfloat16": "float32"}
# Multiples of u in the default tolerance (see README, "Tolerances"): float64/float32 pay for a
# reduction over n values and a handful of roundings after it; float16/bfloat16 outputs are one
# rounding of a float32 result, plus the roundings of an affine step done in the input dtype.
FACTOR = {"float64": 16, "float32": 16, "float16": 4, "bfloat16": 4}


def default_tolerance(dtype: str, condition: float = 1.0, output: str = "y") -> dict:
    """``{atol, rtol}`` for ``dtype`` (plus ``scale`` for gradients).

    ``atol = k u + k u_acc kappa`` for normalized outputs, where ``kappa = max |mean| / std`` of the
    normalized slices (see :func:`normconf.oracle.condition`): rounding the mean in the
    accumulation dtype moves every output by about ``u_acc |mean| / std``, however correct the
    implementation. Spread outputs (``running_var``, ``std``) get ``rtol = k u + k u_acc kappa``:
    the error bound of a stable updating (Welford) variance grows with kappa. Means get ``k u``.

    Gradients (``grad_x``, ``grad_weight``, ``grad_bias``) get the same ``atol = k u + k u_acc kappa``
    and ``rtol = k u``, with atol in units of ``S``, the largest |expected| of that output
    (``scale: "max"``, resolved by :func:`compare`). Why: y is normalized, O(1), so its atol is
    absolute; a gradient is not, its size is set by 1/std, the weight, the upstream gradient g and
    the number of values summed. With yhat = (x - mean) / std, h = g * weight, m = n - ddof::

        grad_x = (h - mean(h) - yhat * sum(h * yhat) / m) / std
        grad_weight = sum(g * yhat),  grad_bias = sum(g)

    grad_x projects h off the directions 1 and yhat: an element can be far smaller than the terms
    it is the difference of (0 for a constant g), so its error is u times the size of the terms,
    ``|h| / std``, not u times its own value: rtol alone cannot hold it. For a g not aligned with 1
    or yhat, ``|P h| ~ sqrt((n - 2) / n) |h|``, so S is of the size of those terms. grad_weight and
    grad_bias are sums that cancel (``sum |g| >> |sum g|``): their rounding error is u times the
    typical partial sum, again of the size of S. The factors ``k`` are y's: a correct
    implementation evaluates the projection and the sums in the accumulation dtype and rounds once
    to the output dtype. The conditioning term: the mean rounded in the accumulation dtype shifts
    every yhat of a slice by the same ``delta ~ u_acc kappa``, which moves ``sum(g * yhat)`` by
    ``delta sum(g)`` and grad_x by ``delta`` times its terms: ``k u_acc kappa S``. (Measured at
    kappa = 100, float32: TensorFlow's and torch's two-pass grad_weight are off by 2.8 and 0.2
    ``kappa u S``; one-pass variances are still caught, at 1.6x to 15x the tolerance.)

    >>> default_tolerance("float32", 1.0, "grad_x")["scale"]
    'max'
    """
    k, u = FACTOR[dtype], UNIT[dtype]
    conditioning = k * UNIT[ACCUMULATION[dtype]] * max(1.0, condition)
    atol, rtol = k * u, k * u
    if output in ("y",) + GRADIENTS:
        atol += conditioning
    elif output in ("running_var", "std"):
        rtol += conditioning
    tolerance: dict[str, float | str] = {"atol": float(atol), "rtol": float(rtol)}
    if output in GRADIENTS:
        tolerance["scale"] = "max"
    return tolerance


def absolute(expected, atol: float, rtol: float, scale: str | None = None) -> tuple[float, float]:
    """``(atol, rtol)`` in the output's own units: an atol with ``scale: "max"`` is multiplied by
    the largest finite |expected| (1 where there is none, or it is 0)."""
    if scale is None:
        return float(atol), float(rtol)
    if scale != "max":
        raise ValueError(f"tolerance scale {scale!r}: only 'max' (the largest |expected|) is known")
    e = np.abs(np.asarray(expected, dtype=np.float64))
    e = e[np.isfinite(e)]
    size = float(e.max()) if e.size and e.max() > 0 else 1.0
    return float(atol) * size, float(rtol)


def ulp(values: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of ``dtype`` at each of ``values`` (subnormal spacing below the normal range)."""
    p, emin = FORMATS[dtype]
    mag = np.abs(np.asarray(values, dtype=np.float64))
    _, exp = np.frexp(mag)  # mag = m * 2**exp with 0.5 <= m < 1: floor(log2(mag)) = exp - 1, exactly
    exp = np.maximum(np.where(mag > 0, exp - 1, emin), emin) - (p - 1)
    if exp.size and exp.min() >= -1022:  # a normal float64 power of two: build its bits (4x ldexp's speed)
        return ((exp.astype(np.int64) + 1023) << 52).view(np.float64)
    return np.ldexp(1.0, exp)


def compare(expected, actual, dtype: str, atol: float, rtol: float, scale: str | None = None) -> Metrics:
    """:class:`~normconf.records.Metrics` of ``actual`` against ``expected``: the differences and
    whether every element is within tolerance. Non-finite differences stay floats (``inf``, ``nan``).

    Passing: ``|actual - expected| <= atol + rtol * |expected|`` everywhere; NaN must meet NaN in the
    same place, and inf the same inf. ``worst_index`` is the element furthest out of tolerance.
    ``scale="max"``: atol is in units of the largest |expected| (gradients, see
    :func:`default_tolerance`); the metrics report the atol it amounts to.
    """
    e_all, a_all = np.asarray(expected), np.asarray(actual)
    if e_all.shape != a_all.shape:
        raise ValueError(f"shape {list(a_all.shape)} where {list(e_all.shape)} was expected")
    if scale is not None:
        atol, rtol = absolute(_largest_finite(e_all), atol, rtol, scale)
    atol, rtol = float(atol), float(rtol)
    e_flat, a_flat = e_all.reshape(-1), a_all.reshape(-1)
    acc = {"max_abs": 0.0, "max_rel": 0.0, "max_ulp": 0.0, "ratio": -1.0}
    count = {"bad": 0, "nan_expected": 0, "nan_actual": 0}
    worst_flat = 0
    # in slices of CHUNK elements: a 1 GiB output needs a few MB of temporaries, not ten copies
    for lo in range(0, e_flat.size, CHUNK):
        e = np.asarray(e_flat[lo:lo + CHUNK], dtype=np.float64)
        a = np.asarray(a_flat[lo:lo + CHUNK], dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            diff = np.abs(a - e)
            magnitude = np.abs(e)
            if atol > 0 and np.isfinite(diff).all() and magnitude.min() > 0:
                # every element finite on both sides, no zero expected (the usual slice): the same
                # numbers as below without the masks, a third of the time on a 1 GiB output
                allowed = atol + rtol * magnitude
                ratio, rel = diff / allowed, diff / magnitude
                ulps = diff / ulp(e, dtype)
            else:
                diff, allowed, ratio, rel, ulps = _masked(e, a, diff, atol, rtol, dtype)
        at = int(np.argmax(ratio))
        if ratio[at] > acc["ratio"]:  # the first element furthest out of tolerance, in flat order
            acc["ratio"], worst_flat = float(ratio[at]), lo + at
        acc["max_abs"] = max(acc["max_abs"], float(diff.max()))
        acc["max_rel"] = max(acc["max_rel"], float(rel.max()))
        acc["max_ulp"] = max(acc["max_ulp"], float(ulps.max()))
        count["bad"] += int((diff > allowed).sum())
        count["nan_expected"] += int(np.isnan(e).sum())
        count["nan_actual"] += int(np.isnan(a).sum())
    worst: tuple = ()
    at_worst: tuple[float | None, float | None] = (None, None)
    if e_flat.size:
        worst = np.unravel_index(worst_flat, e_all.shape)
        at_worst = float(e_all[worst]), float(a_all[worst])
    return Metrics(max_abs=float(acc["max_abs"]), max_rel=float(acc["max_rel"]), max_ulp=float(acc["max_ulp"]),
                   worst_index=[int(i) for i in worst], expected_at_worst=at_worst[0], actual_at_worst=at_worst[1],
                   ratio=float(max(acc["ratio"], 0.0)), bad=count["bad"], nan_expected=count["nan_expected"],
                   nan_actual=count["nan_actual"], atol=atol, rtol=rtol, ok=count["bad"] == 0)


def _masked(e, a, diff, atol: float, rtol: float, dtype: str):
    """diff, allowed, ratio, rel, ulps of a slice with NaN, inf or zeros: NaN meets NaN and inf the
    same inf (distance 0); NaN against a number, or inf against another value, is infinitely far."""
    special = (np.isnan(e) & np.isnan(a)) | (np.isinf(e) & (e == a))
    diff = np.where(special, 0.0, diff)
    diff = np.where(np.isnan(diff), np.inf, diff)
    allowed = atol + rtol * np.where(np.isfinite(e), np.abs(e), 0.0)
    ratio = np.where(allowed > 0, diff / allowed, np.where(diff > 0, np.inf, 0.0))
    finite = np.isfinite(e) & (np.abs(e) > 0)
    rel = np.where(finite, diff / np.where(finite, np.abs(e), 1.0), np.where(diff > 0, np.inf, 0.0))
    ulps = diff / ulp(np.where(np.isfinite(e), e, 0.0), dtype)
    return diff, allowed, np.where(np.isnan(ratio), np.inf, ratio), rel, ulps


#: Elements compared at a time: 1 MB of float64 per temporary, so the dozen passes over a slice stay
#: in the CPU's cache (2.3x faster than 4 MB slices on a 1 GiB output; smaller ones cost Python calls).
CHUNK = 1 << 17


def _largest_finite(values: np.ndarray) -> np.ndarray:
    """``[max |finite value|]`` (or ``[]``), in slices: what :func:`absolute` needs of a large output."""
    flat, most = values.reshape(-1), None
    for lo in range(0, flat.size, CHUNK):
        e = np.abs(np.asarray(flat[lo:lo + CHUNK], dtype=np.float64))
        e = e[np.isfinite(e)]
        if e.size:
            most = e.max() if most is None else max(most, e.max())
    return np.array([] if most is None else [most])


def fmt(value) -> str:
    """A metric for people: 4 significant digits ('inf', 'nan' for those; a JSON string as it is)."""
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def decimals(values) -> int:
    """Decimal places of the shortest repr of the numbers in a nested list (how they were printed)."""
    most = 0
    for v in np.asarray(values, dtype=np.float64).reshape(-1):
        text = repr(float(v))
        if "e" in text:
            mant, exp = text.split("e")
            places = len(mant.split(".")[1]) if "." in mant else 0
            most = max(most, places - int(exp))
        elif "." in text:
            most = max(most, len(text.split(".")[1].rstrip("0")))
    return most

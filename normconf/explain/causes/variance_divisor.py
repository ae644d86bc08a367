"""``variance_divisor``: the statistics divide by n-1 instead of n, or by n instead of n-1."""
from __future__ import annotations

import math

import numpy as np

from ..geometry import count, unaffine
from ..variant import Variant

OTHER = {"biased": "unbiased", "unbiased": "biased"}


def discrete(ex) -> list[Variant]:
    p = ex.case.params
    if "variance" not in p:
        return []
    other = OTHER[p["variance"]]
    return [Variant("variance_divisor", {"variance": other, "n": count(ex.case, ex.x)}, text,
                    changes={"variance": other})]


def text(ex, v: Variant) -> str:
    n, other = v.params["n"], v.params["variance"]
    name = "std" if ex.case.op == "channel_stats" else "y"
    if n <= 1:
        return f"{other} variance with n = {n}: the n-1 divisor is 0 (0/0 = NaN where the biased variance is 0)"
    factor = (n - 1) / n if other == "unbiased" else n / (n - 1)
    frac = f"{n - 1}/{n}" if other == "unbiased" else f"{n}/{n - 1}"
    measured, exact = measured_scale(ex, name), math.sqrt(factor)
    if measured is None or abs(measured - exact) <= 1e-4 * exact:
        head = f"{name} = oracle x {exact:.5f} = sqrt({frac})"
    else:  # eps, another change of a pair, or rounding moves the measured factor
        head = f"{name} = oracle x {measured:.5f} (sqrt({frac}) = {exact:.5f})"
    return f"{head}: {other} variance (divisor {n - 1 if other == 'unbiased' else n}), n = {n}"


def measured_scale(ex, name: str) -> float | None:
    """The median ratio actual / oracle of output ``name`` over its larger values (y: before the affine)."""
    if name not in ex.actual:
        return None
    e = np.asarray(ex.expected[name], dtype=np.float64)
    a = ex.actual[name]
    if name == "y":
        e, a = unaffine(ex.case, ex.inputs, e), unaffine(ex.case, ex.inputs, a)
    if not np.isfinite(e).any():  # no value to measure by (and np.nanmax of all-NaN would warn)
        return None
    ok = np.isfinite(e) & np.isfinite(a) & (np.abs(e) > 0.25 * np.nanmax(np.abs(e)))
    if not ok.any():
        return None
    return float(np.median(a[ok] / e[ok]))

"""Stage 3: causes accepted from the statistics implied by the outputs, within an error bound.

Summation order is not knowable, so a one-pass variance or sums in a low precision cannot always be
reproduced element by element. Instead, per normalized slice (or channel), the mean and variance the
implementation must have used are read off the outputs (:func:`y_records`, :func:`channel_records`)
and each cause with an ``implied(records, dtype, u_acc)`` hook (:mod:`normconf.explain.causes`)
checks them against the error bound of its computation; the first, in search order, that accepts
them is the explanation.
"""
from __future__ import annotations

import math

import numpy as np

from .. import oracle
from ..cases import Case
from ..compare import ACCUMULATION, UNIT
from .arith import MAXIMUM
from .geometry import STAT_OPS, affine, geometry, unaffine
from .variant import Variant, tol


def c_pairwise(n: int) -> float:
    """3 (log2 n + 2): the worst-case relative error, in units u, of E[x^2] - E[x]^2 with tree
    (pairwise) sums: log2 n for the sum of squares, 2 log2 n for E[x]^2 (twice the mean's error)
    would be 3 log2 n, plus the roundings of x^2, of the two divisions and of the difference."""
    return 3.0 * (math.log2(max(n, 2)) + 2.0)


def states(recs) -> str:
    """The slices whose statistics went NaN or infinite, in words (empty when none did)."""
    nans = sum(r["state"] == "nan" for r in recs)
    infs = sum(r["state"] == "inf_var" for r in recs)
    bits = []
    if nans:
        bits.append(f"NaN in {nans} slice(s)")
    if infs:
        bits.append(f"an infinite variance (y = 0) in {infs} slice(s)")
    return ", ".join(bits)


def implied(ex, case: Case, inputs: dict, todo: list, checks) -> list[Variant]:
    """The first of ``checks`` (``(cause id, implied hook)`` in search order) that accepts the
    statistics implied by the outputs ``todo``, as a stage-3 variant; [] when none does.

    For y: per normalized slice, fit y ~ k (x - mean) + c (after undoing the affine): the
    implementation's variance is 1/k^2 - eps and its mean is mean - c/k (a shift dm). The fit must
    reproduce y within tolerance (the error is a per-slice statistic, not elementwise noise). For
    running_var and pooled std the implied variance is read directly, for the means the value.
    Each hook gets these records, the input dtype and u_acc, the unit of a correct
    implementation's accumulation (compare.ACCUMULATION)."""
    p, dt = case.params, case.dtype
    if case.op not in STAT_OPS + ("channel_stats",) or (case.op == "batch_norm" and not p["training"]):
        return []
    if np.asarray(inputs["x"]).size == 0:  # an empty batch: no values whose sums could be off
        return []
    looks = {}
    reproduced: dict[str, float] = {}  # output -> its ratio to the tolerance under the implied model
    for name in todo:
        if name == "y":
            looks[name] = y_records(ex, case, inputs, reproduced)
        elif name in ("running_var", "std", "running_mean", "mean"):
            looks[name] = channel_records(ex, case, inputs, name)
        else:
            looks[name] = None
    if any(v is None for v in looks.values()):
        return []
    recs = [r for rs in looks.values() for r in rs]
    u_acc = UNIT[ACCUMULATION[dt]]
    for cause, check in checks:
        found = check(recs, dt, u_acc)
        if found is not None:
            return [Variant(cause, found["params"], found["text"], tier=3, residual=dict(reproduced),
                            score=max(reproduced.values(), default=0.0), ok=True)]
    return []


def _record(kind, n, var, mean, var_b, meanabs, maxsq, state, err, dm, sum_over, dm_noise=None) -> dict:
    return {"kind": kind, "n": n, "var": float(var), "absmean": abs(float(mean)), "meansq": float(mean) ** 2,
            "ex2": float(mean ** 2 + var_b), "meanabs": float(meanabs), "maxsq": float(maxsq), "state": state,
            "err": err, "dm": dm, "sum_over": bool(sum_over), "dm_noise": dm_noise}


def y_records(ex, case: Case, inputs: dict, reproduced: dict):
    """Per-slice records for y, or None when a per-slice (mean, variance) model does not reproduce
    y; ``reproduced["y"]`` is set to the model's ratio to the tolerance."""
    fit = _slice_fit(ex, case, inputs)
    if fit is None:
        return None
    reproduced["y"], (xs, ax, mean, dev, var, var_b, k, var_impl, dm, nan_slice, zero, dm_noise) = fit
    n = int(np.prod([xs.shape[a] for a in ax]))
    forward = geometry(case, ex.x)[0]
    expected_nan = ~np.isfinite(forward(np.asarray(ex.expected["y"], dtype=np.float64))).all(axis=ax, keepdims=True)
    absx = np.abs(xs)
    meanabs = absx.mean(axis=ax, keepdims=True)
    maxsq = (absx.max(axis=ax, keepdims=True)) ** 2
    sum_abs = absx.sum(axis=ax, keepdims=True)
    sum_sq = (dev * dev).sum(axis=ax, keepdims=True)
    dtmax = MAXIMUM[case.dtype]
    recs = []
    for idx in np.ndindex(k.shape):
        if expected_nan[idx]:
            continue
        err = abs(float(var_impl[idx]) - float(var[idx]))
        state = "nan" if nan_slice[idx] else "inf_var" if zero[idx] or not math.isfinite(err) else "finite"
        recs.append(_record("var", n, var[idx], mean[idx], var_b[idx], meanabs[idx], maxsq[idx], state,
                            err if state == "finite" else 0.0, abs(float(dm[idx])) if state == "finite" else None,
                            sum_abs[idx] > dtmax or sum_sq[idx] > dtmax or maxsq[idx] > dtmax,
                            float(dm_noise[idx]) if state == "finite" else None))
    return recs


def implied_fit(case: Case, inputs: dict, x: np.ndarray, y: np.ndarray, eps: float) -> tuple:
    """The per-slice fit y ~ k (x - mean) + c of an output ``y`` of ``x`` (the weight and bias taken
    off): ``(forward, ax, back, xs, mean, dev, var, var_b, z, finite, nan_slice, zz, zbar, k, model,
    var_impl)``, where ``var_impl = 1 / k^2 - eps`` is the variance the output implies per slice
    (inf where k <= 0), ``var`` the case's and ``var_b`` the biased one of ``x``."""
    forward, ax, back = geometry(case, x)
    xs = forward(x)
    mean, dev, var = oracle._moments(xs, ax, oracle.DDOF[case.params["variance"]])
    _, _, var_b = oracle._moments(xs, ax, 0)
    z = forward(unaffine(case, inputs, y))
    with np.errstate(all="ignore"):
        finite = np.isfinite(z)
        nan_slice = ~finite.all(axis=ax, keepdims=True)
        zz = np.where(finite, z, 0.0)
        zbar = zz.mean(axis=ax, keepdims=True)
        k = (dev * (zz - zbar)).sum(axis=ax, keepdims=True) / (dev * dev).sum(axis=ax, keepdims=True)
        model = np.where(nan_slice, z, k * dev + zbar)
        var_impl = np.where(k > 0, 1.0 / (k * k) - eps, np.inf)
    return forward, ax, back, xs, mean, dev, var, var_b, z, finite, nan_slice, zz, zbar, k, model, var_impl


def _slice_fit(ex, case: Case, inputs: dict):
    """``(ratio, arrays)`` of the per-slice fit y ~ k (x - mean) + c, or None when it does not
    reproduce y within tolerance plus the output's own rounding."""
    p = case.params
    (forward, ax, back, xs, mean, dev, var, var_b, z, finite, nan_slice, zz, zbar, k, model,
     var_impl) = implied_fit(case, inputs, ex.x, ex.actual["y"], p["eps"])
    with np.errstate(all="ignore"):
        zero = (np.abs(zz).max(axis=ax, keepdims=True) == 0) & ~nan_slice & (var > 0)
        dm = np.where(k > 0, -zbar / k, np.nan)
        # the intercept's own noise in units of x: the output's rounding (u of the case dtype per
        # element, at most u max|y| on a slice's mean), twice for safety, over the slope
        dm_noise = np.where(k > 0, 2 * UNIT[case.dtype] * np.abs(zz).max(axis=ax, keepdims=True) / k, np.inf)
    # The model must reproduce y within tolerance plus the output's own rounding: an output far
    # larger than the oracle's (a variance that cancelled) carries 4 u_dtype max|y| of rounding per
    # slice, and that noise also moves the fitted intercept.
    y_hat = affine(case, inputs, back(model))
    a = ex.actual["y"]
    t = tol(ex.tolerance, "y")
    with np.errstate(all="ignore"):
        scale = back(np.broadcast_to(np.where(finite, np.abs(forward(a)), 0).max(axis=ax, keepdims=True), z.shape))
        allowed = (t["atol"] + t["rtol"] * np.where(np.isfinite(y_hat), np.abs(y_hat), 0.0)
                   + 4 * UNIT[case.dtype] * scale)
        diff = np.where(np.isnan(y_hat) & np.isnan(a), 0.0, np.abs(y_hat - a))
        diff = np.where(np.isnan(diff), np.inf, diff)
        ratio = float(np.max(diff / np.maximum(allowed, 1e-300))) if diff.size else 0.0
    if not ratio <= 1:
        return None
    return ratio, (xs, ax, mean, dev, var, var_b, k, var_impl, dm, nan_slice, zero, dm_noise)


def channel_records(ex, case: Case, inputs: dict, name: str):
    """Per-channel records for running_mean / running_var (one step) and pooled mean / std."""
    p, x = case.params, ex.x
    a = ex.actual[name].reshape(-1)
    ax = (0,) + tuple(range(2, x.ndim))
    if case.op == "batch_norm":
        if p["steps"] != 1:
            return None
        xs = np.asarray(inputs["x_steps"][0], dtype=np.float64)
        m = 1.0 if p["momentum"] is None else p["momentum"]
        if m == 0:
            return None
        old = np.asarray(inputs["running_var" if name == "running_var" else "running_mean"],
                         dtype=np.float64).reshape(-1)
        implied_values = (a - (1 - m) * old) / m
        ddof = oracle.DDOF[p["running_variance"]]
    elif case.op == "channel_stats" and p["method"] == "pooled":
        xs, implied_values, ddof = x, (a * a if name == "std" else a), oracle.DDOF[p["variance"]]
    else:
        return None
    mean, _, var = oracle._moments(xs, ax, ddof)
    _, _, var_b = oracle._moments(xs, ax, 0)
    n = int(np.prod([xs.shape[i] for i in ax]))
    absx = np.abs(xs)
    meanabs = absx.mean(axis=ax).reshape(-1)
    maxsq = (absx.max(axis=ax) ** 2).reshape(-1)
    sum_abs = absx.sum(axis=ax).reshape(-1)
    mean, var, var_b = mean.reshape(-1), var.reshape(-1), var_b.reshape(-1)
    dtmax = MAXIMUM[case.dtype]
    kind = "var" if name in ("running_var", "std") else "mean"
    recs = []
    for i in range(a.size):
        true = var[i] if kind == "var" else mean[i]
        state = "nan" if np.isnan(implied_values[i]) else "inf_var" if np.isinf(implied_values[i]) else "finite"
        recs.append(_record(kind, n, var[i], mean[i], var_b[i], meanabs[i], maxsq[i], state,
                            abs(float(implied_values[i] - true)) if state == "finite" else 0.0, None,
                            sum_abs[i] > dtmax or maxsq[i] * n > dtmax))
    return recs

"""An exact reference for small cases: rational mean and variance, a 60-digit square root.

It is written independently of :mod:`normconf.oracle` (plain loops over the normalized slices) so
that the two check each other. Each output is the float64 nearest to the exact value.

>>> import numpy as np
>>> y = normalize_slice([1.0, 2.0, 3.0, 4.0], eps=0.0, ddof=0)
>>> [round(v, 12) for v in y]
[-1.341640786500, -0.447213595500, 0.447213595500, 1.341640786500]
"""
from __future__ import annotations

from decimal import Context, Decimal
from fractions import Fraction

import numpy as np

from .cases import Case

CTX = Context(prec=60)
DDOF = {"biased": 0, "unbiased": 1}


def _q(value) -> Fraction:
    return Fraction(float(value))  # exact: every float64 is a rational


def _dec(q: Fraction) -> Decimal:
    return CTX.divide(Decimal(q.numerator), Decimal(q.denominator))


def stats(values, ddof: int) -> tuple[Fraction, Fraction | None]:
    """Exact mean and variance (None when n - ddof is 0)."""
    qs = [_q(v) for v in values]
    n = len(qs)
    mean = sum(qs, Fraction(0)) / n
    var = sum(((q - mean) ** 2 for q in qs), Fraction(0)) / (n - ddof) if n > ddof else None
    return mean, var


def normalize_slice(values, eps: float, ddof: int, weight=None, bias=None) -> list[float]:
    """Exact ``(x - mean) / sqrt(var + eps) * weight + bias`` of one slice, rounded to float64."""
    mean, var = stats(values, ddof)
    if var is None:
        return [float("nan")] * len(values)
    denom = _dec(var + _q(eps))
    if denom == 0:
        return [float("nan") if _q(v) == mean else float("inf") for v in values]
    root = CTX.sqrt(denom)
    out = []
    for i, v in enumerate(values):
        w = _q(weight[i]) if weight is not None else Fraction(1)
        b = _q(bias[i]) if bias is not None else Fraction(0)
        out.append(float(CTX.add(CTX.divide(_dec((_q(v) - mean) * w), root), _dec(b))))
    return out


def _slices(x: np.ndarray, axes) -> tuple[np.ndarray, tuple]:
    """Rows = the values of one normalized slice; also the permutation used."""
    rest = [d for d in range(x.ndim) if d not in axes]
    perm = tuple(rest) + tuple(axes)
    moved = np.transpose(x, perm)
    return moved.reshape(int(np.prod([x.shape[d] for d in rest])), -1), perm


def _normalize(x, axes, eps, ddof, weight_full=None, bias_full=None) -> np.ndarray:
    rows, perm = _slices(x, axes)
    w_rows = _slices(weight_full, axes)[0] if weight_full is not None else None
    b_rows = _slices(bias_full, axes)[0] if bias_full is not None else None
    out = np.array([normalize_slice(r, eps, ddof, None if w_rows is None else w_rows[i],
                                    None if b_rows is None else b_rows[i]) for i, r in enumerate(rows)])
    moved_shape = tuple(x.shape[d] for d in perm)
    return np.transpose(out.reshape(moved_shape), np.argsort(perm))


def _per_channel(v, shape):
    return np.broadcast_to(np.asarray(v, dtype=np.float64).reshape((1, -1) + (1,) * (len(shape) - 2)), shape)


def reference(case: Case, inputs: dict) -> dict[str, np.ndarray]:
    """Exact outputs of ``case`` (keep it to small inputs: it is pure Python)."""
    x, p = np.asarray(inputs["x"], dtype=np.float64), case.params
    ddof = DDOF.get(p.get("variance"), 0)
    spatial = tuple(range(2, x.ndim))
    w = _per_channel(inputs["weight"], x.shape) if "weight" in inputs and case.op != "layer_norm" else None
    b = _per_channel(inputs["bias"], x.shape) if "bias" in inputs and case.op != "layer_norm" else None
    if case.op == "instance_norm":
        return {"y": _normalize(x, spatial, p["eps"], ddof, w, b)}
    if case.op == "group_norm":
        g = p["groups"]
        shape = (x.shape[0], g, x.shape[1] // g) + x.shape[2:]
        wg = None if w is None else w.reshape(shape)
        bg = None if b is None else b.reshape(shape)
        return {"y": _normalize(x.reshape(shape), tuple(range(2, len(shape))), p["eps"], ddof, wg, bg).reshape(x.shape)}
    if case.op == "layer_norm":
        axes = tuple(p["axes"])
        full = [x.shape[d] if d in axes else 1 for d in range(x.ndim)]
        lw = np.broadcast_to(np.reshape(inputs["weight"], full), x.shape) if "weight" in inputs else None
        lb = np.broadcast_to(np.reshape(inputs["bias"], full), x.shape) if "bias" in inputs else None
        return {"y": _normalize(x, axes, p["eps"], ddof, lw, lb)}
    if case.op == "normalize":
        mean, std = inputs["mean"], inputs["std"]
        y = np.empty_like(x)
        for idx in np.ndindex(x.shape):
            y[idx] = float((_q(x[idx]) - _q(mean[idx[1]])) / _q(std[idx[1]]))
        return {"y": y}
    if case.op == "channel_stats":
        rows = _slices(x, (0,) + spatial)[0] if p["method"] == "pooled" else None
        if rows is not None:
            pairs = [stats(r, ddof) for r in rows]
            return {"mean": np.array([float(m) for m, _ in pairs]),
                    "std": np.array([float(CTX.sqrt(_dec(v))) for _, v in pairs])}
        means, stds = [], []
        for c in range(x.shape[1]):
            per = [stats(x[n, c].ravel(), ddof) for n in range(x.shape[0])]
            means.append(float(sum((m for m, _ in per), Fraction(0)) / len(per)))
            stds.append(float(CTX.divide(sum((CTX.sqrt(_dec(v)) for _, v in per), Decimal(0)), Decimal(len(per)))))
        return {"mean": np.array(means), "std": np.array(stds)}
    # batch_norm
    axes = (0,) + spatial
    if not p["training"]:
        rm, rv = inputs["running_mean"], inputs["running_var"]
        y = np.empty_like(x)
        for idx in np.ndindex(x.shape):
            c = idx[1]
            val = CTX.divide(_dec(_q(x[idx]) - _q(rm[c])), CTX.sqrt(_dec(_q(rv[c]) + _q(p["eps"]))))
            if w is not None:
                val = CTX.multiply(val, _dec(_q(w[idx])))
            if b is not None:
                val = CTX.add(val, _dec(_q(b[idx])))
            y[idx] = float(val)
        return {"y": y}
    rm = [_q(v) for v in inputs["running_mean"]]
    rv = [_q(v) for v in inputs["running_var"]]
    for k, xk in enumerate(inputs["x_steps"], start=1):
        m = Fraction(1, k) if p["momentum"] is None else _q(p["momentum"])
        for c, row in enumerate(_slices(np.asarray(xk, dtype=np.float64), axes)[0]):
            mean, var = stats(row, DDOF[p["running_variance"]])
            rm[c] = (1 - m) * rm[c] + m * mean
            rv[c] = float("nan") if var is None else (1 - m) * rv[c] + m * var  # n = 1 with n-1: 0/0
    y = _normalize(x, axes, p["eps"], ddof, w, b)
    return {"y": y, "running_mean": np.array([float(v) for v in rm]), "running_var": np.array([float(v) for v in rv])}

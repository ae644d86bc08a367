"""An exact reference for small cases: rational mean and variance, a 60-digit square root.

It is written independently of :mod:`normconf.oracle` (plain loops over the normalized slices) so
that the two check each other. Each output is the float64 nearest to the exact value.

>>> import numpy as np
>>> y = normalize_slice([1.0, 2.0, 3.0, 4.0], eps=0.0, ddof=0)
>>> [round(v, 12) for v in y]
[-1.3416407865, -0.4472135955, 0.4472135955, 1.3416407865]
"""
from __future__ import annotations

from decimal import Context, Decimal
from fractions import Fraction

import numpy as np

from .cases import Case, rms_eps
from .inputs import round_to_dtype

CTX = Context(prec=60)
DDOF = {"biased": 0, "unbiased": 1}


def _q(value) -> Fraction:
    return value if isinstance(value, Fraction) else Fraction(float(value))  # exact: every float64 is a rational


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


def yhat_slice(values, eps: float, ddof: int) -> list[Decimal | None]:
    """Exact ``(x - mean) / sqrt(var + eps)`` of one slice to 60 digits (None where undefined)."""
    mean, var = stats(values, ddof)
    if var is None or var + _q(eps) == 0:
        return [None] * len(values)
    root = CTX.sqrt(_dec(var + _q(eps)))
    return [CTX.divide(_dec(_q(v) - mean), root) for v in values]


def vjp_slice(values, h, eps: float, ddof: int) -> list[float]:
    """Exact d(sum(h * yhat))/dx of one slice, rounded to float64 (``h`` exact rationals):
    (h - mean(h)) / sigma - (x - mean) * sum(h * (x - mean)) / ((n - ddof) sigma^3)."""
    mean, var = stats(values, ddof)
    if var is None or var + _q(eps) == 0:
        return [float("nan")] * len(values)
    xs, hs, n = [_q(v) for v in values], [_q(v) for v in h], len(values)
    mean_h = sum(hs, Fraction(0)) / n
    along = sum((hi * (xi - mean) for hi, xi in zip(hs, xs, strict=True)), Fraction(0)) / (n - ddof)
    denom = _dec(var + _q(eps))
    root = CTX.sqrt(denom)
    cube = CTX.multiply(root, denom)
    return [float(CTX.subtract(CTX.divide(_dec(hi - mean_h), root), CTX.divide(_dec((xi - mean) * along), cube)))
            for hi, xi in zip(hs, xs, strict=True)]


def _by_slice(fn, x: np.ndarray, axes, *others) -> np.ndarray:
    """Apply ``fn(row, *other rows)`` to every normalized slice; an object array shaped like ``x``."""
    rows, perm = _slices(x, axes)
    other_rows = [_slices(o, axes)[0] for o in others]
    out = np.empty(rows.shape, dtype=object)
    for i, row in enumerate(rows):
        out[i] = fn(list(row), *(list(o[i]) for o in other_rows))
    return np.transpose(out.reshape(tuple(x.shape[d] for d in perm)), np.argsort(perm))


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


def rms_slice(values, eps: float) -> tuple[list[Decimal | None], Fraction, Decimal | None]:
    """Exact ``x / sqrt(mean(x^2) + eps)`` of one slice to 60 digits (None where undefined), the
    exact mean of the squares plus eps, and its square root."""
    qs = [_q(v) for v in values]
    denom = sum((q * q for q in qs), Fraction(0)) / len(qs) + _q(eps)
    if denom == 0:
        return [None] * len(qs), denom, None
    root = CTX.sqrt(_dec(denom))
    return [CTX.divide(_dec(q), root) for q in qs], denom, root


def _nearest(value, dtype: str) -> float:
    """The ``dtype`` value nearest to an exact ``value`` (a 60-digit Decimal or a rational), through
    its nearest float64: a double rounding only where that float64 falls on a tie of ``dtype``."""
    return float(round_to_dtype(np.array([float(value)]), dtype)[0])


def _rms_norm(case: Case, inputs: dict) -> dict[str, np.ndarray]:
    """Exact rms_norm: y with the case's ``cast`` rounding points (see :func:`normconf.oracle.rms_norm`:
    ``before_weight`` rounds x / rms, weight_offset + weight and their product to the input dtype,
    each from its exact value), and the exact gradients of the math,
    grad_x = h / rms - x sum(h x) / (n rms^3) with h = grad_output * (weight_offset + weight),
    grad_weight = the exact sums of grad_output * x / rms."""
    x, p = np.asarray(inputs["x"], dtype=np.float64), case.params
    axes, eps, dt = tuple(p["axes"]), rms_eps(p, case.dtype), case.dtype
    kept = [x.shape[d] if d in axes else 1 for d in range(x.ndim)]
    offset = _q(p["weight_offset"])
    scale = (np.broadcast_to(np.reshape(inputs["weight"], kept), x.shape) if "weight" in inputs else None)
    before = p["cast"] == "before_weight"

    def forward(row, *weights):
        yhat = rms_slice(row, eps)[0]
        out = []
        for i, v in enumerate(yhat):
            if v is None:
                out.append(float("nan"))
                continue
            if not weights:
                out.append(_nearest(v, dt) if before else float(v))
            elif before:  # each factor in the input dtype, then their product rounded to it
                w = Fraction(_nearest(offset + _q(weights[0][i]), dt))
                out.append(_nearest(Fraction(_nearest(v, dt)) * w, dt))
            else:
                out.append(float(CTX.multiply(v, _dec(offset + _q(weights[0][i])))))
        return out

    extra = (scale,) if scale is not None else ()
    out = {"y": _by_slice(forward, x, axes, *extra).astype(float)}
    if not p["grad"]:
        return out
    g = np.vectorize(_q, otypes=[object])(inputs["grad_output"])
    h = g * np.vectorize(lambda w: offset + _q(w), otypes=[object])(scale) if scale is not None else g

    def backward(row, hs):
        _, denom, root = rms_slice(row, eps)
        if root is None:
            return [float("nan")] * len(row)
        xs = [_q(v) for v in row]
        along = sum((hi * xi for hi, xi in zip(hs, xs, strict=True)), Fraction(0)) / len(xs)
        cube = CTX.multiply(root, _dec(denom))
        return [float(CTX.subtract(CTX.divide(_dec(hi), root), CTX.divide(_dec(xi * along), cube)))
                for hi, xi in zip(hs, xs, strict=True)]

    out["grad_x"] = _by_slice(backward, x, axes, h).astype(float)
    if scale is not None:
        yhat = _by_slice(lambda row: rms_slice(row, eps)[0], x, axes)
        sums: dict = {}
        for idx in np.ndindex(x.shape):
            key = tuple(idx[d] for d in axes)
            sums[key] = CTX.add(sums.get(key, Decimal(0)), CTX.multiply(_dec(g[idx]), yhat[idx]))
        shape = np.shape(inputs["weight"])
        out["grad_weight"] = np.array([float(sums[k]) for k in np.ndindex(shape)]).reshape(shape)
    return out


def reference(case: Case, inputs: dict) -> dict[str, np.ndarray]:
    """Exact outputs of ``case`` (keep it to small inputs: it is pure Python)."""
    if case.op == "rms_norm":
        return _rms_norm(case, inputs)
    out = _forward(case, inputs)
    if case.op == "instance_norm" and case.params.get("track_running_stats"):
        rm, rv = _running(case, inputs, tuple(range(2, np.ndim(inputs["x"]))))
        out.update(running_mean=_floats(rm), running_var=_floats(rv))
    if case.params.get("grad"):
        out.update(_gradients(case, inputs))
    return out


def _floats(values) -> np.ndarray:
    return np.array([float(v) for v in values])


def _running(case: Case, inputs: dict, axes) -> tuple[list, list]:
    """Exact running mean and variance (rationals; NaN where n - 1 = 0): per step, the statistics
    of every slice over ``axes``, averaged over the batch (one slice per channel for batch norm),
    blended in with weight momentum."""
    p = case.params
    rm = [_q(v) for v in inputs["running_mean"]]
    rv: list[Fraction | float] = [_q(v) for v in inputs["running_var"]]  # float: NaN, once undefined
    for k, xk in enumerate(inputs["x_steps"], start=1):
        m = Fraction(1, k) if p["momentum"] is None else _q(p["momentum"])
        xk = np.asarray(xk, dtype=np.float64)
        per_image = axes[0] != 0
        for c in range(xk.shape[1]):
            images = [xk[i, c] for i in range(xk.shape[0])] if per_image else [xk[:, c]]
            pairs = [stats(img.ravel(), DDOF[p["running_variance"]]) for img in images]
            mean = sum((mu for mu, _ in pairs), Fraction(0)) / len(pairs)
            defined = [v for _, v in pairs if v is not None]
            var = sum(defined, Fraction(0)) / len(pairs) if len(defined) == len(pairs) else None
            rm[c] = (1 - m) * rm[c] + m * mean
            rv[c] = float("nan") if var is None or not isinstance(rv[c], Fraction) else (1 - m) * rv[c] + m * var
    return rm, rv


def _gradients(case: Case, inputs: dict) -> dict:
    """Exact gradients of sum(y * grad_output): grad_x through each slice's exact vjp (or the
    constant 1/sigma of running statistics), grad_weight / grad_bias as exact sums."""
    x, p = np.asarray(inputs["x"], dtype=np.float64), case.params
    full = _broadcaster(case, x)
    exact = np.vectorize(_q, otypes=[object])
    g = exact(inputs["grad_output"])
    h = g * exact(full(inputs["weight"])) if "weight" in inputs else g
    if case.op == "normalize":
        return {"grad_x": (h / exact(full(inputs["std"]))).astype(float)}
    eps, ddof = p["eps"], DDOF[p["variance"]]
    if case.op == "batch_norm" and (not p["training"] or p["eval_after"]):
        rm, rv = (_running(case, inputs, _axes(case, x)) if p["training"]
                  else ([_q(v) for v in inputs["running_mean"]], [_q(v) for v in inputs["running_var"]]))
        roots = [CTX.sqrt(_dec(v + _q(eps))) for v in rv]
        yhat, grad_x = np.empty(x.shape, dtype=object), np.empty(x.shape)
        for idx in np.ndindex(x.shape):
            yhat[idx] = CTX.divide(_dec(_q(x[idx]) - rm[idx[1]]), roots[idx[1]])
            grad_x[idx] = float(CTX.divide(_dec(h[idx]), roots[idx[1]]))
    else:
        shape = x.shape
        if case.op == "group_norm":  # slices of [N, G, C/G, *spatial]
            shape = (x.shape[0], p["groups"], x.shape[1] // p["groups"]) + x.shape[2:]
        xs, axes = x.reshape(shape), _axes(case, x)
        grad_x = _by_slice(lambda r, hr: vjp_slice(r, hr, eps, ddof), xs, axes, h.reshape(shape)).reshape(x.shape)
        grad_x = grad_x.astype(float)
        yhat = _by_slice(lambda r: yhat_slice(r, eps, ddof), xs, axes).reshape(x.shape)
    out = {"grad_x": grad_x}

    def weight_term(idx: tuple[int, ...]) -> Decimal:
        return CTX.multiply(_dec(g[idx]), yhat[idx])

    terms = {"weight": weight_term, "bias": lambda idx: _dec(g[idx])}
    for name, term in terms.items():
        if name in inputs:
            sums: dict = {}
            for idx in np.ndindex(x.shape):
                key = _param_index(case, idx)
                sums[key] = CTX.add(sums.get(key, Decimal(0)), term(idx))
            shape = np.shape(inputs[name])
            out[f"grad_{name}"] = np.array([float(sums[k]) for k in np.ndindex(shape)]).reshape(shape)
    return out


def _axes(case: Case, x: np.ndarray) -> tuple:
    """The dims of one normalized slice (group_norm: of the [N, G, C/G, *spatial] view)."""
    spatial = tuple(range(2, x.ndim))
    return {"instance_norm": spatial, "batch_norm": (0,) + spatial, "group_norm": tuple(range(2, x.ndim + 1)),
            "layer_norm": tuple(case.params.get("axes") or ())}.get(case.op, ())


def _param_index(case: Case, idx: tuple) -> tuple:
    """Which element of weight/bias multiplies element ``idx`` of x."""
    if case.op == "layer_norm":
        return tuple(idx[d] for d in case.params["axes"])
    return (idx[1],)


def _broadcaster(case: Case, x: np.ndarray):
    """A per-channel (layer_norm: per normalized dims) parameter broadcast to x's shape."""
    if case.op == "layer_norm":
        axes = case.params["axes"]
        kept = [x.shape[d] if d in axes else 1 for d in range(x.ndim)]
        return lambda v: np.broadcast_to(np.reshape(v, kept), x.shape)
    return lambda v: _per_channel(v, x.shape)


def _forward(case: Case, inputs: dict) -> dict[str, np.ndarray]:
    x, p = np.asarray(inputs["x"], dtype=np.float64), case.params
    ddof = DDOF[p["variance"]] if "variance" in p else 0  # normalize has no variance
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
            # a variance with n - ddof = 0 is undefined: its std is NaN, as the oracle's
            return {"mean": np.array([float(m) for m, _ in pairs]),
                    "std": np.array([float("nan") if v is None else float(CTX.sqrt(_dec(v))) for _, v in pairs])}
        means, stds = [], []
        for c in range(x.shape[1]):
            per = [stats(x[n, c].ravel(), ddof) for n in range(x.shape[0])]
            means.append(float(sum((m for m, _ in per), Fraction(0)) / len(per)))
            roots = [CTX.sqrt(_dec(v)) for _, v in per if v is not None]
            stds.append(float(CTX.divide(sum(roots, Decimal(0)), Decimal(len(per)))) if len(roots) == len(per)
                        else float("nan"))
        return {"mean": np.array(means), "std": np.array(stds)}
    # batch_norm
    axes = (0,) + spatial
    running = _running(case, inputs, axes) if p["training"] else None
    out = {} if running is None else {"running_mean": _floats(running[0]), "running_var": _floats(running[1])}
    if p["training"] and not p["eval_after"]:
        return {"y": _normalize(x, axes, p["eps"], ddof, w, b), **out}
    rm, rv = running or (inputs["running_mean"], inputs["running_var"])  # eval: normalize with running statistics
    y = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        c = idx[1]
        val = CTX.divide(_dec(_q(x[idx]) - _q(rm[c])), CTX.sqrt(_dec(_q(rv[c]) + _q(p["eps"]))))
        if w is not None:
            val = CTX.multiply(val, _dec(_q(w[idx])))
        if b is not None:
            val = CTX.add(val, _dec(_q(b[idx])))
        y[idx] = float(val)
    return {"y": y, **out}

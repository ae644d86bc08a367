"""Explaining a mismatch: which change of convention makes the float64 oracle reproduce an output.

>>> import numpy as np
>>> from normconf.cases import load_text
>>> from normconf import oracle
>>> from normconf.inputs import generate
>>> case = load_text("cases: [{id: a, op: instance_norm, input: {shape: [2, 3, 5, 5], dtype: float64}}]", "d.yaml")[0][0]
>>> inputs = generate(case)
>>> expected = oracle.reference(case, inputs)
>>> actual = oracle.reference(case.with_params(variance="unbiased"), inputs)
>>> tol = {"y": {"atol": 1e-12, "rtol": 1e-12}}
>>> found = explain(case, inputs, expected, actual, tol)
>>> found["cause"], found["params"]["variance"], found["params"]["n"]
('variance_divisor', 'unbiased', 25)
>>> explain(case, inputs, expected, expected, tol) is None
True

How (DESIGN.md, "Explaining a mismatch"): every cause id has one or more *variants*, the float64
oracle with one convention changed (the other divisor, a fitted eps, eps on the std, E[x^2]-E[x]^2
in the input dtype, sums in the input dtype, other reduction axes, the other momentum or
running-variance convention, per-image std, an affine dropped). A variant *reproduces* the actual
outputs when :func:`normconf.compare.compare` passes with the caller's tolerance on every output;
among reproducing variants the one leaving the smallest share of the deviation unexplained
(sum of squared errors over the allowance, against the oracle's) is reported, the largest
``|actual - variant| / allowance`` is its ``residual``. Search order, cheapest and most specific
first, stopping at the first stage that reproduces everything:

0. single variants: the discrete ones (exact reproductions) and a fitted eps that is a common
   value (0, 1e-12, ..., 1e-5, 1e-3, ...), ranked together;
1. a fitted eps that is no common value (kept back: with few slices an eps can mimic any
   per-slice factor), unless a pair below reproduces the output with plain values;
2. pairs: two discrete variants, a discrete variant with a fitted eps or with one computed variant;
3. bound-based: summation order is not knowable, so E[x^2]-E[x]^2 or sums in a low precision are
   also accepted when the per-slice statistics implied by the output are off by more than a
   two-pass float computation can be, yet within the error bound of that computation (alone, or
   after one discrete change that accounts for the other failing outputs);
4. a fitted per-channel scale and shift (an affine nobody asked for).

When nothing reproduces every failing output, the variant reproducing most of them is reported
with ``unexplained_outputs``; when nothing reproduces any, the cause is ``"unexplained"`` with
``stats``. ``also`` lists other single causes that reproduce the outputs as well (the data cannot
tell them apart, e.g. an all-NaN y from float16 sums or from x^2 overflowing in E[x^2]-E[x]^2).

Cost: a few dozen oracle-sized evaluations; 5 ms median, 20-30 ms at the 90th percentile and
about 50 ms at most on the shipped cases (tests/test_explain.py prints the figures).

``expected`` must be the oracle of ``case`` (what the variants are built from); pass
``case.with_params(**native)`` and its oracle to explain relative to a declared convention.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import oracle
from .cases import Case
from .compare import ACCUMULATION, GRADIENTS, UNIT, absolute, compare
from .inputs import round_to_dtype

DDOF = oracle.DDOF
OTHER = {"biased": "unbiased", "unbiased": "biased"}
MAXIMUM = {"float64": float(np.finfo(np.float64).max), "float32": float(np.finfo(np.float32).max),
           "float16": 65504.0, "bfloat16": 3.3895313892515355e38}
# eps values found in the wild (torch 1e-5, Keras/TF 1e-3, Flax 1e-6, ...): a fitted eps is reported
# as one of these when that one reproduces the output too.
NICE_EPS = (0.0, 1e-12, 1e-10, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
STAT_OPS = ("instance_norm", "layer_norm", "group_norm", "batch_norm")


# --------------------------------------------------------------------------------------- public API

def explain(case: Case, inputs: dict, expected: dict, actual: dict, tolerance: dict) -> dict | None:
    """``None`` when every output in both ``expected`` and ``actual`` agrees within ``tolerance``;
    else ``{"cause", "detail", "params", "outputs", "residual", "candidates"}`` (plus ``"stats"``
    when the cause is ``"unexplained"``, ``"causes"`` for a pair)."""
    names = [n for n in expected if n in actual]
    try:
        base = {n: compare(expected[n], actual[n], case.dtype, **_tol(tolerance, n)) for n in names}
    except ValueError as exc:
        return {"cause": "unexplained", "detail": f"the outputs cannot be compared: {exc}", "params": {},
                "outputs": names, "residual": {}, "candidates": [], "stats": {}}
    bad = [n for n in names if not base[n]["ok"]]
    if not bad:
        return None
    if any(n not in GRADIENTS for n in bad):  # a gradient off with its forward output shares its cause:
        names = [n for n in names if n not in GRADIENTS]  # explain the forward outputs (the variants
        bad = [n for n in bad if n not in GRADIENTS]  # are forward computations)
    try:
        return _Explainer(case, inputs, expected, actual, tolerance, names, bad).run()
    except Exception as exc:  # an explanation must never turn a result into a traceback
        return {"cause": "unexplained", "detail": f"explaining failed: {type(exc).__name__}: {exc}",
                "params": {}, "outputs": bad, "residual": {}, "candidates": [], "stats": {}}


def explain_pair(case: Case, inputs: dict, a: dict, b: dict, tolerance: dict,
                 labels: tuple[str, str] = ("a", "b")) -> dict | None:
    """Why two implementations' outputs differ: each is explained against the oracle.

    ``None`` when ``a`` and ``b`` agree within ``tolerance``. Otherwise the cause of whichever
    disagrees with the oracle (of ``a`` when both do), ``"causes"`` naming both when they differ,
    and a detail such as ``"torch: running_variance_estimator (unbiased); tensorflow: agrees with
    the oracle"``."""
    names = [n for n in a if n in b]
    try:
        if all(compare(a[n], b[n], case.dtype, **_tol(tolerance, n))["ok"] for n in names):
            return None
    except ValueError as exc:
        return {"cause": "unexplained", "detail": f"{labels[0]} and {labels[1]} cannot be compared: {exc}",
                "params": {}, "outputs": names, labels[0]: None, labels[1]: None}
    expected = oracle.reference(case, inputs)
    ea = explain(case, inputs, expected, a, tolerance)
    eb = explain(case, inputs, expected, b, tolerance)

    def say(label, e):
        if e is None:
            return f"{label}: agrees with the oracle"
        text = f"{label}: {e['cause']}"
        short = ", ".join(f"{v}" if k in ("variance", "running_variance", "method") else f"{k} {_num(v)}"
                          for k, v in e.get("params", {}).items() if not isinstance(v, (dict, list)))
        return f"{text} ({short})" if short else text

    causes = [e["cause"] for e in (ea, eb) if e is not None]
    cause = causes[0] if causes else "unexplained"
    differ = [n for n in names if not compare(a[n], b[n], case.dtype, **_tol(tolerance, n))["ok"]]
    out = {"cause": cause, "detail": f"{say(labels[0], ea)}; {say(labels[1], eb)}",
           "params": {}, "outputs": differ, labels[0]: ea, labels[1]: eb}
    if len(set(causes)) > 1:
        out["causes"] = causes
    return out


# --------------------------------------------------------------------------------------- helpers

def _tol(tolerance: dict, name: str) -> dict:
    t = tolerance.get(name) or {}
    return {"atol": float(t.get("atol", 0.0)), "rtol": float(t.get("rtol", 0.0)), "scale": t.get("scale")}


def _ratio(expected, actual, atol: float, rtol: float, scale: str | None = None) -> tuple[float, bool]:
    """``(max |actual - expected| / allowance, ok)`` with :func:`normconf.compare.compare`'s rules
    (NaN meets NaN, inf the same inf), without its ULP and index bookkeeping: explaining compares
    dozens of variants and this is most of its cost."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        return math.inf, False
    atol, rtol = absolute(e, atol, rtol, scale)  # gradients: atol in units of max |expected|
    if not e.size:
        return 0.0, True
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.abs(a - e)
        special = (np.isnan(e) & np.isnan(a)) | (np.isinf(e) & (e == a))
        diff = np.where(special, 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)
        allowed = atol + rtol * np.where(np.isfinite(e), np.abs(e), 0.0)
        ok = not bool((diff > allowed).any())
        ratio = np.where(allowed > 0, diff / allowed, np.where(diff > 0, np.inf, 0.0))
    return float(ratio.max()), ok


def _num(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _f(v) -> float:
    return float(v) if v is not None else float("nan")


class _Arith:
    """Arithmetic in a dtype: NumPy's own for float16/32/64, float64 rounded after every operation
    for bfloat16 (round-to-nearest of the exact result is what one bfloat16 operation does)."""

    def __init__(self, dtype: str):
        self.dtype = dtype
        self.native = np.dtype(dtype) if dtype != "bfloat16" else None

    def __call__(self, v):
        if self.native is not None:
            return np.asarray(v).astype(self.native)
        return round_to_dtype(v, "bfloat16")

    def sum(self, v, axes, how):
        """Sum over ``axes`` (kept) in this dtype: ``pairwise`` (NumPy's reduction; for float16 its
        float32 blocks rounded once), ``sequential`` (each partial sum rounded), ``tree``
        (pairwise with every partial sum rounded). bfloat16 ``pairwise`` is a float sum rounded once
        (torch's and XLA's bfloat16 reductions keep float32 accumulators)."""
        axes = tuple(axes)
        kept = [1 if a in axes else s for a, s in enumerate(v.shape)]
        moved = np.moveaxis(v, axes, tuple(range(-len(axes), 0)))
        flat = moved.reshape(moved.shape[:moved.ndim - len(axes)] + (-1,))
        with np.errstate(over="ignore", invalid="ignore"):
            if how == "sequential" and self.native is not None:
                total = np.cumsum(flat, axis=-1, dtype=self.native)[..., -1]
            elif how == "pairwise" and self.native is not None:
                total = flat.sum(axis=-1, dtype=self.native)
            elif how == "pairwise":  # bfloat16: float32 accumulators (exact enough), one rounding at the end
                total = self(flat.sum(axis=-1))
            else:  # tree (and bfloat16 sequential, which a loop would make slow: the tree is its stand-in)
                cur = flat
                while cur.shape[-1] > 1:
                    if cur.shape[-1] % 2:
                        cur = np.concatenate([cur, np.zeros_like(cur[..., :1])], axis=-1)
                    cur = self(cur[..., 0::2] + cur[..., 1::2])
                total = cur[..., 0]
        return np.asarray(total).reshape(kept)


def _op_axes(case: Case, ndim: int) -> tuple[int, ...]:
    if case.op == "instance_norm":
        return tuple(range(2, ndim))
    if case.op == "layer_norm":
        return tuple(case.params["axes"])
    return (0,) + tuple(range(2, ndim))  # batch_norm, channel_stats (pooled), normalize (per channel)


def _geometry(case: Case, x: np.ndarray, axes=None):
    """``(forward, axes, back)``: ``forward(x)`` is x as the op normalizes it (group_norm groups the
    channels), ``axes`` the reduced dims, ``back`` undoes ``forward``."""
    ident = lambda a: a  # noqa: E731
    if case.op == "group_norm" and axes is None:
        g = case.params["groups"]
        n, c = x.shape[:2]
        shape = (n, g, c // g) + x.shape[2:]
        return (lambda a: np.reshape(a, shape)), tuple(range(2, len(shape))), (lambda a: np.reshape(a, x.shape))
    return ident, tuple(axes) if axes is not None else _op_axes(case, x.ndim), ident


def _shape_for(case: Case, ndim: int, shape) -> Callable:
    if case.op == "layer_norm":
        axes = case.params["axes"]
        return lambda v: np.asarray(v, dtype=np.float64).reshape([shape[d] if d in axes else 1 for d in range(ndim)])
    return lambda v: np.asarray(v, dtype=np.float64).reshape((1, -1) + (1,) * (ndim - 2))


def _affine(case, inputs, y):
    shape_for = _shape_for(case, y.ndim, y.shape)
    if "weight" in inputs:
        y = y * shape_for(inputs["weight"])
    if "bias" in inputs:
        y = y + shape_for(inputs["bias"])
    return y


def _unaffine(case, inputs, y):
    y = np.asarray(y, dtype=np.float64)
    shape_for = _shape_for(case, y.ndim, y.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        if "bias" in inputs:
            y = y - shape_for(inputs["bias"])
        if "weight" in inputs:
            y = y / shape_for(inputs["weight"])
    return y


def _exact(x, axes, ddof):
    return oracle._moments(x, axes, ddof)


def _run(case: Case, inputs: dict, moments=_exact, form: str = "var", axes=None) -> dict:
    """The op of ``case`` with pluggable statistics: ``moments(x, axes, ddof) -> (mean, x - mean, var)``;
    ``form`` "var" divides by sqrt(var + eps), "std" by sqrt(var) + eps; ``axes`` overrides the
    reduced dims of y (running statistics keep the op's own)."""
    op, p, x = case.op, case.params, np.asarray(inputs["x"], dtype=np.float64)
    if op == "normalize":
        return oracle.reference(case, inputs)
    if op == "channel_stats":
        ax = tuple(axes) if axes is not None else _op_axes(case, x.ndim)
        ddof = DDOF[p["variance"]]
        if p["method"] == "pooled":
            mean, _, var = moments(x, ax, ddof)
            return {"mean": mean.reshape(-1), "std": np.sqrt(var).reshape(-1)}
        mean, _, var = moments(x, tuple(range(2, x.ndim)), ddof)
        return {"mean": mean.reshape(x.shape[:2]).mean(axis=0), "std": np.sqrt(var).reshape(x.shape[:2]).mean(axis=0)}

    eps = p["eps"]

    def divide(dev, var):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return dev / np.sqrt(var + eps) if form == "var" else dev / (np.sqrt(var) + eps)

    out = {}
    if op == "batch_norm":
        chan = lambda v: np.asarray(v, dtype=np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))  # noqa: E731
        if not p["training"]:
            return {"y": _affine(case, inputs, divide(x - chan(inputs["running_mean"]), chan(inputs["running_var"])))}
        bax = _op_axes(case, x.ndim)
        rm = np.asarray(inputs["running_mean"], dtype=np.float64)
        rv = np.asarray(inputs["running_var"], dtype=np.float64)
        for k, xk in enumerate(inputs["x_steps"], start=1):
            mean, _, var_b = moments(np.asarray(xk, dtype=np.float64), bax, 0)
            if p["running_variance"] == "unbiased":
                _, _, var_r = moments(np.asarray(xk, dtype=np.float64), bax, 1)
            else:
                var_r = var_b
            m = 1.0 / k if p["momentum"] is None else p["momentum"]
            rm = (1 - m) * rm + m * mean.reshape(-1)
            rv = (1 - m) * rv + m * var_r.reshape(-1)
        out["running_mean"], out["running_var"] = rm, rv
        if p.get("eval_after"):  # then y is normalized with the running statistics just written
            out["y"] = _affine(case, inputs, divide(x - chan(rm), chan(rv)))
            return out
    forward, ax, back = _geometry(case, x, axes)
    _, dev, var = moments(forward(x), ax, DDOF[p["variance"]])  # y last: recorders keep its statistics
    out["y"] = _affine(case, inputs, back(divide(dev, var)))
    return out


def _recorder(fn):
    """Wrap a moments function so that its last (mean, var) is kept in ``.last``."""
    def moments(x, axes, ddof):
        mean, dev, var = fn(x, axes, ddof)
        moments.last = (mean, var)
        return mean, dev, var
    moments.last = None
    return moments


def _one_pass(cd: str, how: str, clip: bool):
    """var = E[x^2] - E[x]^2, every step in ``cd`` (``clip``: max(var, 0), as Flax does)."""
    ar = _Arith(cd)

    def moments(x, axes, ddof):
        n = int(np.prod([x.shape[a] for a in axes]))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            xd = ar(x)
            mean = ar(ar.sum(xd, axes, how) / ar(n))
            ex2 = ar(ar.sum(ar(xd * xd), axes, how) / ar(n))
            var = ar(ex2 - ar(mean * mean))
            if clip:
                var = np.maximum(var, 0)
            if ddof:
                var = ar(var * ar(n / (n - ddof))) if n > ddof else np.full_like(var, np.nan)
            dev = ar(xd - mean)
        return (np.asarray(v, dtype=np.float64) for v in (mean, dev, var))
    return _recorder(moments)


def _low_precision(dt: str, how: str, var_only: bool = False):
    """Two-pass mean and variance with the sums (and x - mean, its square) in ``dt``. ``var_only``:
    only the variance is (NumPy: ``np.mean`` of float16 keeps a float32 accumulator, ``np.var``
    does not, so its sum can overflow to inf and y collapses to 0)."""
    ar = _Arith(dt)

    def moments(x, axes, ddof):
        n = int(np.prod([x.shape[a] for a in axes]))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            xd = ar(x)
            mean = ar(ar.sum(xd, axes, how) / ar(n))
            dev = ar(xd - mean)
            var = ar(ar.sum(ar(dev * dev), axes, how) / ar(n - ddof)) if n > ddof else np.full(mean.shape, np.nan)
            if var_only:
                mean = ar(oracle._moments(x, axes, 0)[0])
                dev = ar(xd - mean)
        return (np.asarray(v, dtype=np.float64) for v in (mean, dev, var))
    return _recorder(moments)


def _rounded_mean(dt: str):
    """Exact statistics, but x - mean with the mean rounded to ``dt`` (torch's CPU half batch_norm)."""
    def moments(x, axes, ddof):
        mean, _, var = oracle._moments(x, axes, ddof)
        mean = round_to_dtype(mean, dt)
        return mean, x - mean, var
    return _recorder(moments)


# --------------------------------------------------------------------------------------- variants

@dataclass
class _Variant:
    cause: str
    params: dict
    text: Any  # str, or callable(explainer, variant) -> str once evaluated
    changes: dict = field(default_factory=dict)  # case parameters changed
    drop: tuple = ()  # inputs removed (affine)
    fn: Callable | None = None  # (case, inputs) -> outputs; None: the oracle
    tier: int = 0
    causes: tuple = ()
    outputs: dict | None = None
    residual: dict = field(default_factory=dict)
    score: float = math.inf
    ok: bool = False
    extra: dict = field(default_factory=dict)

    def detail(self, ex) -> str:
        return self.text(ex, self) if callable(self.text) else self.text


def _pair(a: _Variant, b: _Variant) -> _Variant | None:
    if a.cause == b.cause or (a.fn is not None and b.fn is not None) or set(a.changes) & set(b.changes):
        return None
    first, second = (a, b) if a.score <= b.score else (b, a)  # the closer single variant leads

    def text(ex, v):
        return f"{first.detail(ex)}; and {second.detail(ex)}"

    return _Variant(cause=first.cause, params={**first.params, **second.params}, text=text,
                    changes={**first.changes, **second.changes}, drop=first.drop + second.drop,
                    fn=first.fn or second.fn, tier=2, causes=(first.cause, second.cause),
                    extra={"odd_eps": bool(a.extra.get("odd_eps") or b.extra.get("odd_eps"))})


class _Explainer:
    def __init__(self, case, inputs, expected, actual, tolerance, names, bad):
        self.case, self.inputs, self.expected, self.tolerance = case, inputs, expected, tolerance
        self.actual = {n: np.asarray(actual[n], dtype=np.float64) for n in names}
        self.names, self.bad = names, bad
        self.x = np.asarray(inputs["x"], dtype=np.float64)
        self.evaluated: list[_Variant] = []

    # ---- evaluation
    def evaluate(self, v: _Variant) -> _Variant:
        case = self.case.with_params(**v.changes) if v.changes else self.case
        inputs = {k: val for k, val in self.inputs.items() if k not in v.drop} if v.drop else self.inputs
        try:
            with np.errstate(all="ignore"):
                v.outputs = (v.fn or oracle.reference)(case, inputs)
        except Exception as exc:  # a variant that cannot be built for this case (shapes) reproduces nothing
            v.outputs, v.extra["error"] = {}, repr(exc)
        v.extra["moments"] = getattr(v.fn, "moments", None)
        v.extra["case"] = case
        v.residual, v.ok = {}, True
        for n in self.names:
            got = v.outputs.get(n)
            if got is None or np.shape(got) != self.actual[n].shape:
                v.residual[n], v.ok = math.inf, False
                continue
            v.residual[n], ok = _ratio(got, self.actual[n], **_tol(self.tolerance, n))
            v.ok = v.ok and ok
        v.score = max(v.residual.values()) if v.residual else math.inf
        v.extra["fit"] = self.unexplained_share(v.outputs) if v.ok else math.inf
        self.evaluated.append(v)
        return v

    def unexplained_share(self, outputs: dict) -> float:
        """sum |actual - variant|^2 / sum |actual - oracle|^2 over the failing outputs, each scaled
        by its allowance: the share of the deviation a variant leaves unexplained. Reproducing
        variants are ranked by it: unlike the largest ratio, it is not decided by one element's
        rounding noise when a fault is close to tolerance."""
        num = den = 0.0
        for n in self.bad:
            a, v = self.actual[n], np.asarray(outputs[n], dtype=np.float64)
            e = np.asarray(self.expected[n], dtype=np.float64)
            t = _tol(self.tolerance, n)
            with np.errstate(all="ignore"):
                allowed = t["atol"] + t["rtol"] * np.where(np.isfinite(e), np.abs(e), 0.0)
                allowed = np.where(allowed > 0, allowed, 1.0)
                ok = np.isfinite(a) & np.isfinite(v) & np.isfinite(e)
                num += float(np.sum(((a - v) / allowed)[ok] ** 2))
                den += float(np.sum(((a - e) / allowed)[ok] ** 2))
        return num / den if den > 0 else 0.0

    def run(self) -> dict:
        discrete = self.discrete()
        computed = self.computed()
        for v in discrete + computed:
            self.evaluate(v)
        for v in self.fit_eps(self.case, self.inputs, None):
            self.evaluate(v)
        # A fitted eps that is a common value competes with the discrete variants on residual; an
        # eps that is no common value can stand in for another change where there are few slices
        # (one slice: any variance factor is an eps), so it counts only if no pair of plain
        # conventions reproduces the output either.
        hit = self.best((0, 1), odd=False)
        odd = self.best((1,), odd=True) if hit is None else None
        if hit is None:
            # pairs: every two discrete changes, and each discrete change with the computed variants
            # that came closest alone (a second change rarely rescues a variant that was far off;
            # this keeps a pair search to a few dozen evaluations)
            closest = sorted(computed, key=lambda v: v.score)[:6]
            for a in discrete:
                for b in discrete + closest:
                    if a is not b and (b in closest or discrete.index(b) > discrete.index(a)):
                        pv = _pair(a, b)
                        if pv is not None:
                            self.evaluate(pv)
                case = self.case.with_params(**a.changes) if a.changes else self.case
                inputs = {k: val for k, val in self.inputs.items() if k not in a.drop}
                for e in self.fit_eps(case, inputs, a):
                    self.evaluate(e)
            hit = self.best((2,), odd=False) or odd or self.best((2,), odd=True)
        if hit is None:
            hit = self.bound_based()
        if hit is None:
            fitted = self.fitted_affine()
            if fitted is not None:
                self.evaluate(fitted)
                hit = self.best((4,))
        return self.report(hit)

    def best(self, tiers, odd=None):
        """The reproducing variant of smallest residual among ``tiers``; ``odd``: only those with
        (True) or without (False) an eps that is no common value."""
        ok = [v for v in self.evaluated if v.ok and v.tier in tiers
              and (odd is None or bool(v.extra.get("odd_eps")) == odd)]
        return min(ok, key=lambda v: (v.extra.get("fit", math.inf), v.score, not v.extra.get("underflow"))) if ok else None

    def report(self, hit: _Variant | None) -> dict:
        ranked = sorted(self.evaluated, key=lambda v: (not v.ok, v.tier if v.ok else 0, v.score))
        candidates = []
        for v in ranked:
            if len(candidates) == 5:
                break
            if hit is not None and v is hit:
                continue
            candidates.append({"cause": v.cause, "detail": v.detail(self), "params": _clean(v.params),
                               "residual": _clean(v.residual)})
        if hit is not None:
            out = {"cause": hit.cause, "detail": hit.detail(self), "params": _clean(hit.params),
                   "outputs": list(self.bad), "residual": _clean(hit.residual), "candidates": candidates}
            if hit.causes:
                out["causes"] = list(hit.causes)
            also = sorted({v.cause for v in self.evaluated if v.ok and v is not hit and not v.causes
                           and v.cause != hit.cause})
            if also:  # other single causes that reproduce the outputs too: the data cannot tell them apart
                out["also"] = also
            return out
        # Nothing reproduces every output: the variant that reproduces the most failing ones, if any.
        partial = [v for v in self.evaluated if any(v.residual.get(n, math.inf) <= 1 for n in self.bad)
                   and all(v.residual.get(n, math.inf) <= 1 for n in self.names if n not in self.bad)]
        stats = self.stats()
        if partial:
            v = min(partial, key=lambda v: (-sum(v.residual[n] <= 1 for n in self.bad), v.tier, v.score))
            got = [n for n in self.bad if v.residual[n] <= 1]
            rest = [n for n in self.bad if n not in got]
            out = {"cause": v.cause, "detail": f"{v.detail(self)} (explains {', '.join(got)}; "
                                               f"{', '.join(rest)} unexplained)",
                   "params": _clean(v.params), "outputs": got, "unexplained_outputs": rest,
                   "residual": _clean(v.residual), "candidates": [c for c in candidates if c["cause"] != v.cause or
                                                                c["params"] != _clean(v.params)][:5],
                   "stats": {n: stats[n] for n in rest}}
            if v.causes:
                out["causes"] = list(v.causes)
            return out
        return {"cause": "unexplained", "detail": self.unexplained_text(stats), "params": {},
                "outputs": list(self.bad), "residual": {}, "candidates": candidates, "stats": stats}

    # ---- the variants
    def n_of(self, case=None, axes=None) -> int:
        case = case or self.case
        forward, ax, _ = _geometry(case, self.x, axes)
        shape = forward(self.x).shape
        if case.op == "channel_stats" and case.params["method"] == "per_image_mean":
            ax = tuple(range(2, self.x.ndim))
        return int(np.prod([shape[a] for a in ax]))

    def discrete(self) -> list[_Variant]:
        case, p, out = self.case, self.case.params, []
        if case.op in STAT_OPS and p.get("eps", 0) > 0 and float(round_to_dtype(p["eps"], case.dtype)) == 0:
            # eps below the dtype's smallest subnormal (1e-12, 1e-8 in float16) is 0 when added in the
            # input dtype: a zero-variance slice gives 0/0 = NaN. Named first on a tie: an n-1 divisor
            # over one value makes the same NaN, but only the case's own arithmetic is needed for this.
            out.append(_Variant("eps_value", {"eps": 0.0, "given": p["eps"], "dtype": case.dtype}, _underflow_text,
                                changes={"eps": 0.0}, extra={"underflow": True}))
        if "variance" in p:
            other = OTHER[p["variance"]]
            out.append(_Variant("variance_divisor", {"variance": other, "n": self.n_of()}, _divisor_text,
                                changes={"variance": other}))
        if "running_variance" in p and p.get("training", True):
            other = OTHER[p["running_variance"]]
            n = self.n_of()
            out.append(_Variant("running_variance_estimator", {"running_variance": other, "n": n},
                                f"running_var from the {other} batch variance (divisor {n - 1 if other == 'unbiased' else n}"
                                f", n = {n}): x {n / max(n - 1, 1) if other == 'unbiased' else (n - 1) / n:.5g} "
                                f"instead of the {p['running_variance']} one", changes={"running_variance": other}))
            m = p["momentum"]
            if m is not None and m != 0.5:
                out.append(_Variant("momentum_convention", {"momentum": 1 - m},
                                    f"running = {m:g} x old + {1 - m:g} x new: momentum {m:g} applied to the old "
                                    f"value (Keras/Flax convention) instead of the new", changes={"momentum": 1 - m}))
        if case.op == "channel_stats":
            other = "pooled" if p["method"] == "per_image_mean" else "per_image_mean"
            text = ("std = mean over the images of each image's std (per_image_mean) instead of the pooled std"
                    if other == "per_image_mean" else "std pooled over all images instead of the mean of per-image stds")
            out.append(_Variant("per_image_std", {"method": other}, text, changes={"method": other}))
        present = [k for k in ("weight", "bias") if k in self.inputs]
        for drop in ([("weight",), ("bias",), ("weight", "bias")] if len(present) == 2 else [tuple(present)] if present else []):
            out.append(_Variant("affine_default", {"ignored": list(drop)},
                                f"{' and '.join(drop)} of the case ignored (y as without {' and '.join(drop)})", drop=drop))
        if case.op == "group_norm":
            c = self.x.shape[1]
            for g in [d for d in range(1, c + 1) if c % d == 0 and d != p["groups"]]:
                like = " (a layer norm)" if g == 1 else " (an instance norm)" if g == c else ""
                out.append(_Variant("reduction_axes", {"groups": g},
                                    f"groups = {g}{like} instead of {p['groups']}", changes={"groups": g}))
        return out

    def computed(self) -> list[_Variant]:
        case, out, dt = self.case, [], self.case.dtype
        if case.op in STAT_OPS:
            out.append(_Variant("eps_on_std", {"eps": case.params["eps"]},
                                f"y = (x - mean) / (std + eps): eps = {case.params['eps']:g} added to the standard "
                                f"deviation instead of the variance", fn=lambda c, i: _run(c, i, form="std")))
        if case.op in STAT_OPS + ("channel_stats",) and not (case.op == "batch_norm" and not case.params["training"]):
            dts = [dt] + (["float32"] if dt in ("float16", "bfloat16") else [])
            for cd in dts:
                for how in ("pairwise", "sequential"):
                    for clip in (False, True):
                        if clip and case.op == "channel_stats":
                            continue
                        out.append(_Variant("one_pass_variance", {"dtype": cd, "sum": how, "clip": clip},
                                            _one_pass_text, fn=_moments_fn(_one_pass, cd, how, clip)))
            if dt != "float64":
                hows = ("pairwise", "sequential", "tree") if dt != "bfloat16" else ("tree",)
                if dt == "float32":
                    hows = ("sequential",)
                for how in hows:
                    out.append(_Variant("low_precision_accumulation", {"dtype": dt, "sum": how}, _low_text,
                                        fn=_moments_fn(_low_precision, dt, how)))
                if dt in ("float16", "bfloat16"):
                    out.append(_Variant("low_precision_accumulation", {"dtype": dt, "mean": "rounded"}, _low_text,
                                        fn=_moments_fn(_rounded_mean, dt)))
                    out.append(_Variant("low_precision_accumulation", {"dtype": dt, "sum": "pairwise", "only": "variance"},
                                        _low_text, fn=_moments_fn(_low_precision, dt, "pairwise", True)))
        out += self.axes_variants()
        return out

    def axes_variants(self) -> list[_Variant]:
        case, x, out = self.case, self.x, []
        r, op = x.ndim, case.op
        if op in ("instance_norm", "layer_norm", "batch_norm") and not (op == "batch_norm" and not case.params["training"]):
            own = tuple(sorted(_op_axes(case, r)))
            named = {tuple(range(1, r)): "layer_norm axes, every dim but N", tuple(range(2, r)): "instance_norm axes",
                     (0,) + tuple(range(2, r)): "batch_norm axes", (r - 1,): "the last dim only", (1,): "C only"}
            sets = dict(named)
            for d in range(2, r):  # the channel axis read as canonical dim d (a layout misread)
                label = f"channel axis read as dim {d}" + (" (channels_last memory read as channels_first)" if d == 2 else
                                                            " (channels_first memory read as channels_last)" if d == r - 1 else "")
                keep = (0, d) if op == "instance_norm" else (d,) if op == "batch_norm" else None
                if keep is not None:
                    sets.setdefault(tuple(a for a in range(r) if a not in keep), label)
            if op == "layer_norm" and r > 2:  # axes taken in the other layout's memory order
                perm = [0] + list(range(2, r)) + [1]
                inv = list(np.argsort(perm))
                for mapping, label in ((perm, "axes read in channels_last memory order"),
                                       (inv, "axes read as channels_last memory positions")):
                    sets.setdefault(tuple(sorted(int(mapping[a]) for a in own)), label)
            for axes, label in sets.items():
                if axes == own or not axes or (op == "batch_norm" and len(axes) == r):
                    continue
                out.append(_Variant("reduction_axes", {"axes": list(axes)},
                                    f"statistics over dims {list(axes)} ({label}) instead of {list(own)}",
                                    fn=_axes_fn(axes)))
        elif op in ("group_norm", "channel_stats", "normalize") and r > 2:
            c = x.shape[1]
            for d in range(2, r):
                if x.shape[d] != c and op != "group_norm":
                    continue
                if op == "group_norm" and x.shape[d] % case.params["groups"]:
                    continue
                label = "channels_last memory read as channels_first" if d == 2 else "channels_first memory read as channels_last" if d == r - 1 else "layout misread"
                out.append(_Variant("reduction_axes", {"channel_axis": d},
                                    f"channel axis read as dim {d} ({label}) instead of 1", fn=_swap_fn(d)))
        return out

    def fit_eps(self, case: Case, inputs: dict, base: _Variant | None) -> list[_Variant]:
        """eps fitted from the output: per slice, y ~ k (x - mean) with k = 1/sqrt(var + eps), so
        eps_s = 1/k^2 - var; the median over slices (and over the best-conditioned quarter, the
        slices of smallest variance) plus the nearby common values are tried."""
        if case.op not in STAT_OPS or "y" not in self.actual:
            return []
        z = _unaffine(case, inputs, self.actual["y"])
        p, x = case.params, self.x
        if case.op == "batch_norm" and not p["training"]:
            chan = lambda v: np.asarray(v, dtype=np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))  # noqa: E731
            dev = x - chan(inputs["running_mean"])
            var = chan(inputs["running_var"])
            ax = _op_axes(case, x.ndim)
        else:
            forward, ax, _ = _geometry(case, x)
            _, dev, var = oracle._moments(forward(x), ax, DDOF[p["variance"]])
            z = forward(z)
        with np.errstate(all="ignore"):
            good = np.isfinite(z)
            zz = np.where(good, z, 0.0)
            dd = np.where(good, dev, 0.0)
            k = (dd * zz).sum(axis=ax, keepdims=True) / (dd * dd).sum(axis=ax, keepdims=True)
            eps_s = (1.0 / (k * k) - var).reshape(-1)
            var_s = np.broadcast_to(var, k.shape).reshape(-1)
        ok = np.isfinite(eps_s) & (k.reshape(-1) > 0)
        if ok.any():
            eps_s, var_s = eps_s[ok], var_s[ok]
            guesses = {float(np.median(eps_s))}
            calm = var_s <= np.quantile(var_s, 0.25)
            guesses.add(float(np.median(eps_s[calm])))
        else:  # nothing to fit (NaN, zeros): eps = 0 is the one value that makes 0/0
            eps_s, guesses = np.array([np.nan]), {0.0}
        tried = set()
        for g in list(guesses):
            g = max(g, 0.0)
            tried.add(g)
            near = [e for e in NICE_EPS if (g == 0 and e <= 1e-8) or (g > 0 and e > 0 and abs(math.log10(e / g)) < 0.35)
                    or (e == 0 and g < 1e-8)]
            tried.update(near)
        tried.discard(p["eps"])
        out = []
        for e in sorted(tried):
            fitted = float(np.median(eps_s))

            def text(ex, v, e=e, fitted=fitted, own=p["eps"]):
                return f"eps {e:.3g} instead of {own:g} (fitted {fitted:.4g} from {int(ok.sum())} slices)"

            v = _Variant("eps_value", {"eps": e, "fitted": fitted}, text, changes={"eps": e}, tier=1)
            v.extra["odd_eps"] = e not in NICE_EPS
            if base is not None:
                v = _pair(base, v)
                if v is None:
                    continue
            out.append(v)
        return out

    def fitted_affine(self) -> _Variant | None:
        """A per-channel scale and shift fitted by least squares: an affine the case did not ask for."""
        if "y" not in self.bad or self.case.op not in STAT_OPS + ("normalize",):
            return None
        e, a = np.asarray(self.expected["y"], dtype=np.float64), self.actual["y"]
        if not (np.isfinite(e).all() and np.isfinite(a).all()):
            return None
        if self.case.op == "layer_norm":  # its affine is not per channel
            return None
        ax = (0,) + tuple(range(2, e.ndim))
        em, am = e.mean(axis=ax, keepdims=True), a.mean(axis=ax, keepdims=True)
        with np.errstate(all="ignore"):
            scale = ((e - em) * (a - am)).sum(axis=ax, keepdims=True) / ((e - em) ** 2).sum(axis=ax, keepdims=True)
        scale = np.where(np.isfinite(scale), scale, 1.0)
        shift = am - scale * em
        s, b = scale.reshape(-1), shift.reshape(-1)

        def fn(case, inputs):
            out = oracle.reference(case, inputs)
            return {**out, "y": out["y"] * scale + shift}

        return _Variant("affine_default", {"scale": [float(v) for v in s], "shift": [float(v) for v in b]},
                        f"y = oracle x scale + shift per channel, scale in [{s.min():.4g}, {s.max():.4g}], shift in "
                        f"[{b.min():.4g}, {b.max():.4g}]: an affine the case did not ask for", fn=fn, tier=4)

    # ---- tier 3: bounds on the statistics implied by the output
    def bound_based(self) -> _Variant | None:
        """Tier 3, alone or after one discrete change that accounts for the other failing outputs."""
        for base in [None] + [v for v in self.discrete() if v.fn is None]:
            if base is None:
                case, inputs, todo, residual = self.case, self.inputs, list(self.bad), {}
            else:
                case = self.case.with_params(**base.changes) if base.changes else self.case
                inputs = {k: val for k, val in self.inputs.items() if k not in base.drop}
                ref = oracle.reference(case, inputs)
                residual, todo = {}, []
                for n in self.names:
                    residual[n], ok = (_ratio(ref[n], self.actual[n], **_tol(self.tolerance, n)) if n in ref
                                       else (math.inf, False))
                    if not ok:
                        todo.append(n)
                # the change must fix some failing output and leave the bound analysis the rest
                if not todo or len(todo) == len(self.bad) or any(n not in self.bad for n in todo):
                    continue
            for v in _implied(self, case, inputs, todo):
                v.residual = {**{n: r for n, r in residual.items() if n not in todo}, **v.residual}
                v.score = max(v.residual.values(), default=0.0)
                if base is not None:
                    v.params = {**v.params, **base.params}
                    v.text = (lambda ex, w, t=v.text, b=base: f"{t}; and {b.detail(ex)}")
                    v.causes = (v.cause, base.cause)
                self.evaluated.append(v)
                return v
        return None

    # ---- statistics for a person when nothing explains it
    def stats(self) -> dict:
        out = {}
        for n in self.names:
            e = np.asarray(self.expected[n], dtype=np.float64)
            a = self.actual[n]
            both = np.isfinite(e) & np.isfinite(a)
            big = both & (np.abs(e) > 1e-3 * (np.abs(e[both]).max() if both.any() else 0))
            with np.errstate(all="ignore"):
                ratio = a[big] / e[big]
            entry = {"nan_actual": int(np.isnan(a).sum()), "nan_expected": int(np.isnan(e).sum()),
                     "inf_actual": int(np.isinf(a).sum())}
            if ratio.size:
                q10, q50, q90 = np.quantile(ratio, [0.1, 0.5, 0.9])
                entry.update(ratio_median=float(q50), ratio_spread=float(q90 - q10))
            if both.any():
                entry["mean_offset"] = float((a[both] - e[both]).mean())
                entry["max_abs"] = float(np.abs(a[both] - e[both]).max())
            corr = self.slice_correlation(n, e, a)
            if corr is not None:
                entry["corr_error_kappa"] = corr
            out[n] = entry
        return out

    def slice_correlation(self, name, e, a):
        """Pearson correlation, over the normalized slices, of the slice's largest error with its
        |mean| / std (how much a rounding of the mean is amplified)."""
        case, x = self.case, self.x
        try:
            if name == "y" and case.op in STAT_OPS and not (case.op == "batch_norm" and not case.params["training"]):
                forward, ax, _ = _geometry(case, x)
                mean, _, var = oracle._moments(forward(x), ax, 0)
                with np.errstate(all="ignore"):
                    err = np.abs(forward(a) - forward(e)).max(axis=ax).reshape(-1)
            elif e.ndim == 1 and e.shape[0] == x.shape[1]:
                mean, _, var = oracle._moments(x, (0,) + tuple(range(2, x.ndim)), 0)
                err = np.abs(a - e)
            else:
                return None
            with np.errstate(all="ignore"):
                kappa = (np.abs(mean) / np.sqrt(var)).reshape(-1)
            ok = np.isfinite(kappa) & np.isfinite(err)
            if ok.sum() < 3 or np.std(kappa[ok]) == 0 or np.std(err[ok]) == 0:
                return None
            return float(np.corrcoef(err[ok], kappa[ok])[0, 1])
        except Exception:
            return None

    def unexplained_text(self, stats) -> str:
        parts = []
        for n in self.bad:
            s = stats[n]
            bits = []
            if "ratio_median" in s:
                bits.append(f"actual/oracle median {s['ratio_median']:.5g} (10-90% spread {s['ratio_spread']:.3g})")
            if "mean_offset" in s:
                bits.append(f"mean offset {s['mean_offset']:.3g}")
            if "corr_error_kappa" in s:
                bits.append(f"error vs |mean|/std correlation {s['corr_error_kappa']:.2f}")
            if s["nan_actual"] != s["nan_expected"]:
                bits.append(f"NaN {s['nan_actual']} vs {s['nan_expected']} expected")
            parts.append(f"{n}: " + ", ".join(bits))
        return "no single change of convention reproduces it; " + "; ".join(parts)


def _clean(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = str(v)
        else:
            out[k] = v
    return out


def _moments_fn(factory, *args):
    def fn(case, inputs):
        fn.moments = factory(*args)
        return _run(case, inputs, moments=fn.moments)
    fn.moments = None
    return fn


def _axes_fn(axes):
    return lambda case, inputs: _run(case, inputs, axes=axes)


def _swap_fn(d):
    """The op run with canonical dims 1 and ``d`` swapped (the channel axis read as dim d); the
    case's own affine applied on the real channels."""
    def fn(case, inputs):
        bare = case.with_params(**{k: None for k in ("weight", "bias") if k in case.params})
        swapped = {k: (np.swapaxes(v, 1, d) if k == "x" else [np.swapaxes(s, 1, d) for s in v] if k == "x_steps" else v)
                   for k, v in inputs.items() if k not in ("weight", "bias")}
        out = oracle.reference(bare, swapped)
        if case.op == "channel_stats":
            return out
        out = dict(out, y=_affine(case, inputs, np.swapaxes(out["y"], 1, d)))
        return out
    return fn


# --------------------------------------------------------------------------------------- texts

def _divisor_text(ex: _Explainer, v: _Variant) -> str:
    n, other = v.params["n"], v.params["variance"]
    name = "std" if ex.case.op == "channel_stats" else "y"
    if n <= 1:
        return f"{other} variance with n = {n}: the n-1 divisor is 0 (0/0 = NaN where the biased variance is 0)"
    factor = (n - 1) / n if other == "unbiased" else n / (n - 1)
    frac = f"{n - 1}/{n}" if other == "unbiased" else f"{n}/{n - 1}"
    measured, exact = _measured_scale(ex, name), math.sqrt(factor)
    if measured is None or abs(measured - exact) <= 1e-4 * exact:
        head = f"{name} = oracle x {exact:.5f} = sqrt({frac})"
    else:  # eps, another change of a pair, or rounding moves the measured factor
        head = f"{name} = oracle x {measured:.5f} (sqrt({frac}) = {exact:.5f})"
    return f"{head}: {other} variance (divisor {n - 1 if other == 'unbiased' else n}), n = {n}"


def _underflow_text(ex: _Explainer, v: _Variant) -> str:
    """eps that rounds to 0 in the input dtype: how many slices have a variance of 0 there."""
    case, dt, eps = v.extra.get("case", ex.case), v.params["dtype"], v.params["given"]
    if case.op == "batch_norm" and not case.params["training"]:  # y normalized with the running statistics
        var = np.asarray(ex.inputs["running_var"], dtype=np.float64)
    elif case.op == "batch_norm" and case.params.get("eval_after"):  # ... with those just updated
        var = np.asarray(ex.expected["running_var"], dtype=np.float64)
    else:
        forward, ax, _ = _geometry(case, ex.x)
        var = oracle._moments(forward(ex.x), ax, DDOF[case.params["variance"]])[2]
    zero = int((round_to_dtype(var, dt) == 0).sum())
    tiny = 2.0 ** -24 if dt == "float16" else 2.0 ** -133 if dt == "bfloat16" else float(np.finfo(dt).smallest_subnormal)
    head = (f"eps {eps:g} is 0 in {dt} (under half its smallest subnormal, {tiny:.3g}): added to the variance in "
            f"{dt}, eps does not take effect (eps 0)")
    if zero:
        return f"{head}; var + eps = 0 in {zero} of {var.size} slice(s) of zero variance, where y = 0/0 = NaN instead of 0"
    return f"{head}; y = (x - mean) / sqrt(var)"


def _measured_scale(ex: _Explainer, name: str) -> float | None:
    if name not in ex.actual:
        return None
    e = np.asarray(ex.expected[name], dtype=np.float64)
    a = ex.actual[name]
    if name == "y":
        e, a = _unaffine(ex.case, ex.inputs, e), _unaffine(ex.case, ex.inputs, a)
    ok = np.isfinite(e) & np.isfinite(a) & (np.abs(e) > 0.25 * np.nanmax(np.abs(e)) if e.size else False)
    if not ok.any():
        return None
    return float(np.median(a[ok] / e[ok]))


def _stat_summary(ex: _Explainer, v: _Variant):
    """(max E[x^2], true var at the worst slice, max finite |variance error|, NaN/inf variances)
    of the statistics a variant normalized y with."""
    rec = v.extra.get("moments")
    case = v.extra.get("case", ex.case)
    if rec is None or rec.last is None or case.op == "channel_stats":
        return None
    forward, ax, _ = _geometry(case, ex.x)
    mean, _, var = oracle._moments(forward(ex.x), ax, DDOF[case.params["variance"]])
    _, var_v = rec.last
    if np.shape(var_v) != var.shape:
        return None
    with np.errstate(all="ignore"):
        err = np.abs(var_v - var)
    finite = np.isfinite(err)
    bad = int((~np.isfinite(var_v)).sum())
    if not finite.any():
        return float((mean * mean + var).max()), float("nan"), float("nan"), bad
    worst = np.unravel_index(int(np.argmax(np.where(finite, err, -1.0))), err.shape)
    return float((mean * mean + var).max()), float(var[worst]), float(err[worst]), bad


def _one_pass_text(ex: _Explainer, v: _Variant) -> str:
    cd = v.params["dtype"]
    head = (f"var = E[x^2] - E[x]^2 in {cd} ({v.params['sum']} sums{', clipped at 0' if v.params['clip'] else ''})")
    s = _stat_summary(ex, v)
    if s is None:
        return head
    ex2, var, err, bad = s
    text = f"{head}: E[x^2] up to {ex2:.3g}, u = {UNIT[cd]:.3g}"
    if math.isfinite(err):
        text += f", variance off by up to {err:.3g} (true {var:.3g})"
    if bad:
        text += f", NaN/inf variance in {bad} slice(s) (x^2 or E[x^2] overflows {cd}, or the difference goes negative)"
    return text


def _low_text(ex: _Explainer, v: _Variant) -> str:
    dt = v.params["dtype"]
    if v.params.get("mean") == "rounded":
        forward, ax, _ = _geometry(ex.case, ex.x)
        mean, _, var = oracle._moments(forward(ex.x), ax, 0)
        with np.errstate(all="ignore"):
            shift = np.abs(round_to_dtype(mean, dt) - mean) / np.sqrt(var + ex.case.params.get("eps", 0.0))
        return (f"x - mean with the mean rounded to {dt} (u = {UNIT[dt]:.3g}, |mean| up to {np.abs(mean).max():.3g}): "
                f"y off by up to |round(mean) - mean| / std = {np.nanmax(shift):.3g}")
    head = f"{'the variance' if v.params.get('only') else 'sums'} accumulated in {dt} ({v.params['sum']}, u = {UNIT[dt]:.3g})"
    s = _stat_summary(ex, v)
    if s is None:
        return head
    ex2, var, err, bad = s
    text = head
    if math.isfinite(err):
        text += f": variance off by up to {err:.3g} (true {var:.3g})"
    if bad:
        text += f"; NaN/inf variance in {bad} slice(s) (a sum passes {dt}'s largest value {MAXIMUM[dt]:.5g})"
    return text


# --------------------------------------------------------------------------------------- tier 3

def _c_pairwise(n: int) -> float:
    """3 (log2 n + 2): the worst-case relative error, in units u, of E[x^2] - E[x]^2 with tree
    (pairwise) sums: log2 n for the sum of squares, 2 log2 n for E[x]^2 (twice the mean's error)
    would be 3 log2 n, plus the roundings of x^2, of the two divisions and of the difference."""
    return 3.0 * (math.log2(max(n, 2)) + 2.0)


def _implied(ex: _Explainer, case: Case, inputs: dict, todo: list) -> list[_Variant]:
    """one_pass_variance / low_precision_accumulation from the statistics implied by the outputs.

    For y: per normalized slice, fit y ~ k (x - mean) + c (after undoing the affine): the
    implementation's variance is 1/k^2 - eps and its mean is mean - c/k (a shift dm). The fit must
    reproduce y within tolerance (the error is a per-slice statistic, not elementwise noise). For
    running_var and pooled std the implied variance is read directly, for the means the value.
    With c = 3 (log2 n + 2) (see :func:`_c_pairwise`), u of the computing dtype and u_acc of a
    correct implementation's accumulation (compare.ACCUMULATION):

    - one_pass_variance: no mean output is off (the formula only touches the variance); every
      slice's variance error is within c u E[x^2]; some slice's error is beyond what a two-pass
      computation with the observed mean shift can give, c u_acc var + 2 dm^2; NaN only where the
      difference can go negative (var <= c u E[x^2]) or inf - inf (x^2 and E[x]^2 overflow); y = 0
      (an infinite variance) only where x^2 overflows and E[x]^2 does not.
    - low_precision_accumulation (input dtype float32/16, bfloat16): mean errors within a sequential
      sum's worst case (n + 2) u mean|x|, variance errors within (2n + 4) u var + 2 dm^2, some error
      beyond a float32 accumulation's (c u_acc); NaN / y = 0 only where a sum passes the dtype's maximum.
    """
    p, dt = case.params, case.dtype
    if case.op not in STAT_OPS + ("channel_stats",) or (case.op == "batch_norm" and not p["training"]):
        return []
    if np.asarray(inputs["x"]).size == 0:  # an empty batch: no values whose sums could be off
        return []
    looks, reproduced = {}, {}
    for name in todo:
        if name == "y":
            looks[name] = _implied_y(ex, case, inputs, reproduced)
        elif name in ("running_var", "std", "running_mean", "mean"):
            looks[name] = _implied_channel(ex, case, inputs, name)
        else:
            looks[name] = None
    if any(v is None for v in looks.values()):
        return []
    recs = [r for rs in looks.values() for r in rs]
    u_acc = UNIT[ACCUMULATION[dt]]
    mean_off = any(r["kind"] == "mean" for r in recs)
    out = []
    if not mean_off:
        for cd in [dt] + (["float32"] if dt in ("float16", "bfloat16") else []):
            found = _check_one_pass(recs, cd, u_acc)
            if found is not None:
                out.append(_implied_variant("one_pass_variance", found, reproduced))
                break
    if not out and dt != "float64":
        found = _check_low_precision(recs, dt, u_acc)
        if found is not None:
            out.append(_implied_variant("low_precision_accumulation", found, reproduced))
    return out


def _implied_variant(cause, found, reproduced) -> _Variant:
    return _Variant(cause, found["params"], found["text"], tier=3, residual=dict(reproduced),
                    score=max(reproduced.values(), default=0.0), ok=True)


def _states(recs) -> str:
    nans = sum(r["state"] == "nan" for r in recs)
    infs = sum(r["state"] == "inf_var" for r in recs)
    bits = []
    if nans:
        bits.append(f"NaN in {nans} slice(s)")
    if infs:
        bits.append(f"an infinite variance (y = 0) in {infs} slice(s)")
    return ", ".join(bits)


def _check_one_pass(recs, cd: str, u_acc: float) -> dict | None:
    u, big = UNIT[cd], MAXIMUM[cd]
    excess, worst = False, None
    for r in recs:
        c = _c_pairwise(r["n"])
        bound = c * u * r["ex2"]
        if r["state"] == "nan":
            if not (r["var"] <= bound or (r["maxsq"] > big and r["meansq"] > big)):
                return None
            excess = True
        elif r["state"] == "inf_var":
            if not (r["maxsq"] > big >= r["meansq"]):
                return None
            excess = True
        else:
            if r["err"] > bound:
                return None
            dm2 = r["dm"] ** 2 if r["dm"] is not None else (c * u_acc * r["absmean"]) ** 2
            if r["err"] > c * u_acc * r["var"] + 2 * dm2:
                excess = True
            if worst is None or r["err"] / bound > worst["err"] / worst["bound"]:
                worst = dict(r, bound=bound, c=c)
    if not excess:
        return None
    params = {"dtype": cd, "u": u, "implied": True}
    text = f"var = E[x^2] - E[x]^2 in {cd} (u = {u:.3g}), implied by the outputs"
    if worst is not None:
        text += (f": variance off by up to {worst['err']:.3g} (true {worst['var']:.3g}, E[x^2] = {worst['ex2']:.3g}), "
                 f"within {worst['c']:.0f} u E[x^2] = {worst['bound']:.3g} and beyond a two-pass error")
        params.update({"max_var_error": worst["err"], "var": worst["var"], "E[x^2]": worst["ex2"],
                       "bound": worst["bound"]})
    states = _states(recs)
    if states:
        text += f"; {states}: E[x^2] up to {max(r['ex2'] for r in recs):.3g}, x^2 up to {max(r['maxsq'] for r in recs):.3g} " \
                f"(largest {cd} {big:.5g}), so the difference goes negative or overflows"
        params.update(nan_slices=sum(r["state"] == "nan" for r in recs),
                      inf_slices=sum(r["state"] == "inf_var" for r in recs))
    return {"params": params, "text": text}


def _check_low_precision(recs, dt: str, u_acc: float) -> dict | None:
    u, big = UNIT[dt], MAXIMUM[dt]
    excess, worst = False, None
    for r in recs:
        n = r["n"]
        c = _c_pairwise(n)
        mean_bound = (n + 2) * u * r["meanabs"]
        if r["state"] != "finite":
            if not r["sum_over"]:
                return None
            excess = True
            continue
        if r["kind"] == "mean":
            bound, floor = mean_bound, c * u_acc * r["absmean"]
        else:
            dm = r["dm"] if r["dm"] is not None else mean_bound
            if r["dm"] is not None:
                if r["dm"] > mean_bound:
                    return None
                if r["dm"] > c * u_acc * (r["absmean"] + math.sqrt(max(r["var"], 0.0))):
                    excess = True
            bound = (2 * n + 4) * u * r["var"] + 2 * dm ** 2
            floor = c * u_acc * r["var"] + 2 * (r["dm"] or 0.0) ** 2
        if r["err"] > bound:
            return None
        if r["err"] > floor:
            excess = True
        if bound > 0 and (worst is None or r["err"] / bound > worst["err"] / worst["bound"]):
            worst = dict(r, bound=bound)
    if not excess:
        return None
    params = {"dtype": dt, "u": u, "implied": True}
    text = f"sums accumulated in {dt} (u = {u:.3g}), implied by the outputs"
    if worst is not None:
        what = "mean" if worst["kind"] == "mean" else "variance"
        text += (f": {what} off by up to {worst['err']:.3g}, within a sequential {dt} sum's bound "
                 f"{worst['bound']:.3g} and beyond a float32 accumulation's")
        params.update({"max_error": worst["err"], "bound": worst["bound"]})
    states = _states(recs)
    if states:
        text += f"; {states}: sums pass {dt}'s largest value {big:.5g}"
    return {"params": params, "text": text}


def _implied_y(ex: _Explainer, case: Case, inputs: dict, reproduced: dict):
    """Per-slice records for y, or None when a per-slice (mean, variance) model does not reproduce y."""
    p, x = case.params, ex.x
    forward, ax, back = _geometry(case, x)
    xs = forward(x)
    mean, dev, var = oracle._moments(xs, ax, DDOF[p["variance"]])
    _, _, var_b = oracle._moments(xs, ax, 0)
    n = int(np.prod([xs.shape[a] for a in ax]))
    z = forward(_unaffine(case, inputs, ex.actual["y"]))
    with np.errstate(all="ignore"):
        finite = np.isfinite(z)
        nan_slice = ~finite.all(axis=ax, keepdims=True)
        zz = np.where(finite, z, 0.0)
        zbar = zz.mean(axis=ax, keepdims=True)
        k = (dev * (zz - zbar)).sum(axis=ax, keepdims=True) / (dev * dev).sum(axis=ax, keepdims=True)
        model = np.where(nan_slice, z, k * dev + zbar)
        zero = (np.abs(zz).max(axis=ax, keepdims=True) == 0) & ~nan_slice & (var > 0)
        var_impl = np.where(k > 0, 1.0 / (k * k) - p["eps"], np.inf)
        dm = np.where(k > 0, -zbar / k, np.nan)
    # The model must reproduce y within tolerance plus the output's own rounding: an output far
    # larger than the oracle's (a variance that cancelled) carries 4 u_dtype max|y| of rounding per
    # slice, and that noise also moves the fitted intercept.
    y_hat = _affine(case, inputs, back(model))
    a = ex.actual["y"]
    tol = _tol(ex.tolerance, "y")
    with np.errstate(all="ignore"):
        scale = back(np.broadcast_to(np.where(finite, np.abs(forward(a)), 0).max(axis=ax, keepdims=True), z.shape))
        allowed = tol["atol"] + tol["rtol"] * np.where(np.isfinite(y_hat), np.abs(y_hat), 0.0) + 4 * UNIT[case.dtype] * scale
        diff = np.where(np.isnan(y_hat) & np.isnan(a), 0.0, np.abs(y_hat - a))
        diff = np.where(np.isnan(diff), np.inf, diff)
        ratio = float(np.max(diff / np.maximum(allowed, 1e-300))) if diff.size else 0.0
    if not ratio <= 1:
        return None
    reproduced["y"] = ratio
    expected_nan = ~np.isfinite(forward(np.asarray(ex.expected["y"], dtype=np.float64))).all(axis=ax, keepdims=True)
    recs = []
    absx = np.abs(xs)
    meanabs = absx.mean(axis=ax, keepdims=True)
    maxsq = (absx.max(axis=ax, keepdims=True)) ** 2
    sum_abs = absx.sum(axis=ax, keepdims=True)
    sum_sq = (dev * dev).sum(axis=ax, keepdims=True)
    dtmax = MAXIMUM[case.dtype]
    for idx in np.ndindex(k.shape):
        if expected_nan[idx]:
            continue
        err = abs(float(var_impl[idx]) - float(var[idx]))
        state = "nan" if nan_slice[idx] else "inf_var" if zero[idx] or not math.isfinite(err) else "finite"
        recs.append({"kind": "var", "n": n, "var": float(var[idx]), "absmean": abs(float(mean[idx])),
                     "meansq": float(mean[idx]) ** 2, "ex2": float(mean[idx] ** 2 + var_b[idx]),
                     "meanabs": float(meanabs[idx]), "maxsq": float(maxsq[idx]), "state": state,
                     "err": err if state == "finite" else 0.0,
                     "dm": abs(float(dm[idx])) if state == "finite" else None,
                     "sum_over": bool(sum_abs[idx] > dtmax or sum_sq[idx] > dtmax or maxsq[idx] > dtmax)})
    return recs


def _implied_channel(ex: _Explainer, case: Case, inputs: dict, name: str):
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
        old = np.asarray(inputs["running_var" if name == "running_var" else "running_mean"], dtype=np.float64).reshape(-1)
        implied = (a - (1 - m) * old) / m
        ddof = DDOF[p["running_variance"]]
    elif case.op == "channel_stats" and p["method"] == "pooled":
        xs, implied, ddof = x, (a * a if name == "std" else a), DDOF[p["variance"]]
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
    recs = []
    for i in range(a.size):
        kind = "var" if name in ("running_var", "std") else "mean"
        true = var[i] if kind == "var" else mean[i]
        state = "nan" if np.isnan(implied[i]) else "inf_var" if np.isinf(implied[i]) else "finite"
        recs.append({"kind": kind, "n": n, "var": float(var[i]), "absmean": abs(float(mean[i])),
                     "meansq": float(mean[i]) ** 2, "ex2": float(mean[i] ** 2 + var_b[i]),
                     "meanabs": float(meanabs[i]), "maxsq": float(maxsq[i]), "state": state,
                     "err": abs(float(implied[i] - true)) if state == "finite" else 0.0, "dm": None,
                     "sum_over": bool(sum_abs[i] > dtmax or maxsq[i] * n > dtmax)})
    return recs

"""Statistics computed in a dtype: the moments functions the oracle is varied with.

Each factory returns ``moments(x, axes, ddof) -> (mean, x - mean, var)`` (float64 arrays of values
computed in the simulated dtype) for :class:`normconf.oracle.Variation`; it remembers its last
call's ``(mean, var)`` in ``.last`` (the oracle computes y's statistics last) for the texts.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import oracle
from ..inputs import round_to_dtype
from .geometry import geometry

MAXIMUM = {"float64": float(np.finfo(np.float64).max), "float32": float(np.finfo(np.float32).max),
           "float16": 65504.0, "bfloat16": 3.3895313892515355e38}


class Arith:
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


def recorder(fn):
    """Wrap a moments function so that its last (mean, var) is kept in ``.last``."""
    def moments(x, axes, ddof):
        mean, dev, var = fn(x, axes, ddof)
        moments.last = (mean, var)
        return mean, dev, var
    moments.last = None
    return moments


def one_pass(cd: str, how: str, clip: bool):
    """var = E[x^2] - E[x]^2, every step in ``cd`` (``clip``: max(var, 0), as Flax does)."""
    ar = Arith(cd)

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
    return recorder(moments)


def low_precision(dt: str, how: str, var_only: bool = False):
    """Two-pass mean and variance with the sums (and x - mean, its square) in ``dt``. ``var_only``:
    only the variance is (NumPy: ``np.mean`` of float16 keeps a float32 accumulator, ``np.var``
    does not, so its sum can overflow to inf and y collapses to 0)."""
    ar = Arith(dt)

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
    return recorder(moments)


def rounded_mean(dt: str):
    """Exact statistics, but x - mean with the mean rounded to ``dt`` (torch's CPU half batch_norm)."""
    def moments(x, axes, ddof):
        mean, _, var = oracle._moments(x, axes, ddof)
        mean = round_to_dtype(mean, dt)
        return mean, x - mean, var
    return recorder(moments)


def varied(case, inputs: dict, variation: oracle.Variation) -> dict:
    """The oracle of ``case`` under ``variation``. A tracking instance norm's running statistics are
    left out: the variations have only ever varied y there (its running statistics are explained
    by the discrete variants), and explanations must not move with this structure."""
    if case.op == "instance_norm" and case.params.get("track_running_stats"):
        case = case.with_params(track_running_stats=False)
    return oracle.reference(case, inputs, variation)


def with_moments(factory, *args) -> Callable:
    """``fn(case, inputs)``: the oracle with the statistics of ``factory(*args)``, a fresh recorder
    per call, which stays in ``fn.moments`` for the variant's text."""
    def fn(case, inputs):
        fn.moments = factory(*args)
        return varied(case, inputs, oracle.Variation(moments=fn.moments))
    # mypy does not model attributes set on a function object (python/mypy#2087); fn.moments is read
    # with getattr by the explainer
    fn.moments = None  # type: ignore[attr-defined]
    return fn


def with_variation(**kw) -> Callable:
    """``fn(case, inputs)``: the oracle under ``Variation(**kw)`` (eps placement, axes)."""
    variation = oracle.Variation(**kw)
    return lambda case, inputs: varied(case, inputs, variation)


def stat_summary(ex, v):
    """(max E[x^2], true var at the worst slice, max finite |variance error|, NaN/inf variances)
    of the statistics a variant normalized y with (its recorder's last call), or None."""
    rec = v.extra.get("moments")
    case = v.extra.get("case", ex.case)
    if rec is None or rec.last is None or case.op == "channel_stats":
        return None
    forward, ax, _ = geometry(case, ex.x)
    mean, _, var = oracle._moments(forward(ex.x), ax, oracle.DDOF[case.params["variance"]])
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

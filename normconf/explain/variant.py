"""A variant: the float64 oracle with one convention changed, and how close it comes to an output."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..compare import absolute


@dataclass
class Variant:
    """One candidate explanation. ``changes`` (case parameters) and ``drop`` (inputs) make a
    *discrete* variant, run by the oracle itself; ``fn(case, inputs) -> outputs`` a *computed* one
    (the oracle under a :class:`normconf.oracle.Variation`, or with its inputs or outputs
    transformed). ``tier`` is the search stage that produced it; ``residual`` (per output), ``score``
    (their max) and ``ok`` (every output within tolerance) are filled in when it is evaluated."""

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


def pair(a: Variant, b: Variant) -> Variant | None:
    """Both changes at once, or None when they cannot be combined (the same cause, two computed
    variants, or the same case parameter changed twice)."""
    if a.cause == b.cause or (a.fn is not None and b.fn is not None) or set(a.changes) & set(b.changes):
        return None
    first, second = (a, b) if a.score <= b.score else (b, a)  # the closer single variant leads

    def text(ex, v):
        return f"{first.detail(ex)}; and {second.detail(ex)}"

    extra = {"odd_eps": bool(a.extra.get("odd_eps") or b.extra.get("odd_eps"))}
    # a variant computed in another dtype is judged at that dtype's tolerance
    # (causes/compute_precision.py), with the other change too: the pair's output is that arithmetic
    tolerance = a.extra.get("tolerance") or b.extra.get("tolerance")
    if tolerance is not None:
        extra["tolerance"] = tolerance
    return Variant(cause=first.cause, params={**first.params, **second.params}, text=text,
                   changes={**first.changes, **second.changes}, drop=first.drop + second.drop,
                   fn=first.fn or second.fn, tier=2, causes=(first.cause, second.cause), extra=extra)


def tol(tolerance: dict, name: str) -> dict:
    """The caller's tolerance of output ``name`` as :func:`ratio`'s keyword arguments."""
    t = tolerance.get(name) or {}
    return {"atol": float(t.get("atol", 0.0)), "rtol": float(t.get("rtol", 0.0)), "scale": t.get("scale")}


def ratio(expected, actual, atol: float, rtol: float, scale: str | None = None) -> tuple[float, bool]:
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
        worst = np.where(allowed > 0, diff / allowed, np.where(diff > 0, np.inf, 0.0))
    return float(worst.max()), ok


def num(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def distinct(*values: float, digits: int = 3) -> list[str]:
    """``values`` as text with at least ``digits`` significant digits and as many more as it takes
    for values that differ to read differently (a parameter rounded to float32 is not "1e-05 instead
    of 1e-05"); up to 17, where every float64 is distinct.

    >>> distinct(1e-5, float(__import__("numpy").float32(1e-5)))
    ['1e-05', '9.9999997e-06']
    >>> distinct(0.9, 0.1), distinct(1e-3, 1e-3)
    (['0.9', '0.1'], ['0.001', '0.001'])
    """
    want = len({float(v) for v in values})
    for d in range(digits, 18):
        texts = [f"{float(v):.{d}g}" for v in values]
        if len(set(texts)) == want:
            return texts
    return [repr(float(v)) for v in values]


def clean(d: dict) -> dict:
    """``d`` with non-finite floats as text (the JSON report is strict JSON)."""
    return {k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in d.items()}

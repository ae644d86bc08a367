"""rms_norm with one step computed otherwise: what the causes' rms_norm variants run.

The oracle's :func:`normconf.oracle.rms_norm` varies its axes and puts eps on the rms under a
:class:`normconf.oracle.Variation`; the statistic itself (the mean of the squares) and the mean
subtraction of a layer norm are no moments a Variation can swap in, so :func:`forward` takes them
as arguments and assembles y exactly as the oracle does (the case's weight, ``weight_offset`` and
``cast``); tests/test_variation.py checks that the unchanged :func:`forward` is the oracle's y, to
the bit.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..cases import rms_eps
from ..inputs import round_to_dtype
from .arith import Arith


def mean_square(x: np.ndarray, axes: tuple) -> np.ndarray:
    """The oracle's statistic: mean(x^2) over ``axes`` in float64, kept as size-1 dims."""
    n = int(np.prod([x.shape[a] for a in axes]))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return (x * x).sum(axis=axes, keepdims=True) / np.float64(n)


def forward(case, inputs: dict, statistic: Callable | None = None, subtract_mean: bool = False) -> dict:
    """rms_norm's y with ``statistic(x, axes) -> mean of the squares`` (default :func:`mean_square`)
    or, ``subtract_mean``, x normalized as a layer norm over the same axes: (x - mean) / sqrt(var +
    eps) with the biased variance; then the case's weight, weight_offset and cast, as the oracle."""
    x = np.asarray(inputs["x"], dtype=np.float64)
    p = case.params
    axes, eps = tuple(p["axes"]), rms_eps(p, case.dtype)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if subtract_mean:
            from .. import oracle

            dev, var = oracle.deviations(x, axes, 0)
            yhat = dev / np.sqrt(var + eps)
        else:
            yhat = x / np.sqrt((statistic or mean_square)(x, axes) + eps)
    return {"y": scaled(case, inputs, yhat)}


def scaled(case, inputs: dict, yhat: np.ndarray) -> np.ndarray:
    """``yhat`` times (weight_offset + weight) with the case's rounding points (the oracle's)."""
    p = case.params
    if "weight" not in inputs:
        return round_to_dtype(yhat, case.dtype) if p["cast"] == "before_weight" else yhat
    w = np.asarray(inputs["weight"], dtype=np.float64).reshape(
        [yhat.shape[d] if d in p["axes"] else 1 for d in range(yhat.ndim)])
    scale = p["weight_offset"] + w
    with np.errstate(invalid="ignore", over="ignore"):
        if p["cast"] == "before_weight":
            return round_to_dtype(round_to_dtype(yhat, case.dtype) * round_to_dtype(scale, case.dtype), case.dtype)
        return yhat * scale


def in_dtype(dt: str, how: str) -> Callable:
    """``fn(case, inputs)``: rms_norm computed in ``dt`` throughout, as LLaMA's lines run on a
    float16 tensor without its ``x.float()``: the squares and their mean
    (:func:`low_precision_square_mean`), + eps, the rsqrt and x times it each rounded to ``dt``, then
    the weight multiply in ``dt``."""
    ar = Arith(dt)

    def fn(case, inputs):
        x = np.asarray(inputs["x"], dtype=np.float64)
        p = case.params
        axes = tuple(p["axes"])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ms = low_precision_square_mean(dt, how)(x, axes)
            # the rsqrt as torch's CPU half kernel gives it: the square root and its reciprocal each
            # rounded (measured: it matches torch.rsqrt on a float16 tensor element for element)
            root = np.sqrt(np.asarray(ar(ar(ms) + ar(rms_eps(p, case.dtype))), dtype=np.float64))
            r = ar(1.0 / np.asarray(ar(root), dtype=np.float64))
            y = ar(ar(x) * r)
            if "weight" in inputs:
                w = np.asarray(inputs["weight"], dtype=np.float64).reshape(
                    [x.shape[d] if d in p["axes"] else 1 for d in range(x.ndim)])
                y = ar(y * ar(p["weight_offset"] + w))
        return {"y": np.asarray(y, dtype=np.float64)}
    return fn


def low_precision_square_mean(dt: str, how: str) -> Callable:
    """``statistic(x, axes)``: the squares rounded to ``dt``, summed in ``dt`` (``how``: see
    :meth:`normconf.explain.arith.Arith.sum`) and divided by n there, as ``x.pow(2).mean(-1)`` on a
    float16 tensor without LLaMA's ``x.float()``: a square past 65504 is inf, and y = 0 there."""
    ar = Arith(dt)

    def statistic(x, axes):
        n = int(np.prod([x.shape[a] for a in axes]))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            xd = ar(x)
            return np.asarray(ar(ar.sum(ar(xd * xd), axes, how) / ar(n)), dtype=np.float64)  # n = 0: 0/0
    return statistic

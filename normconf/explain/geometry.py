"""Where an op's statistics live: the reduced dims, group norm's grouping, the affine's shape."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import oracle
from ..cases import Case

STAT_OPS = ("instance_norm", "layer_norm", "group_norm", "batch_norm")


def op_axes(case: Case, ndim: int) -> tuple[int, ...]:
    """The dims the op's statistics reduce over (group norm: before grouping, see :func:`geometry`)."""
    if case.op == "instance_norm":
        return tuple(range(2, ndim))
    if case.op in ("layer_norm", "rms_norm"):
        return tuple(case.params["axes"])
    return (0,) + tuple(range(2, ndim))  # batch_norm, channel_stats (pooled), normalize (per channel)


def geometry(case: Case, x: np.ndarray, axes=None):
    """``(forward, axes, back)``: ``forward(x)`` is x as the op normalizes it (group_norm groups the
    channels), ``axes`` the reduced dims, ``back`` undoes ``forward``."""
    def ident(a):
        return a

    if case.op == "group_norm" and axes is None:
        g = case.params["groups"]
        n, c = x.shape[:2]
        shape = (n, g, c // g) + x.shape[2:]
        return (lambda a: np.reshape(a, shape)), tuple(range(2, len(shape))), (lambda a: np.reshape(a, x.shape))
    return ident, tuple(axes) if axes is not None else op_axes(case, x.ndim), ident


def count(case: Case, x: np.ndarray, axes=None) -> int:
    """How many values each statistic of ``case`` is over (per image for per-image channel stats)."""
    forward, ax, _ = geometry(case, x, axes)
    shape = forward(x).shape
    if case.op == "channel_stats" and case.params["method"] == "per_image_mean":
        ax = tuple(range(2, x.ndim))
    return int(np.prod([shape[a] for a in ax]))


def shape_for(case: Case, ndim: int, shape) -> Callable:
    """Shapes a weight or bias to broadcast over y (layer and rms norm: the normalized dims; else per channel)."""
    if case.op in ("layer_norm", "rms_norm"):
        axes = case.params["axes"]
        return lambda v: np.asarray(v, dtype=np.float64).reshape([shape[d] if d in axes else 1 for d in range(ndim)])
    return lambda v: np.asarray(v, dtype=np.float64).reshape((1, -1) + (1,) * (ndim - 2))


def affine(case: Case, inputs: dict, y):
    """y times the case's weight plus its bias, as the oracle applies them (rms_norm: times
    weight_offset + weight, before any rounding of its ``cast``)."""
    shape = shape_for(case, y.ndim, y.shape)
    if case.op == "rms_norm" and "weight" in inputs:
        with np.errstate(invalid="ignore", over="ignore"):
            return y * (case.params["weight_offset"] + shape(inputs["weight"]))
    return oracle._affine(y, inputs, shape)


def unaffine(case: Case, inputs: dict, y):
    """The normalized values behind y: its bias subtracted, then divided by its weight (rms_norm: by
    weight_offset + weight)."""
    y = np.asarray(y, dtype=np.float64)
    shape = shape_for(case, y.ndim, y.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        if case.op == "rms_norm":
            return y / (case.params["weight_offset"] + shape(inputs["weight"])) if "weight" in inputs else y
        if "bias" in inputs:
            y = y - shape(inputs["bias"])
        if "weight" in inputs:
            y = y / shape(inputs["weight"])
    return y

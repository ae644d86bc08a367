"""The float64 reference: two-pass statistics, written like the math.

>>> import numpy as np
>>> x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
>>> normalize_over(x, axes=(2,), eps=0.0, ddof=0).round(4).tolist()
[[[-1.3416, -0.4472, 0.4472, 1.3416]]]
"""
from __future__ import annotations

import numpy as np

from .cases import Case

DDOF = {"biased": 0, "unbiased": 1}


def mean_var(x: np.ndarray, axes, ddof: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance over ``axes`` (kept as size-1 dims); see :func:`deviations`."""
    return _moments(x, axes, ddof)[::2]


def deviations(x: np.ndarray, axes, ddof: int) -> tuple[np.ndarray, np.ndarray]:
    """``x - mean`` and the variance over ``axes``."""
    return _moments(x, axes, ddof)[1:]


def _moments(x: np.ndarray, axes, ddof: int):
    """Two-pass mean and variance over ``axes`` (kept as size-1 dims). n - ddof = 0 gives NaN.

    The second pass also takes the mean of the deviations, the rounding error of the first mean,
    and subtracts it too (corrected two-pass): deviations stay accurate when |mean| >> std."""
    x = np.asarray(x, dtype=np.float64)
    axes = tuple(axes)
    n = int(np.prod([x.shape[a] for a in axes]))
    mean = x.sum(axis=axes, keepdims=True) / n
    residual = (x - mean).sum(axis=axes, keepdims=True) / n
    dev = (x - mean) - residual
    mean = mean + residual
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (dev * dev).sum(axis=axes, keepdims=True) / np.float64(n - ddof)
    return mean, dev, var


def normalize_over(x, axes, eps: float, ddof: int) -> np.ndarray:
    dev, var = deviations(x, axes, ddof)
    with np.errstate(divide="ignore", invalid="ignore"):
        return dev / np.sqrt(var + eps)


def _channel(v: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast over [N, C, *spatial]."""
    return np.asarray(v, dtype=np.float64).reshape((1, -1) + (1,) * (rank - 2))


def _affine(y, inputs, shape_for):
    if "weight" in inputs:
        y = y * shape_for(inputs["weight"])
    if "bias" in inputs:
        y = y + shape_for(inputs["bias"])
    return y


def instance_norm(case: Case, inputs: dict) -> dict:
    x, p = inputs["x"], case.params
    y = normalize_over(x, tuple(range(2, x.ndim)), p["eps"], DDOF[p["variance"]])
    return {"y": _affine(y, inputs, lambda v: _channel(v, x.ndim))}


def group_norm(case: Case, inputs: dict) -> dict:
    x, p = inputs["x"], case.params
    n, c = x.shape[:2]
    grouped = x.reshape((n, p["groups"], c // p["groups"]) + x.shape[2:])
    y = normalize_over(grouped, tuple(range(2, grouped.ndim)), p["eps"], DDOF[p["variance"]]).reshape(x.shape)
    return {"y": _affine(y, inputs, lambda v: _channel(v, x.ndim))}


def layer_norm(case: Case, inputs: dict) -> dict:
    x, p = inputs["x"], case.params
    axes = p["axes"]
    y = normalize_over(x, tuple(axes), p["eps"], DDOF[p["variance"]])

    def shape_for(v):  # weight has the shape of the normalized dims; broadcast it back in place
        return np.asarray(v, dtype=np.float64).reshape([x.shape[d] if d in axes else 1 for d in range(x.ndim)])

    return {"y": _affine(y, inputs, shape_for)}


def batch_norm(case: Case, inputs: dict) -> dict:
    p, x = case.params, inputs["x"]
    axes = (0,) + tuple(range(2, x.ndim))
    shape_for = lambda v: _channel(v, x.ndim)  # noqa: E731
    if not p["training"]:
        y = (x - shape_for(inputs["running_mean"])) / np.sqrt(shape_for(inputs["running_var"]) + p["eps"])
        return {"y": _affine(y, inputs, shape_for)}
    running_mean = np.asarray(inputs["running_mean"], dtype=np.float64)
    running_var = np.asarray(inputs["running_var"], dtype=np.float64)
    for k, xk in enumerate(inputs["x_steps"], start=1):
        mean, _ = mean_var(xk, axes, 0)
        _, var_running = mean_var(xk, axes, DDOF[p["running_variance"]])
        # momentum weights the new statistic (PyTorch's convention); None = cumulative average 1/k
        m = 1.0 / k if p["momentum"] is None else p["momentum"]
        running_mean = (1 - m) * running_mean + m * mean.reshape(-1)
        running_var = (1 - m) * running_var + m * var_running.reshape(-1)
    y = normalize_over(x, axes, p["eps"], DDOF[p["variance"]])
    return {"y": _affine(y, inputs, shape_for), "running_mean": running_mean, "running_var": running_var}


def normalize(case: Case, inputs: dict) -> dict:
    x = inputs["x"]
    return {"y": (x - _channel(inputs["mean"], x.ndim)) / _channel(inputs["std"], x.ndim)}


def channel_stats(case: Case, inputs: dict) -> dict:
    x, p = inputs["x"], case.params
    ddof = DDOF[p["variance"]]
    if p["method"] == "pooled":
        mean, var = mean_var(x, (0,) + tuple(range(2, x.ndim)), ddof)
        return {"mean": mean.reshape(-1), "std": np.sqrt(var).reshape(-1)}
    # per_image_mean: each image's own mean and std per channel, then their mean over images
    mean, var = mean_var(x, tuple(range(2, x.ndim)), ddof)
    return {"mean": mean.reshape(x.shape[:2]).mean(axis=0), "std": np.sqrt(var).reshape(x.shape[:2]).mean(axis=0)}


OPS = {"instance_norm": instance_norm, "group_norm": group_norm, "layer_norm": layer_norm,
       "batch_norm": batch_norm, "normalize": normalize, "channel_stats": channel_stats}


def reference(case: Case, inputs: dict) -> dict[str, np.ndarray]:
    """The float64 reference outputs of ``case`` on ``inputs`` (from :func:`normconf.inputs.generate`)."""
    return OPS[case.op](case, inputs)


def condition(case: Case, inputs: dict) -> float:
    """max |mean| / sqrt(var + eps) over the slices the op normalizes: how strongly rounding of the
    mean in the input dtype is amplified in the output. Used to scale the default tolerance."""
    x = inputs["x"]
    axes = {"instance_norm": tuple(range(2, x.ndim)), "layer_norm": tuple(case.params.get("axes") or ()),
            "batch_norm": (0,) + tuple(range(2, x.ndim)), "channel_stats": (0,) + tuple(range(2, x.ndim))}
    if case.op == "group_norm":
        g = case.params["groups"]
        x = x.reshape((x.shape[0], g, x.shape[1] // g) + x.shape[2:])
        ax = tuple(range(2, x.ndim))
    elif case.op in axes:
        ax = axes[case.op]
    else:
        return 1.0
    if case.op == "batch_norm" and not case.params["training"]:
        return 1.0
    mean, var = mean_var(x, ax, 0)
    eps = case.params.get("eps", 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(mean) / np.sqrt(var + eps)
    ratio = ratio[np.isfinite(ratio)]
    return float(max(1.0, ratio.max())) if ratio.size else 1.0

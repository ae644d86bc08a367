"""``empty_batch_statistics``: the statistics of an empty batch taken as 0, or the update skipped.

With N = 0 every statistic of the batch is over zero values: 0/0 = NaN in the oracle, so a
training step makes the running statistics NaN, and channel_stats' mean and std are NaN. Two other
answers are made on purpose:

- the update skipped: PyTorch's batch norm leaves its running statistics as they were on an empty
  input (ATen returns before updating them; pytorch/pytorch#12013), as if momentum were 0;
- the statistics taken as 0, the identity of the sum a mean is made from: OpenVINO's reductions
  fill the output of an empty input with 0 (openvinotoolkit/openvino#27603), so a step blends in a
  mean and a variance of 0 (running = (1 - momentum) x old), and a mean written
  ``sum / max(n, 1)`` does the same.

The case format allows N = 0 only (every other dim is positive), so the empty slices are those of
an empty batch, and y, its gradients and every instance, layer, group and rms norm output are
empty: the outputs this cause can move are batch norm's running statistics (and instance norm's
with ``track_running_stats``) and channel_stats' mean and std. Its variants are offered only where
such a statistic is over zero values, so they compete with nothing on a batch that has values.
"""
from __future__ import annotations

import numpy as np

from ... import oracle
from ..variant import Variant, distinct

RUNNING = ("running_mean", "running_var")


def computed(ex) -> list[Variant]:
    case, steps = ex.case, ex.inputs.get("x_steps") or []
    if RUNNING[0] in ex.names and any(np.size(s) == 0 for s in steps):
        empty = sum(np.size(s) == 0 for s in steps)
        return [Variant("empty_batch_statistics", {"empty_batch": "skip", "n": 0, "steps": empty}, _skip_text,
                        fn=running("skip")),
                Variant("empty_batch_statistics", {"empty_batch": "zeros", "n": 0, "steps": empty,
                                                   "old_weight": _old_weight(case, steps)},
                        _zeros_text, fn=running("zeros"))]
    if case.op == "channel_stats" and ex.x.size == 0:
        return [Variant("empty_batch_statistics", {"empty_batch": "zeros", "n": 0, "method": case.params["method"]},
                        _channel_stats_text, fn=channel_stats_zeros)]
    return []


def _statistics(case, xk):
    """The batch mean and variance the running statistics blend in, per channel (instance norm's
    tracked statistics: the mean over the images of each image's), as the oracle takes them."""
    p = case.params
    axes = tuple(range(2, np.ndim(xk))) if case.op == "instance_norm" else (0,) + tuple(range(2, np.ndim(xk)))
    mean, var = oracle.mean_var(np.asarray(xk, dtype=np.float64), axes, oracle.DDOF[p["running_variance"]])
    with np.errstate(divide="ignore", invalid="ignore"):
        return oracle._mean0(mean).reshape(-1), oracle._mean0(var).reshape(-1)


def running(how: str):
    """The oracle with every training step on an empty batch either skipped (``"skip"``: k still
    counts for a cumulative average, as torch's num_batches_tracked does) or blending in a mean and a
    variance of 0 (``"zeros"``); steps with values are the oracle's."""
    def fn(case, inputs):
        p = case.params
        out = dict(oracle.reference(case, inputs))
        rm = np.asarray(inputs["running_mean"], dtype=np.float64)
        rv = np.asarray(inputs["running_var"], dtype=np.float64)
        for k, xk in enumerate(inputs["x_steps"], start=1):
            if np.size(xk) == 0 and how == "skip":
                continue
            m = 1.0 / k if p["momentum"] is None else p["momentum"]
            mean, var = (np.zeros_like(rm), np.zeros_like(rv)) if np.size(xk) == 0 else _statistics(case, xk)
            rm, rv = (1 - m) * rm + m * mean, (1 - m) * rv + m * var
        out.update(running_mean=rm, running_var=rv)
        return out
    return fn


def channel_stats_zeros(case, inputs):
    """channel_stats with the mean and std of no values (pooled, or over zero images) taken as 0."""
    out = dict(oracle.reference(case, inputs))
    return {**out, "mean": np.zeros_like(out["mean"]), "std": np.zeros_like(out["std"])}


def _old_weight(case, steps) -> float:
    """What is left of the given running statistics after the empty steps blend in zeros: the
    product of (1 - momentum) over them."""
    weight = 1.0
    for k, xk in enumerate(steps, start=1):
        if np.size(xk) == 0:
            weight *= 1 - (1.0 / k if case.params["momentum"] is None else case.params["momentum"])
    return float(f"{weight:.15g}")  # 0.64, not 0.6400000000000001, in the JSON


def figures(v) -> str:
    """Up to four values of an output, then how many there are."""
    flat = np.asarray(v, dtype=np.float64).reshape(-1)
    shown = ", ".join(f"{x:.4g}" for x in flat[:4])
    return f"[{shown}{', ...' if flat.size > 4 else ''}]" + (f" ({flat.size} values)" if flat.size > 4 else "")


def _steps(v) -> str:
    k = v.params["steps"]
    return "the training step" if k == 1 else f"each of {k} training steps"


def _skip_text(ex, v) -> str:
    got = v.outputs or {}
    return (f"no update on an empty batch (N = 0): {_steps(v)} left running_mean and running_var as they were "
            f"(running_mean {figures(got.get('running_mean', []))}, running_var {figures(got.get('running_var', []))}; "
            f"as if momentum were 0) instead of blending in the statistics of zero values, 0/0 = NaN")


def _zeros_text(ex, v) -> str:
    got = v.outputs or {}
    old, new = distinct(v.params["old_weight"], 1 - v.params["old_weight"])
    return (f"the batch mean and variance of an empty batch (N = 0) taken as 0 (a reduction's identity) instead of "
            f"0/0 = NaN, and blended in by {_steps(v)}: running = {old} x old + {new} x 0, running_mean "
            f"{figures(got.get('running_mean', []))}, running_var {figures(got.get('running_var', []))}")


def _channel_stats_text(ex, v) -> str:
    got = v.outputs or {}
    what = ("mean and std over zero values" if v.params["method"] == "pooled"
            else "mean and std as the mean over zero images of each image's")
    return (f"an empty batch (N = 0): {what} taken as 0 (a reduction's identity) instead of 0/0 = NaN: "
            f"mean {figures(got.get('mean', []))}, std {figures(got.get('std', []))}")

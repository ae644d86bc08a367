"""The float64 reference: two-pass statistics, written like the math.

>>> import numpy as np
>>> x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
>>> normalize_over(x, axes=(2,), eps=0.0, ddof=0).round(4).tolist()
[[[-1.3416, -0.4472, 0.4472, 1.3416]]]
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .cases import Case, rms_eps
from .inputs import round_to_dtype

DDOF = {"biased": 0, "unbiased": 1}


@dataclass(frozen=True)
class Variation:
    """The oracle with one way of computing changed: what the explanation of a mismatch tries
    (:mod:`normconf.explain`). The default ``Variation()`` computes what the oracle computes.

    - ``moments(x, axes, ddof) -> (mean, x - mean, var)`` (each kept as size-1 dims over ``axes``):
      how the statistics are computed (E[x^2]-E[x]^2, sums in a low precision, ...); None: the
      oracle's two-pass ones. Every statistic goes through it: y's, and the running statistics',
      which are computed before y's (a ``moments`` that remembers its last call holds y's).
    - ``eps_on_std``: y = (x - mean) / (sqrt(var) + eps) instead of (x - mean) / sqrt(var + eps).
    - ``axes``: the dims y's statistics are over instead of the op's (instance, layer, group and
      batch norm; group norm then normalizes x over them ungrouped); the running statistics keep
      the op's own.

    Under a variation the oracle gives the forward outputs only: its gradients are the analytic
    ones of the two-pass statistics (:func:`normalize_vjp`), which a variation does not have."""

    moments: Callable | None = None
    eps_on_std: bool = False
    axes: tuple[int, ...] | None = None

    def statistics(self, x, axes, ddof: int):
        """``(mean, x - mean, var)`` of float64 ``x`` over ``axes`` with this variation's moments."""
        return (self.moments or _moments)(np.asarray(x, dtype=np.float64), tuple(axes), ddof)

    def divide(self, dev, var, eps: float):
        """``dev`` normalized by ``var`` with eps where this variation puts it."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return dev / (np.sqrt(var) + eps) if self.eps_on_std else dev / np.sqrt(var + eps)

    def normalize(self, x, axes, eps: float, ddof: int) -> np.ndarray:
        """:func:`normalize_over` with this variation's statistics and eps placement."""
        _, dev, var = self.statistics(x, axes, ddof)
        return self.divide(dev, var, eps)


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
    # NaN/inf inputs and n = 0 (an empty batch) give what the math gives, quietly: a NaN makes its
    # slice's statistics NaN, an inf makes the mean inf and the variance NaN (inf - inf), and the
    # statistics of zero values are 0/0 = NaN
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = x.sum(axis=axes, keepdims=True) / np.float64(n)
        residual = (x - mean).sum(axis=axes, keepdims=True) / np.float64(n)
        residual = np.where(np.isfinite(mean), residual, 0.0)  # an inf mean stays inf (not inf + NaN)
        dev = (x - mean) - residual
        mean = mean + residual
        var = (dev * dev).sum(axis=axes, keepdims=True) / (np.float64(n - ddof) if n > ddof else np.nan)
    return mean, dev, var


def fsum(v, axes, keepdims: bool = False) -> np.ndarray:
    """Sums over ``axes``, each rounded once (``math.fsum``): the gradients' reductions cancel (the
    sum of an upstream gradient is far smaller than the sum of its magnitudes), and a float64
    pairwise sum would then lose several ULPs of the result."""
    v = np.asarray(v, dtype=np.float64)
    axes = tuple(a % v.ndim for a in axes)
    rest = [d for d in range(v.ndim) if d not in axes]
    # both sizes spelled out: with an empty batch one of them is 0, and reshape cannot infer a -1 beside it
    rows = np.transpose(v, rest + list(axes)).reshape(int(np.prod([v.shape[d] for d in rest])),
                                                      int(np.prod([v.shape[d] for d in axes])))
    out = np.array([_fsum(row) for row in rows]).reshape([v.shape[d] for d in rest])
    return np.expand_dims(out, axes) if keepdims else out


def _fsum(row) -> float:
    try:
        return math.fsum(row)
    except (OverflowError, ValueError):  # inf - inf or an intermediate overflow: what float arithmetic gives
        return float(np.sum(row))


def normalize_over(x, axes, eps: float, ddof: int) -> np.ndarray:
    dev, var = deviations(x, axes, ddof)
    with np.errstate(divide="ignore", invalid="ignore"):
        return dev / np.sqrt(var + eps)


def normalize_vjp(x, h, axes, eps: float, ddof: int) -> np.ndarray:
    """d(sum(h * yhat))/dx for yhat = normalize_over(x, axes, eps, ddof), analytically. With
    sigma = sqrt(var + eps) and the variance's divisor m = n - ddof:

        dx = (h - mean(h) - yhat * sum(h * yhat) / m) / sigma

    mean(h) is the mean's share (each x moves the mean by 1/n), the last term the variance's
    (d sigma / dx = (x - mean) / (m sigma)); with m = n it is the familiar mean(h * yhat)."""
    dev, var = deviations(x, axes, ddof)
    n = int(np.prod([np.shape(x)[a] for a in axes]))
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.sqrt(var + eps)
        yhat = dev / sigma
        along_yhat = fsum(h * yhat, axes, keepdims=True) / np.float64(n - ddof)
        return (h - fsum(h, axes, keepdims=True) / n - yhat * along_yhat) / sigma


def _channel(v: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast over [N, C, *spatial]."""
    return np.asarray(v, dtype=np.float64).reshape((1, -1) + (1,) * (rank - 2))


def _affine(y, inputs, shape_for):
    with np.errstate(invalid="ignore"):  # a non-finite weight or bias: 0 * inf and inf - inf are NaN
        if "weight" in inputs:
            y = y * shape_for(inputs["weight"])
        if "bias" in inputs:
            y = y + shape_for(inputs["bias"])
    return y


def _outputs(case: Case, inputs: dict, yhat, backward, shape_for) -> dict:
    """y = yhat * weight + bias and, with ``grad: true``, the gradients of sum(y * grad_output):

        grad_x = backward(grad_output * weight)      backward(h) = d(sum(h * yhat))/dx
        grad_weight = sum(grad_output * yhat),  grad_bias = sum(grad_output)

    the sums over the dims the parameter is broadcast along. No gradients without ``backward`` (an
    oracle under a :class:`Variation`)."""
    out = {"y": _affine(yhat, inputs, shape_for)}
    if case.params.get("grad") and backward is not None:
        g = inputs["grad_output"]
        out["grad_x"] = backward(g * shape_for(inputs["weight"]) if "weight" in inputs else g)
        for name, term in (("weight", g * yhat), ("bias", g)):
            if name in inputs:
                broadcast = shape_for(inputs[name]).shape
                summed = tuple(d for d, size in enumerate(broadcast) if size == 1)
                out[f"grad_{name}"] = fsum(term, summed).reshape(np.shape(inputs[name]))
    return out


def _normalized(
    x, axes, p: Mapping, variation: Variation | None = None
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray] | None]:
    """(yhat, backward) of normalizing ``x`` over ``axes`` with the case's eps and divisor; under a
    ``variation`` over its axes if it has some, and no backward (no gradients)."""
    eps, ddof = p["eps"], DDOF[p["variance"]]
    if variation is not None:
        return variation.normalize(x, variation.axes if variation.axes is not None else axes, eps, ddof), None
    return normalize_over(x, axes, eps, ddof), lambda h: normalize_vjp(x, h, axes, eps, ddof)


def running_stats(case: Case, inputs: dict, axes, variation: Variation | None = None) -> dict:
    """running_mean / running_var after ``steps`` training steps. Each step blends in its statistics
    over ``axes`` with weight momentum (PyTorch's convention; None = cumulative average 1/k). With
    axes = the spatial dims (instance norm, track_running_stats) those are per (image, channel) and
    their mean over the batch is blended in, as torch.nn.InstanceNorm*d does. A ``variation``'s
    moments compute the statistics (its axes are y's, not these)."""
    p = case.params
    running_mean = np.asarray(inputs["running_mean"], dtype=np.float64)
    running_var = np.asarray(inputs["running_var"], dtype=np.float64)
    for k, xk in enumerate(inputs["x_steps"], start=1):
        if variation is None:
            mean, var = mean_var(xk, axes, DDOF[p["running_variance"]])
        else:
            mean, _, var = variation.statistics(xk, axes, DDOF[p["running_variance"]])
        m = 1.0 / k if p["momentum"] is None else p["momentum"]
        with np.errstate(divide="ignore", invalid="ignore"):  # N = 0: NaN statistics
            running_mean = (1 - m) * running_mean + m * _mean0(mean).reshape(-1)
            running_var = (1 - m) * running_var + m * _mean0(var).reshape(-1)
    return {"running_mean": running_mean, "running_var": running_var}


def instance_norm(case: Case, inputs: dict, variation: Variation | None = None) -> dict:
    x, p = inputs["x"], case.params
    out = _outputs(case, inputs, *_normalized(x, tuple(range(2, x.ndim)), p, variation),
                   lambda v: _channel(v, x.ndim))
    if p.get("track_running_stats"):
        out.update(running_stats(case, inputs, tuple(range(2, x.ndim)), variation))
    return out


def group_norm(case: Case, inputs: dict, variation: Variation | None = None) -> dict:
    x, p = inputs["x"], case.params
    if variation is not None and variation.axes is not None:  # x over those dims, not grouped
        return _outputs(case, inputs, *_normalized(x, variation.axes, p, variation), lambda v: _channel(v, x.ndim))
    n, c = x.shape[:2]
    grouped = (n, p["groups"], c // p["groups"]) + x.shape[2:]
    yhat, backward = _normalized(x.reshape(grouped), tuple(range(2, len(grouped))), p, variation)
    return _outputs(case, inputs, yhat.reshape(x.shape),
                    backward and (lambda h: backward(h.reshape(grouped)).reshape(x.shape)),
                    lambda v: _channel(v, x.ndim))


def layer_norm(case: Case, inputs: dict, variation: Variation | None = None) -> dict:
    x, p = inputs["x"], case.params
    axes = p["axes"]

    def shape_for(v):  # weight has the shape of the normalized dims; broadcast it back in place
        return np.asarray(v, dtype=np.float64).reshape([x.shape[d] if d in axes else 1 for d in range(x.ndim)])

    return _outputs(case, inputs, *_normalized(x, tuple(axes), p, variation), shape_for)


def batch_norm(case: Case, inputs: dict, variation: Variation | None = None) -> dict:
    p, x = case.params, inputs["x"]
    axes = (0,) + tuple(range(2, x.ndim))
    shape_for = lambda v: _channel(v, x.ndim)  # noqa: E731
    running = running_stats(case, inputs, axes, variation) if p["training"] else {}
    if p["training"] and not p["eval_after"]:  # the batch's own statistics
        yhat, backward = _normalized(x, axes, p, variation)
    elif variation is not None:  # running statistics, with the variation's eps placement
        stats = running or inputs
        yhat = variation.divide(x - shape_for(stats["running_mean"]), shape_for(stats["running_var"]), p["eps"])
        backward = None
    else:  # running statistics, constants: the given ones, or those after training (eval_after)
        stats = running or inputs
        sigma = np.sqrt(shape_for(stats["running_var"]) + p["eps"])
        with np.errstate(invalid="ignore"):  # inf - inf, inf / inf: NaN
            yhat, backward = (x - shape_for(stats["running_mean"])) / sigma, lambda h: h / sigma
    return {**_outputs(case, inputs, yhat, backward, shape_for), **running}


def normalize(case: Case, inputs: dict, variation: Variation | None = None) -> dict:
    """No statistics: a variation leaves y as it is (and drops the gradients)."""
    x = inputs["x"]
    _no_axes(case, variation)
    std = _channel(inputs["std"], x.ndim)
    backward = (lambda h: h / std) if variation is None else None
    return _outputs(case, inputs, (x - _channel(inputs["mean"], x.ndim)) / std, backward, None)


def channel_stats(case: Case, inputs: dict, variation: Variation | None = None) -> dict:
    x, p = inputs["x"], case.params
    ddof = DDOF[p["variance"]]
    _no_axes(case, variation)
    stats = mean_var if variation is None else (lambda v, axes, ddof: variation.statistics(v, axes, ddof)[::2])
    if p["method"] == "pooled":
        mean, var = stats(x, (0,) + tuple(range(2, x.ndim)), ddof)
        return {"mean": mean.reshape(-1), "std": np.sqrt(var).reshape(-1)}
    # per_image_mean: each image's own mean and std per channel, then their mean over images
    mean, var = stats(x, tuple(range(2, x.ndim)), ddof)
    with np.errstate(divide="ignore", invalid="ignore"):  # N = 0: the mean over zero images is 0/0 = NaN
        return {"mean": _mean0(mean.reshape(x.shape[:2])), "std": _mean0(np.sqrt(var).reshape(x.shape[:2]))}


def rms_norm(case: Case, inputs: dict, variation: Variation | None = None) -> dict:
    """y = x / rms * (weight_offset + weight), rms = sqrt(mean(x^2 over axes) + eps), with the
    rounding points of the case's ``cast`` (docs/case-format.md, "rms_norm"):

    - ``last``: one rounding to the input dtype at the very end, which the comparison's tolerance
      pays for as it does for every op: y is the exact value, as the other ops' y;
    - ``before_weight``: x / rms rounded to the input dtype, then (weight_offset + weight) rounded to
      it (the sum a multiplication in the input dtype needs; exact where weight_offset is 0), then
      their product rounded to it: each rounding a correct implementation in that order has.

    With ``grad: true`` the gradients of sum(y * grad_output) of the math (the roundings have none):
    with yhat = x / rms, h = grad_output * (weight_offset + weight) and n values per slice,

        grad_x = (h - yhat * sum(h * yhat) / n) / rms,   grad_weight = sum(grad_output * yhat)

    the sums of grad_x over each normalized slice, grad_weight's over the dims weight is broadcast
    along (d rms / dx = x / (n rms)). A ``variation`` may change the axes and put eps on the rms,
    (x / (rms + eps)); its ``moments`` (a mean and a variance) are not rms_norm's statistics."""
    x, p = inputs["x"], case.params
    if variation is not None and variation.moments is not None:
        raise ValueError("rms_norm has no mean and variance that a variation's moments could compute")
    axes = tuple(p["axes"]) if variation is None or variation.axes is None else tuple(variation.axes)
    eps, n = rms_eps(p, case.dtype), int(np.prod([x.shape[a] for a in axes]))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # n = 0, NaN and inf: what the math gives
        mean_square = (x * x).sum(axis=axes, keepdims=True) / np.float64(n)
        rms = np.sqrt(mean_square + eps)
        yhat = x / (np.sqrt(mean_square) + eps if variation is not None and variation.eps_on_std else rms)
    out: dict[str, np.ndarray] = {}
    if "weight" not in inputs:
        out["y"] = round_to_dtype(yhat, case.dtype) if p["cast"] == "before_weight" else yhat
    else:
        w = np.asarray(inputs["weight"], dtype=np.float64).reshape(
            [x.shape[d] if d in p["axes"] else 1 for d in range(x.ndim)])
        scale = p["weight_offset"] + w
        with np.errstate(invalid="ignore", over="ignore"):  # a non-finite weight: 0 * inf is NaN
            if p["cast"] == "before_weight":
                out["y"] = round_to_dtype(round_to_dtype(yhat, case.dtype) * round_to_dtype(scale, case.dtype),
                                          case.dtype)
            else:
                out["y"] = yhat * scale
    if p["grad"] and variation is None:
        g = inputs["grad_output"]
        out["grad_x"] = rms_vjp(x, g * scale if "weight" in inputs else g, axes, eps)
        if "weight" in inputs:
            summed = tuple(d for d in range(x.ndim) if d not in p["axes"])
            out["grad_weight"] = fsum(g * yhat, summed).reshape(np.shape(inputs["weight"]))
    return out


def rms_vjp(x, h, axes, eps: float) -> np.ndarray:
    """d(sum(h * yhat))/dx for yhat = x / rms, rms = sqrt(mean(x^2 over axes) + eps), analytically:
    (h - yhat * sum(h * yhat) / n) / rms, the last term rms's share (d rms / dx = x / (n rms))."""
    x = np.asarray(x, dtype=np.float64)
    n = int(np.prod([x.shape[a] for a in axes]))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rms = np.sqrt((x * x).sum(axis=tuple(axes), keepdims=True) / np.float64(n) + eps)
        yhat = x / rms
        return (h - yhat * fsum(h * yhat, axes, keepdims=True) / np.float64(n)) / rms


def _no_axes(case: Case, variation: Variation | None) -> None:
    if variation is not None and variation.axes is not None:
        raise ValueError(f"{case.op} has no y statistics whose axes a variation could change")


def _mean0(v: np.ndarray) -> np.ndarray:
    """The mean over axis 0, NaN (0/0) over zero rows without np.mean's empty-slice warning."""
    return v.sum(axis=0) / np.float64(v.shape[0])


OPS = {"instance_norm": instance_norm, "group_norm": group_norm, "layer_norm": layer_norm,
       "batch_norm": batch_norm, "normalize": normalize, "channel_stats": channel_stats, "rms_norm": rms_norm}


def reference(case: Case, inputs: dict, variation: Variation | None = None) -> dict[str, np.ndarray]:
    """The float64 reference outputs of ``case`` on ``inputs`` (from :func:`normconf.inputs.generate`);
    with a ``variation``, the forward outputs of the oracle changed by it (:class:`Variation`).

    A large input is normalized in slices along an axis its statistics do not reduce over (see
    :func:`independent_axis`), so the two-pass temporaries stay near :data:`SLICE_BYTES` instead of
    several float64 copies of the whole input. Each slice's statistics are computed by the same code
    over the same values; NumPy may sum a slice in another order, which moves results by an ULP or so
    of float64 (tests/test_large.py checks it), far below any dtype's tolerance."""
    x = inputs["x"]
    axis = independent_axis(case)
    if axis is None or x.nbytes <= SLICE_BYTES or x.shape[axis] == 1:
        return _op(case, inputs, variation)
    out: dict[str, np.ndarray] = {}
    for part in _slices(x.shape, axis):
        got = _op(case, sliced_inputs(inputs, axis, part, x.ndim), variation)
        for name, value in got.items():
            if name not in out:  # y-shaped outputs along ``axis``; per-channel ones (axis 1) along 0
                shape = list(x.shape) if value.ndim == x.ndim else [x.shape[1]]
                out[name] = np.empty(shape, dtype=value.dtype)
            at = axis if value.ndim == x.ndim else 0
            index = [slice(None)] * value.ndim
            index[at] = part
            out[name][tuple(index)] = value
    return out


def _op(case: Case, inputs: dict, variation: Variation | None) -> dict:
    return OPS[case.op](case, inputs) if variation is None else OPS[case.op](case, inputs, variation)


#: float64 bytes of input normalized at a time by :func:`reference` on large inputs.
SLICE_BYTES = 64 << 20


def independent_axis(case: Case) -> int | None:
    """An axis along which the op's outputs are computed independently, or None: the batch axis for
    instance, group and layer norm (when layer norm does not normalize over it) and normalize; the
    channel axis for batch norm and channel_stats. Cases with gradients or instance-norm running
    statistics (which sum over the batch) have none."""
    p = case.params
    if p.get("grad") or p.get("track_running_stats"):
        return None
    if case.op in ("batch_norm", "channel_stats"):
        return 1
    if case.op in ("layer_norm", "rms_norm") and 0 in p["axes"]:
        return None
    return 0


def _slices(shape, axis: int):
    """Slices of ``axis`` whose float64 size is about :data:`SLICE_BYTES`."""
    per_index = 8 * int(np.prod(shape)) // shape[axis]
    step = max(1, SLICE_BYTES // max(per_index, 1))
    return [slice(lo, min(lo + step, shape[axis])) for lo in range(0, shape[axis], step)]


def sliced_inputs(inputs: dict, axis: int, part: slice, rank: int) -> dict:
    """The inputs of one slice: x-shaped arrays cut along ``axis``; per-channel ones too when the
    axis is the channel axis (batch norm). normalize's mean and std are per channel, sliced the same."""
    out: dict[str, object] = {}
    for key, value in inputs.items():
        if key == "x_steps":
            out[key] = [cut_along(v, axis, part) for v in value]
        elif isinstance(value, np.ndarray) and value.ndim == rank:
            out[key] = cut_along(value, axis, part)
        elif axis == 1 and isinstance(value, np.ndarray) and value.ndim == 1:
            out[key] = value[part]
        else:
            out[key] = value
    return out


def cut_along(value: np.ndarray, axis: int, part: slice) -> np.ndarray:
    index = [slice(None)] * value.ndim
    index[axis] = part
    return value[tuple(index)]


def condition(case: Case, inputs: dict) -> float:
    """max |mean| / sqrt(var + eps) over the slices the op normalizes: how strongly rounding of the
    mean in the input dtype is amplified in the output. Used to scale the default tolerance.

    rms_norm's is 1 whatever its input: it subtracts no mean, and its statistic, the mean of the
    squares, sums positive terms, whose relative rounding error is that of any one of them. A
    relative error d of every x_i (and of that mean) moves y = x / rms by at most about 2 d,
    relative, however large the mean of x (a mean-1e4 input has rms ~1e4 and y ~1)."""
    if case.op == "rms_norm":
        return 1.0
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
    eps = case.params.get("eps", 0.0)
    # the slices' statistics are independent along any dim they do not reduce over (the batch axis,
    # the channel axis for batch statistics); a layer norm over every dim, batch included, has none:
    # its one slice is the whole input
    along = next((d for d in range(x.ndim) if d not in ax), None)
    parts = _slices(x.shape, along) if along is not None and x.nbytes > SLICE_BYTES else [None]
    worst = 1.0
    for part in parts:
        if part is None:
            whole_or_part = x
        else:
            assert along is not None  # parts are slices only when there is a dim to cut along
            whole_or_part = cut_along(x, along, part)
        mean, var = mean_var(whole_or_part, ax, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(mean) / np.sqrt(var + eps)
        ratio = ratio[np.isfinite(ratio)]
        if ratio.size:
            worst = max(worst, float(ratio.max()))
    return worst

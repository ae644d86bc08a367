"""Planted faults: ports of the ops with one real bug each, for the table of tests/test_explain.py.

Each fault is written the way the bug is written in practice, not as a variant of the explainer's
arithmetic: a torch port of the op (float64, autograd for the gradients) whose caller hands it a
buffer in the case's memory layout that it reads as the other layout, a batch norm module left in
the wrong mode, a group norm whose reshape interleaves the groups, torchvision's ``Normalize``
multiplying by std, a bias subtracted, a NumPy kernel with float16 accumulators, rms_norm with
each of its bugs, eps and momentum held in ONNX's float32 attributes, a float64 port run on
``.float()`` tensors, GroupNormalization-18's per-group scale and bias, a batch norm that skips its
update on an empty batch and one whose means over no values are 0. The correct port
(:func:`correct`) is itself one of the implementations that must raise no explanation, so what the
table measures is the bug alone.

:data:`FAULTS` holds ``(name, planted cause ids, applies(case), fault(case, inputs) -> outputs)``;
an empty tuple of causes means the bug has no cause id: ``unexplained`` is the right answer there.
Outputs are NumPy float64 arrays of values of the case dtype (the port computes in float64 and
rounds once, as a framework returns its dtype), canonical [N, C, *spatial] order.

torch is imported on first use, so that collecting the tests does not import it.
"""
from __future__ import annotations

import copy
import warnings

import numpy as np

from normconf.cases import outputs_of
from normconf.inputs import round_to_dtype

OTHER_LAYOUT = {"channels_first": "channels_last", "channels_last": "channels_first"}
STAT_OPS = ("instance_norm", "layer_norm", "group_norm", "batch_norm")


def _torch():
    try:
        import torch
    except ImportError as exc:  # the planted ports are torch code; setup.sh installs it
        raise ImportError("tests/planted.py runs its ports with torch, which is not installed "
                          "(./setup.sh or pip install -r requirements.txt installs it)") from exc
    return torch


# ----------------------------------------------------------------------------- the torch port

def _ddof(params: dict, key: str = "variance") -> int:
    return 1 if params.get(key, "biased") == "unbiased" else 0


def _standardize(x, dims, eps: float, ddof: int):
    """(x - mean) / sqrt(var + eps) over ``dims``: what every norm layer does."""
    torch = _torch()
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, correction=ddof, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def _per_channel(v, rank: int):
    return v.reshape((1, -1) + (1,) * (rank - 2))


def add_affine(y, weight, bias):
    """``y * weight + bias`` (either may be None); weight and bias already shaped to broadcast."""
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _shaped(case, t: dict, rank: int, shape) -> tuple:
    """The case's weight and bias shaped to broadcast: per channel, or for layer norm in place of the
    normalized dims."""
    if case.op == "layer_norm":
        axes = case.params["axes"]
        put = lambda v: v.reshape([shape[d] if d in axes else 1 for d in range(rank)])  # noqa: E731
    else:
        put = lambda v: _per_channel(v, rank)  # noqa: E731
    return tuple(put(t[k]) if k in t else None for k in ("weight", "bias"))


class RunningNorm:
    """``nn.BatchNorm*d`` (and ``nn.InstanceNorm*d(track_running_stats=True)``) as a port writes it:
    running buffers, a ``training`` flag that :meth:`train` and :meth:`eval` set, and in training an
    update of the buffers with momentum on the new statistic (``None``: a cumulative average)."""

    def __init__(self, case, t: dict, affine=add_affine):
        p = case.params
        self.case, self.instance = case, case.op == "instance_norm"
        self.eps, self.momentum = p["eps"], p["momentum"]
        self.ddof, self.ddof_running = _ddof(p), _ddof(p, "running_variance")
        self.running_mean, self.running_var = t["running_mean"].clone(), t["running_var"].clone()
        self.t, self.affine = t, affine
        self.training, self.updates = True, 0

    def blend(self, running, stat, m: float):
        """The running statistic updated with momentum ``m`` (the weight of the new statistic)."""
        return (1 - m) * running + m * stat

    def batch_statistics(self, x, dims):
        """The batch's mean and variance per channel (instance norm: each image's, then their mean
        over the batch, as the buffers take them)."""
        mean = x.mean(dim=dims)
        var = x.var(dim=dims, correction=self.ddof_running)
        if self.instance:
            mean, var = mean.mean(dim=0), var.mean(dim=0)
        return mean, var

    def update(self, x, dims, m: float):
        """One training step's update of the buffers with momentum ``m``."""
        mean, var = self.batch_statistics(x, dims)
        self.running_mean = self.blend(self.running_mean, mean, m)
        self.running_var = self.blend(self.running_var, var, m)

    def train(self):
        self.training = True
        return self

    def eval(self):
        self.training = False
        return self

    def __call__(self, x):
        torch = _torch()
        r = x.ndim
        dims = list(range(2, r)) if self.instance else [0] + list(range(2, r))
        if self.training:
            self.updates += 1  # num_batches_tracked: every training call counts
            m = 1.0 / self.updates if self.momentum is None else self.momentum
            with torch.no_grad():
                self.update(x, dims, m)
            y = _standardize(x, dims, self.eps, self.ddof)
        else:
            y = (x - _per_channel(self.running_mean, r)) / torch.sqrt(_per_channel(self.running_var, r) + self.eps)
        return self.affine(y, *_shaped(self.case, self.t, r, x.shape))


def _running_outputs(case, norm: RunningNorm, y) -> dict:
    out = {"y": y}
    if case.params.get("training", True):
        out["running_mean"], out["running_var"] = norm.running_mean, norm.running_var
    return out


def port(case, t: dict, read=lambda v: v, affine=add_affine, running=None) -> dict:
    """The op of ``case`` on ``t`` (float64 tensors, canonical order), correctly; ``read`` turns each
    x-shaped input into the array the kernel works on (a layout misread plugs in here), ``affine``
    applies weight and bias, ``running`` is the class of the running-statistics module
    (:class:`RunningNorm`)."""
    p, op = case.params, case.op
    x = read(t["x"])
    r = x.ndim
    if "x_steps" in t:  # batch norm, instance norm with running statistics: the training loop
        norm = (running or RunningNorm)(case, t, affine)
        training, eval_after = p.get("training", True), p.get("eval_after", False)
        steps = [read(v) for v in t["x_steps"]]
        earlier = steps if eval_after else steps[:-1] if training else []
        norm.train()
        for xk in earlier:
            norm(xk)
        if not training or eval_after:
            norm.eval()
        return _running_outputs(case, norm, norm(x))
    if op == "normalize":
        return {"y": (x - _per_channel(t["mean"], r)) / _per_channel(t["std"], r)}
    if op == "channel_stats":
        ddof = _ddof(p)
        if p["method"] == "pooled":
            dims = [0] + list(range(2, r))
            return {"mean": x.mean(dim=dims), "std": x.var(dim=dims, correction=ddof).sqrt()}
        if r == 2:  # torch reads dim=[] as every dim: each value is its own image's statistics
            x, r = x.unsqueeze(-1), 3
        dims = list(range(2, r))
        return {"mean": x.mean(dim=dims).mean(dim=0), "std": x.var(dim=dims, correction=ddof).sqrt().mean(dim=0)}
    if op == "instance_norm":
        y = _standardize(x, list(range(2, r)), p["eps"], _ddof(p))
    elif op == "layer_norm":
        y = _standardize(x, list(p["axes"]), p["eps"], _ddof(p))
    elif op == "group_norm":
        n, c, g = x.shape[0], x.shape[1], p["groups"]
        grouped = x.reshape((n, g, c // g) + tuple(x.shape[2:]))
        y = _standardize(grouped, list(range(2, grouped.ndim)), p["eps"], _ddof(p)).reshape(x.shape)
    elif op == "rms_norm":
        return {"y": rms_norm(case, t, x)}
    elif op == "batch_norm":  # without x_steps: not reached (batch norm always has them)
        raise ValueError("batch_norm without x_steps")
    else:
        raise ValueError(f"unknown op {op}")
    return {"y": affine(y, *_shaped(case, t, r, x.shape))}


def run(case, inputs: dict, forward) -> dict:
    """``forward(t) -> {name: tensor}`` on the case's inputs as float64 tensors (x, weight and bias
    requiring gradients with ``grad: true``); then, with ``grad: true``, the gradients of
    sum(y * grad_output) by autograd. Returns the case's outputs rounded to its dtype."""
    torch = _torch()
    t = {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in inputs.items() if k != "x_steps"}
    if "x_steps" in inputs:
        t["x_steps"] = [torch.tensor(np.asarray(v, dtype=np.float64)) for v in inputs["x_steps"]]
    grad = case.params.get("grad")
    if grad:
        for k in ("x", "weight", "bias"):
            if k in t:
                t[k].requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # var over one value with n-1: NaN, as the oracle's
        out = forward(t)
        if grad:
            (out["y"] * t["grad_output"]).sum().backward()
            for k in ("x", "weight", "bias"):
                if k in t:
                    out[f"grad_{k}"] = t[k].grad if t[k].grad is not None else torch.zeros_like(t[k])
    names = outputs_of(case.op, case.params)
    return {n: round_to_dtype(out[n].detach().numpy().astype(np.float64), case.dtype) for n in names}


def correct(case, inputs: dict) -> dict:
    """The port without a bug: must agree with the oracle wherever the case is well posed."""
    return run(case, inputs, lambda t: port(case, t))


# ----------------------------------------------------------------------------- rms_norm

HALF = ("float16", "bfloat16")
OTHER_CAST = {"last": "before_weight", "before_weight": "last"}


def _rounded(v, dtype: str):
    """``v`` rounded to ``dtype`` and back to float64: a cast, which autograd passes gradients through."""
    torch = _torch()
    return v.to(getattr(torch, dtype)).to(torch.float64)


def rms_norm(case, t: dict, x, *, offset=None, eps=None, cast=None, dims=None, subtract_mean=False,
             eps_outside=False):
    """RMSNorm as LLaMA and Gemma write it (``x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) +
    eps)``, then the weight), in float64 over the case's axes, with the case's rounding points:
    ``cast: before_weight`` rounds x / rms to the input dtype and multiplies by the weight there
    (LLaMA's ``.type_as(x) * self.weight``), ``last`` multiplies first (Gemma). Each keyword
    plants one bug: another ``offset`` (1 + weight for weight, or the reverse), ``eps``, ``cast``
    or ``dims``; ``subtract_mean``: F.layer_norm's (x - mean) / sqrt(var + eps) in place of the RMS
    (an nn.LayerNorm standing in for the RMSNorm); ``eps_outside``: x / (sqrt(mean(x^2)) + eps)."""
    from normconf.cases import rms_eps

    torch = _torch()
    p, dt = case.params, case.dtype
    dims = list(p["axes"]) if dims is None else dims
    eps = rms_eps(p, dt) if eps is None else eps
    cast = p["cast"] if cast is None else cast
    offset = p["weight_offset"] if offset is None else offset
    if subtract_mean:
        yhat = torch.nn.functional.layer_norm(x.movedim(dims, list(range(-len(dims), 0))),
                                              [x.shape[d] for d in dims], eps=eps)
        yhat = yhat.movedim(list(range(-len(dims), 0)), dims)
    elif eps_outside:
        yhat = x / (x.pow(2).mean(dims, keepdim=True).sqrt() + eps)
    else:
        yhat = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)
    if "weight" not in t:
        return _rounded(yhat, dt) if cast == "before_weight" else yhat
    w = t["weight"].reshape([x.shape[d] if d in p["axes"] else 1 for d in range(x.ndim)])
    if cast == "before_weight":
        return _rounded(_rounded(yhat, dt) * _rounded(offset + w, dt), dt)
    return yhat * (offset + w)


def rms_fault(**bug):
    """The rms_norm port with one bug (``"other"``: the other weight_offset, cast or axes; ``eps=
    "default"``: torch's eps=None, the dtype's machine epsilon, where the case gives a number, and
    the 1e-6 of Keras, Flax, LLaMA and Gemma where the case asks for eps=None)."""
    def fault(case, inputs):
        p, r = case.params, len(case.shape)
        kw = dict(bug)
        if kw.get("offset") == "other":
            kw["offset"] = 1.0 - p["weight_offset"] if p["weight_offset"] in (0.0, 1.0) else 0.0
        if kw.get("cast") == "other":
            kw["cast"] = OTHER_CAST[p["cast"]]
        if kw.get("eps") == "default":
            kw["eps"] = 1e-6 if p["eps"] is None else float(_torch().finfo(getattr(_torch(), case.dtype)).eps)
        if kw.get("dims") == "other":  # the last dim alone, or where that is what was asked, every dim but N
            own = sorted(a % r for a in p["axes"])
            kw["dims"] = [r - 1] if own != [r - 1] else list(range(1, r)) if r > 2 else [0]
        return run(case, inputs, lambda t: {"y": rms_norm(case, t, t["x"], **kw)})
    return fault


def rms_half(case, inputs):
    """LLaMA's RMSNorm without its ``x.float()``: ``x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) +
    eps)`` on the float16 tensor, every step in float16 (a square past 65504 is inf, and y = 0)."""
    torch = _torch()
    p = case.params
    from normconf.cases import rms_eps

    x = torch.tensor(np.asarray(inputs["x"]), dtype=torch.float16)
    dims = list(p["axes"])
    y = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + rms_eps(p, case.dtype))
    if "weight" in inputs:
        w = torch.tensor(np.asarray(inputs["weight"]), dtype=torch.float16)
        y = y * (p["weight_offset"] + w.reshape([x.shape[d] if d in p["axes"] else 1 for d in range(x.ndim)]))
    return {"y": y.to(torch.float64).numpy()}


# ----------------------------------------------------------------------------- memory layouts

def _buffer(v, layout: str):
    """The flat memory of the canonical tensor ``v`` in ``layout`` order (what an adapter hands over)."""
    return (v.movedim(1, -1) if layout == "channels_last" else v).contiguous().reshape(-1)


def _view(buf, layout: str, shape):
    """A flat buffer read as ``layout``, as a canonical [N, C, *spatial] tensor of ``shape``."""
    if layout == "channels_last":
        return buf.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],)).movedim(-1, 1)
    return buf.reshape(tuple(shape))


def layout_misread(where: str):
    """A kernel that takes the case's buffer (in the case's layout) for the other layout: it reads
    the input that way (``"input"``: an [N, H, W, C] buffer reshaped to [N, C, H, W], every training
    step's too, so running statistics follow), writes its output that way (``"output"``: a
    channels_first result handed back as channels_last memory), or both (``"both"``). The data is
    scrambled, not transposed; gradients follow through autograd (the backward reads and writes
    the same buffers the same way)."""
    def fault(case, inputs):
        memory, assumed = case.layout, OTHER_LAYOUT[case.layout]
        read_as = assumed if where in ("input", "both") else memory
        write_as = assumed if where in ("output", "both") else memory

        def forward(t):
            out = port(case, t, read=lambda v: _view(_buffer(v, memory), read_as, v.shape))
            if "y" in out:  # channel_stats: per-channel outputs, no buffer to write
                out["y"] = _view(_buffer(out["y"], write_as), memory, out["y"].shape)
            return out
        return run(case, inputs, forward)
    return fault


def _misread_applies(where: str, layout: str):
    def applies(case):
        if case.layout != layout or len(case.shape) < 3:
            return False
        return not (where == "output" and case.op == "channel_stats")  # its outputs are per channel
    return applies


# ----------------------------------------------------------------------------- training mode

def forgot_eval(case, inputs):
    """Inference asked (``training: false``, or the eval pass of ``eval_after``), but the module was
    never switched to ``eval()``: the pass normalizes with the batch's statistics (and, in
    ``eval_after``, updates the running statistics once more)."""
    p = case.params

    def forward(t):
        norm = RunningNorm(case, t)  # training mode, as constructed
        if p["training"]:  # eval_after: train over the steps, then the "eval" pass, still training
            for xk in t["x_steps"]:
                norm(xk)
        return _running_outputs(case, norm, norm(t["x"]))
    return run(case, inputs, forward)


def forgot_train(case, inputs):
    """Training asked, but the module is still in ``eval()`` (left there by a validation loop):
    every pass normalizes with the running statistics, which never move."""
    def forward(t):
        norm = RunningNorm(case, t).eval()
        for xk in t["x_steps"][:-1]:
            norm(xk)
        return _running_outputs(case, norm, norm(t["x"]))
    return run(case, inputs, forward)


# ----------------------------------------------------------------------------- formulas

def interleaved_groups(case, inputs):
    """Group norm whose reshape puts the groups second: ``x.reshape(N, C // G, G, ...)`` assigns
    channel c to group c % G instead of c // (C / G)."""
    p = case.params

    def forward(t):
        x = t["x"]
        n, c, g = x.shape[0], x.shape[1], p["groups"]
        grouped = x.reshape((n, c // g, g) + tuple(x.shape[2:]))
        dims = [1] + list(range(3, grouped.ndim))
        y = _standardize(grouped, dims, p["eps"], _ddof(p)).reshape(x.shape)
        return {"y": add_affine(y, *_shaped(case, t, x.ndim, x.shape))}
    return run(case, inputs, forward)


def normalize_times_std(case, inputs):
    """torchvision-style ``Normalize`` with the operator flipped: ``(x - mean) * std``."""
    def forward(t):
        x = t["x"]
        return {"y": (x - _per_channel(t["mean"], x.ndim)) * _per_channel(t["std"], x.ndim)}
    return run(case, inputs, forward)


def bias_subtracted(case, inputs):
    """The affine written ``y * weight - bias``."""
    def affine(y, weight, bias):
        if weight is not None:
            y = y * weight
        return y - bias if bias is not None else y
    return run(case, inputs, lambda t: port(case, t, affine=affine))


# ----------------------------------------------------------------------------- float16 accumulators

def _lane_sum(v: np.ndarray, axes: tuple) -> np.ndarray:
    """Sum over ``axes`` (kept) with float16 accumulators, as a SIMD kernel of halves does: 8 lanes,
    each adding every 8th value in float16, then the lanes added pairwise in float16."""
    kept = [1 if a in axes else s for a, s in enumerate(v.shape)]
    moved = np.moveaxis(v, axes, tuple(range(-len(axes), 0)))
    n = int(np.prod([v.shape[a] for a in axes]))  # explicit: -1 is ambiguous in an empty batch's reshape
    flat = moved.reshape(moved.shape[:moved.ndim - len(axes)] + (n,)).astype(np.float16)
    pad = (-n) % 8
    flat = np.concatenate([flat, np.zeros(flat.shape[:-1] + (pad,), np.float16)], axis=-1)
    rows = flat.reshape(flat.shape[:-1] + ((n + pad) // 8, 8))
    acc = np.zeros(rows.shape[:-2] + (8,), np.float16)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(rows.shape[-2]):
            acc += rows[..., i, :]
        while acc.shape[-1] > 1:
            acc = acc[..., 0::2] + acc[..., 1::2]
    return acc[..., 0].reshape(kept)


def _half_moments(x: np.ndarray, axes: tuple, ddof: int):
    n = int(np.prod([x.shape[a] for a in axes]))
    h = x.astype(np.float16)
    with np.errstate(all="ignore"):
        mean = _lane_sum(h, axes) / np.float16(n)
        dev = h - mean
        var = _lane_sum(dev * dev, axes) / np.float16(max(n - ddof, 0) or np.nan)
    return mean, dev, var


def half_accumulators(case, inputs):
    """A NumPy kernel in float16: the sums of the mean and of the squared deviations kept in float16
    accumulators (:func:`_lane_sum`); only sqrt(var + eps) in float32."""
    p, op = case.params, case.op
    x = np.asarray(inputs["x"])
    r = x.ndim
    f16 = np.float16

    def standardize(v, axes):
        _, dev, var = _half_moments(v, axes, _ddof(p))
        with np.errstate(all="ignore"):  # the rsqrt in float32, as half kernels do (eps 1e-12 stays > 0)
            return dev / np.sqrt(var.astype(np.float32) + np.float32(p["eps"])).astype(f16)

    def chan(v):
        return np.asarray(v, dtype=f16).reshape((1, -1) + (1,) * (r - 2))

    out = {}
    if op == "channel_stats":
        if p["method"] == "pooled":
            mean, _, var = _half_moments(x, (0,) + tuple(range(2, r)), _ddof(p))
            out = {"mean": mean.reshape(-1), "std": np.sqrt(var).reshape(-1)}
        else:
            mean, _, var = _half_moments(x, tuple(range(2, r)), _ddof(p))
            out = {"mean": mean.reshape(x.shape[:2]).astype(np.float32).mean(axis=0),
                   "std": np.sqrt(var).reshape(x.shape[:2]).astype(np.float32).mean(axis=0)}
        return {k: round_to_dtype(np.asarray(v, dtype=np.float64), case.dtype) for k, v in out.items()}
    if op == "instance_norm":
        y = standardize(x, tuple(range(2, r)))
    elif op == "layer_norm":
        y = standardize(x, tuple(p["axes"]))
    elif op == "group_norm":
        g = p["groups"]
        grouped = x.reshape((x.shape[0], g, x.shape[1] // g) + x.shape[2:])
        y = standardize(grouped, tuple(range(2, grouped.ndim))).reshape(x.shape)
    else:  # batch_norm in training, without eval_after (see the fault's applies)
        axes = (0,) + tuple(range(2, r))
        rm, rv = np.asarray(inputs["running_mean"], f16), np.asarray(inputs["running_var"], f16)
        for k, xk in enumerate(inputs["x_steps"], start=1):
            m = f16(1.0 / k if p["momentum"] is None else p["momentum"])
            mean, _, var = _half_moments(np.asarray(xk), axes, _ddof(p, "running_variance"))
            with np.errstate(all="ignore"):
                rm = (f16(1) - m) * rm + m * mean.reshape(-1)
                rv = (f16(1) - m) * rv + m * var.reshape(-1)
        out["running_mean"], out["running_var"] = rm, rv
        y = standardize(x, axes)
    if op == "layer_norm":
        shape_for = lambda v: np.asarray(v, f16).reshape([x.shape[d] if d in p["axes"] else 1 for d in range(r)])  # noqa: E731
    else:
        shape_for = chan
    with np.errstate(all="ignore"):
        if "weight" in inputs:
            y = y * shape_for(inputs["weight"])
        if "bias" in inputs:
            y = y + shape_for(inputs["bias"])
    out["y"] = y
    return {k: round_to_dtype(np.asarray(v, dtype=np.float64), case.dtype) for k, v in out.items()}


# ----------------------------------------------------------------------------- deployment precision

def _f32(v: float) -> float:
    return float(np.float32(v))


class Float32Attributes(RunningNorm):
    """BatchNormalization as an ONNX runtime runs it: momentum is a 32-bit float attribute holding
    the weight of the OLD value, ``running = running * momentum + current * (1 - momentum)``; a
    cumulative average (momentum None) is one node per step, its attribute 1 - 1/k."""

    def blend(self, running, stat, m: float):
        momentum = _f32(1.0 - m)  # AttributeProto.f
        return running * momentum + stat * (1.0 - momentum)


def float32_attributes(case, inputs):
    """A float64 model whose eps and momentum are 32-bit float attributes (ONNX's ``AttributeProto``:
    ``helper.make_node(..., epsilon=1e-5)`` stores 9.99999975e-06): the port with eps rounded to
    float32 and :class:`Float32Attributes` for the running statistics; the arithmetic stays float64."""
    from normconf.cases import rms_eps

    p = case.params
    held = case.with_params(eps=_f32(p["eps"])) if p.get("eps") is not None else case
    if case.op == "rms_norm":  # eps null: float64's machine epsilon, 2^-52, a float32 number too
        return run(case, inputs, lambda t: {"y": rms_norm(case, t, t["x"], eps=_f32(rms_eps(p, case.dtype)))})
    return run(case, inputs, lambda t: port(held, t, running=Float32Attributes))


def _to(t: dict, fn) -> dict:
    return {k: [fn(s) for s in v] if isinstance(v, list) else fn(v) for k, v in t.items()}


def in_float32(case, inputs):
    """A float64 case computed in float32: every input ``.float()``, the port, every output
    ``.double()``, as ONNX's ``stash_type=1`` computes a float64 model and as a ``.float()`` left in
    model code does (eps and momentum, Python floats, join the float32 arithmetic). The port runs as
    for a float32 case: rms_norm's rounding points are float32's, its eps the float64 case's."""
    from normconf.cases import rms_eps

    as32 = copy.copy(case)
    as32.dtype = "float32"

    def forward(t):
        t32 = _to(t, lambda v: v.float())
        if case.op == "rms_norm":
            out = {"y": rms_norm(as32, t32, t32["x"], eps=rms_eps(case.params, case.dtype))}
        else:
            out = port(as32, t32)
        return _to(out, lambda v: v.double())
    return run(case, inputs, forward)


def per_group_affine(case, inputs):
    """Group norm through GroupNormalization-18, which takes one scale and one bias per group: a
    converter keeps each group's first channel's (``weight.reshape(G, C // G)[:, 0]``) and the op
    applies them to the grouped tensor."""
    p = case.params

    def forward(t):
        x = t["x"]
        n, c, g = x.shape[0], x.shape[1], p["groups"]
        grouped = x.reshape((n, g, c // g) + tuple(x.shape[2:]))
        y = _standardize(grouped, list(range(2, grouped.ndim)), p["eps"], _ddof(p))
        shape = (1, g) + (1,) * (grouped.ndim - 2)
        per_group = {k: t[k].reshape(g, c // g)[:, 0].reshape(shape) for k in ("weight", "bias") if k in t}
        return {"y": add_affine(y, per_group.get("weight"), per_group.get("bias")).reshape(x.shape)}
    return run(case, inputs, forward)


# ----------------------------------------------------------------------------- an empty batch

class SkipsEmptyBatch(RunningNorm):
    """Batch norm that leaves its buffers as they are on an empty batch, as ATen's ``batch_norm``
    returns before the update when ``input.numel() == 0`` (pytorch/pytorch#12013); the step still
    counts for a cumulative average (``num_batches_tracked`` is the module's)."""

    def update(self, x, dims, m: float):
        if x.numel() == 0:
            return
        super().update(x, dims, m)


def _clamped_mean(v, dims):
    """The mean over ``dims`` as a sum over a count clamped to 1, a guard against 0/0: over no
    values it is the empty sum, 0, as OpenVINO's ReduceMean fills an empty reduction with 0
    (openvinotoolkit/openvino#27603)."""
    return v.sum(dim=dims) / max(int(np.prod([v.shape[d] for d in dims])), 1)


def _clamped_var(v, dims, ddof: int):
    n = int(np.prod([v.shape[d] for d in dims]))
    dev = v - _clamped_mean(v, dims).reshape([1 if d in dims else s for d, s in enumerate(v.shape)])
    return (dev * dev).sum(dim=dims) / max(n - ddof, 1)


class ZeroStatistics(RunningNorm):
    """Batch norm whose batch mean and variance are :func:`_clamped_mean`'s: 0 on an empty batch,
    which the update blends in (running = (1 - momentum) x old)."""

    def batch_statistics(self, x, dims):
        mean, var = _clamped_mean(x, dims), _clamped_var(x, dims, self.ddof_running)
        if self.instance:  # each image's statistics, then their mean over the images: 0 over none
            mean, var = _clamped_mean(mean, [0]), _clamped_mean(var, [0])
        return mean, var


def skips_empty_batch(case, inputs):
    """The batch norm port with :class:`SkipsEmptyBatch`'s update."""
    return run(case, inputs, lambda t: port(case, t, running=SkipsEmptyBatch))


def zero_statistics(case, inputs):
    """The port with every statistic a :func:`_clamped_mean`: batch norm with :class:`ZeroStatistics`,
    channel_stats' mean and std 0 over an empty batch (pooled, or the mean over zero images)."""
    if case.op != "channel_stats":
        return run(case, inputs, lambda t: port(case, t, running=ZeroStatistics))
    ddof = _ddof(case.params)

    def forward(t):
        x = t["x"]
        r = x.ndim
        if case.params["method"] == "pooled":
            dims = [0] + list(range(2, r))
            return {"mean": _clamped_mean(x, dims), "std": _clamped_var(x, dims, ddof).sqrt()}
        if r == 2:
            x, r = x.unsqueeze(-1), 3
        dims = list(range(2, r))
        return {"mean": _clamped_mean(_clamped_mean(x, dims), [0]),
                "std": _clamped_mean(_clamped_var(x, dims, ddof).sqrt(), [0])}
    return run(case, inputs, forward)


# ----------------------------------------------------------------------------- the table's rows

def _bn(case) -> bool:
    return case.op == "batch_norm"


def _tracking(case) -> bool:
    return case.op == "instance_norm" and bool(case.params.get("track_running_stats"))


def _empty_running(case) -> bool:
    """An empty batch whose running statistics are outputs (training, or tracked by instance norm)."""
    return case.shape[0] == 0 and ((_bn(case) and case.params["training"]) or _tracking(case))


def _grouping_moves(case) -> bool:
    return case.op == "group_norm" and 1 < case.params["groups"] < case.shape[1]


def _affine_given(case) -> bool:
    return case.params.get("weight") is not None or case.params.get("bias") is not None


def _rms(case) -> bool:
    return case.op == "rms_norm"


def _half_applies(case) -> bool:
    if case.dtype != "float16" or case.op not in STAT_OPS + ("channel_stats",) or case.params.get("grad"):
        return False
    p = case.params
    return not (case.op == "batch_norm" and (not p["training"] or p.get("eval_after")))


FAULTS = [
    *((f"{label} ({where})", ("layout_misread",), _misread_applies(where, layout), layout_misread(where))
      for layout, label in (("channels_last", "NHWC read as NCHW"), ("channels_first", "NCHW read as NHWC"))
      for where in ("input", "output", "both")),
    ("forgot eval()", ("training_mode",), lambda c: _bn(c) and not c.params["training"], forgot_eval),
    ("eval_after, no eval()", ("training_mode",), lambda c: _bn(c) and c.params["training"] and c.params["eval_after"],
     forgot_eval),
    # on an empty batch a module left in eval() and one that skips the update on no values give the
    # same outputs (no y, the running statistics as given): the explainer names the empty batch
    ("forgot train()", ("training_mode",),
     lambda c: c.shape[0] > 0 and ((_bn(c) and c.params["training"] and not c.params["eval_after"]) or _tracking(c)),
     forgot_train),
    ("groups c % G", ("group_assignment",), _grouping_moves, interleaved_groups),
    ("float16 accumulators", ("low_precision_accumulation",), _half_applies, half_accumulators),
    ("Normalize x std", (), lambda c: c.op == "normalize", normalize_times_std),
    ("bias subtracted", (), lambda c: c.op in STAT_OPS and c.params.get("bias") is not None, bias_subtracted),
    ("rms: weight, 1 + weight", ("weight_offset",), lambda c: _rms(c) and c.params["weight"] is not None,
     rms_fault(offset="other")),
    ("rms: torch eps=None, 1e-6", ("eps_value",), _rms, rms_fault(eps="default")),
    ("rms: cast order", ("cast_order",), lambda c: _rms(c) and c.dtype in HALF and c.params["weight"] is not None,
     rms_fault(cast="other")),
    ("rms: a layer norm", ("mean_subtracted",), _rms, rms_fault(subtract_mean=True)),
    ("rms: eps outside sqrt", ("eps_on_std",), _rms, rms_fault(eps_outside=True)),
    ("rms: other axes", ("reduction_axes",), _rms, rms_fault(dims="other")),
    ("rms: float16, no x.float()", ("low_precision_accumulation",),
     lambda c: _rms(c) and c.dtype == "float16" and not c.params["grad"], rms_half),
    ("float32 attributes", ("attribute_precision",),
     lambda c: c.dtype == "float64" and c.op in STAT_OPS + ("rms_norm",), float32_attributes),
    ("float64 in float32", ("compute_precision",),
     lambda c: c.dtype == "float64" and c.op in STAT_OPS + ("rms_norm",), in_float32),
    # GroupNormalization-18 is an inference op (ONNX has no gradients)
    ("group norm per-group affine", ("per_group_affine",),
     lambda c: _grouping_moves(c) and _affine_given(c) and not c.params["grad"], per_group_affine),
    # an empty batch (N = 0): torch's skipped update, OpenVINO's reductions of nothing
    ("empty batch: no update", ("empty_batch_statistics",), _empty_running, skips_empty_batch),
    ("empty batch: statistics 0", ("empty_batch_statistics",),
     lambda c: _empty_running(c) or (c.op == "channel_stats" and c.shape[0] == 0), zero_statistics),
]

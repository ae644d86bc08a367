"""NumPy, written the way its users write normalization: ``np.mean`` / ``np.var(ddof=...)``."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from normconf.adapter import Adapter, from_layout, host_dtype, to_layout

DDOF = {"biased": 0, "unbiased": 1}


class NumpyAdapter(Adapter):
    """Plain NumPy in the case's dtype, statistics with ``np.mean`` and ``np.var``.

    Arrays are in the layout's own memory order: the channel axis is 1 or -1."""

    name = framework = "numpy"
    requires = ("numpy",)
    unsupported_dtypes = {"bfloat16": "NumPy has no bfloat16 dtype"}
    # np.std's default ddof=0; the norms are hand-written, so a case's eps is what a user passes
    defaults = {"channel_stats": {"variance": "biased"}}
    no_autodiff = "NumPy has no autodiff"

    def unsupported(self, case):
        if case.params.get("track_running_stats"):
            return "NumPy has no instance-norm layer that keeps running statistics (PyTorch's track_running_stats)"
        return super().unsupported(case)

    def unsupported_outputs(self, case):
        return {name: self.no_autodiff for name in case.gradients}

    @property
    def xp(self):
        """The array module the formula runs on ("same as NumPy, except the arrays": CuPy overrides it)."""
        return np

    def array(self, case, x):
        """The canonical input ``x`` in the layout's memory order and the case dtype."""
        return self.xp.asarray(to_layout(x, case.layout, host_dtype(case.dtype)), dtype=np.dtype(case.dtype))

    def per_channel(self, case, v, ndim):
        """A [C] vector in the case dtype, shaped to broadcast along the channel axis."""
        cax = _axis(1, case.layout, ndim)
        return self.xp.asarray(v, np.dtype(case.dtype)).reshape([-1 if a == cax else 1 for a in range(ndim)])

    def norm(self, case, inputs, x, axes, weight_shape=None):
        """``(x - mean) / sqrt(var + eps)`` over ``axes``, with the case's divisor, then the affine."""
        xp, p, dt = self.xp, case.params, np.dtype(case.dtype)
        weight_shape = weight_shape or (lambda v: self.per_channel(case, v, x.ndim))
        mean = xp.mean(x, axis=axes, keepdims=True)
        var = xp.var(x, axis=axes, keepdims=True, ddof=DDOF[p["variance"]])
        y = (x - mean) / xp.sqrt(var + dt.type(p["eps"]))
        if "weight" in inputs:
            y = y * weight_shape(inputs["weight"])
        if "bias" in inputs:
            y = y + weight_shape(inputs["bias"])
        return y

    def instance_norm(self, case, inputs):
        x = self.array(case, inputs["x"])
        return {"y": from_layout(self.norm(case, inputs, x, _spatial(case, x.ndim)), case.layout)}

    def group_norm(self, case, inputs):
        xp, p, dt = self.xp, case.params, np.dtype(case.dtype)
        x = self.array(case, inputs["x"])
        cax, g = _axis(1, case.layout, x.ndim), p["groups"]
        xc = xp.moveaxis(x, cax, 1)  # group the channel axis: [N, G, C/G, *spatial]
        grouped = xc.reshape((xc.shape[0], g, xc.shape[1] // g) + xc.shape[2:])
        mean = xp.mean(grouped, axis=tuple(range(2, grouped.ndim)), keepdims=True)
        var = xp.var(grouped, axis=tuple(range(2, grouped.ndim)), keepdims=True, ddof=DDOF[p["variance"]])
        y = xp.moveaxis(((grouped - mean) / xp.sqrt(var + dt.type(p["eps"]))).reshape(xc.shape), 1, cax)
        if "weight" in inputs:
            y = y * self.per_channel(case, inputs["weight"], x.ndim)
        if "bias" in inputs:
            y = y + self.per_channel(case, inputs["bias"], x.ndim)
        return {"y": from_layout(y, case.layout)}

    def axes_weight(self, case, x):
        """layer_norm's and rms_norm's ``axes`` in the layout's memory order, and a function shaping a
        weight (its dims in canonical order) to broadcast over ``x`` in the case dtype."""
        xp, dt = self.xp, np.dtype(case.dtype)
        axes = [_axis(a, case.layout, x.ndim) for a in case.params["axes"]]
        order = sorted(range(len(axes)), key=lambda i: axes[i])  # weight dims in memory order

        def weight_shape(v):
            v = xp.transpose(xp.asarray(v, dt), order)
            shape = [1] * x.ndim
            for i, a in enumerate(sorted(axes)):
                shape[a] = v.shape[i]
            return v.reshape(shape)
        return tuple(axes), weight_shape

    def layer_norm(self, case, inputs):
        x = self.array(case, inputs["x"])
        axes, weight_shape = self.axes_weight(case, x)
        return {"y": from_layout(self.norm(case, inputs, x, axes, weight_shape), case.layout)}

    def rms_norm(self, case, inputs):
        """``x / sqrt(mean(x * x) + eps)`` in float32 for half inputs (the case dtype otherwise), then the
        weight where the case's ``cast`` puts it: in float32 before one cast (``last``), or in the case dtype
        after casting (``before_weight``); ``eps: null`` is the dtype's ``np.finfo(...).eps``."""
        xp, p, dt = self.xp, case.params, np.dtype(case.dtype)
        ct = np.promote_types(dt, np.float32)
        x = self.array(case, inputs["x"])
        axes, weight_shape = self.axes_weight(case, x)
        xc = x.astype(ct)
        eps = np.finfo(dt).eps if p["eps"] is None else p["eps"]
        yhat = xc / xp.sqrt(xp.mean(xc * xc, axis=axes, keepdims=True) + ct.type(eps))
        if "weight" not in inputs:
            y = yhat.astype(dt)
        elif p["cast"] == "before_weight":
            y = yhat.astype(dt) * (dt.type(p["weight_offset"]) + weight_shape(inputs["weight"]))
        else:
            y = (yhat * (ct.type(p["weight_offset"]) + weight_shape(inputs["weight"]).astype(ct))).astype(dt)
        return {"y": from_layout(y, case.layout)}

    def batch_norm(self, case, inputs):
        dt = np.dtype(case.dtype)
        # the "layer": the running statistics and the affine of the case
        layer = SimpleNamespace(inputs=inputs, mean=self.xp.asarray(inputs["running_mean"], dt),
                                var=self.xp.asarray(inputs["running_var"], dt))
        out = self.running_passes(case, inputs, layer, self.array(case, inputs["x"]))
        out["y"] = from_layout(out["y"], case.layout)
        return out

    def step_input(self, case, x):
        return self.xp.asarray(to_layout(x, case.layout), dtype=np.dtype(case.dtype))

    def running_step(self, case, layer, x, train, momentum):
        xp, p, dt, inputs = self.xp, case.params, np.dtype(case.dtype), layer.inputs
        axes = (0,) + _spatial(case, x.ndim)
        if train:
            m = dt.type(momentum)
            layer.mean = (1 - m) * layer.mean + m * xp.mean(x, axis=axes)
            layer.var = (1 - m) * layer.var + m * xp.var(x, axis=axes, ddof=DDOF[p["running_variance"]])
            return self.norm(case, inputs, x, axes), layer
        per_channel = lambda v: self.per_channel(case, v, x.ndim)  # noqa: E731
        y = (x - per_channel(layer.mean)) / xp.sqrt(per_channel(layer.var) + dt.type(p["eps"]))
        y = y * per_channel(inputs["weight"]) if "weight" in inputs else y
        return (y + per_channel(inputs["bias"]) if "bias" in inputs else y), layer

    def running_stats(self, case, layer):
        return layer.mean, layer.var

    def normalize(self, case, inputs):
        x = self.array(case, inputs["x"])
        y = (x - self.per_channel(case, inputs["mean"], x.ndim)) / self.per_channel(case, inputs["std"], x.ndim)
        return {"y": from_layout(y, case.layout)}

    def channel_stats(self, case, inputs):
        xp = self.xp
        x = self.array(case, inputs["x"])
        spatial, ddof = _spatial(case, x.ndim), DDOF[case.params["variance"]]
        if case.params["method"] == "pooled":
            return {"mean": xp.mean(x, axis=(0,) + spatial), "std": xp.std(x, axis=(0,) + spatial, ddof=ddof)}
        return {"mean": xp.mean(xp.mean(x, axis=spatial), axis=0),
                "std": xp.mean(xp.std(x, axis=spatial, ddof=ddof), axis=0)}


def _axis(canonical: int, layout: str, rank: int) -> int:
    """Where canonical dim ``canonical`` lives in ``layout`` memory order."""
    if layout == "channels_first":
        return canonical
    return rank - 1 if canonical == 1 else (canonical - 1 if canonical > 1 else 0)


def _spatial(case, rank: int) -> tuple[int, ...]:
    """The spatial axes in ``case.layout`` memory order."""
    cax = _axis(1, case.layout, rank)
    return tuple(a for a in range(1, rank) if a != cax)

"""NumPy, written the way its users write normalization: ``np.mean`` / ``np.var(ddof=...)``."""
from __future__ import annotations

import numpy as np

from normconf.adapter import Adapter, from_layout, host_dtype, to_layout

DDOF = {"biased": 0, "unbiased": 1}


class NumpyAdapter(Adapter):
    """Plain NumPy in the case's dtype, statistics with ``np.mean`` and ``np.var``."""

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

    def run(self, case, inputs):
        xp, p, dt = self.xp, case.params, np.dtype(case.dtype)
        # Work in the layout's own memory order: the channel axis is 1 or -1.
        x = xp.asarray(to_layout(inputs["x"], case.layout, host_dtype(case.dtype)), dtype=dt)
        cax = 1 if case.layout == "channels_first" else x.ndim - 1
        spatial = tuple(a for a in range(1, x.ndim) if a != cax)
        per_channel = lambda v: xp.asarray(v, dt).reshape([-1 if a == cax else 1 for a in range(x.ndim)])  # noqa: E731

        def norm(x, axes, weight_shape=per_channel):
            mean = xp.mean(x, axis=axes, keepdims=True)
            var = xp.var(x, axis=axes, keepdims=True, ddof=DDOF[p["variance"]])
            y = (x - mean) / xp.sqrt(var + dt.type(p["eps"]))
            if "weight" in inputs:
                y = y * weight_shape(inputs["weight"])
            if "bias" in inputs:
                y = y + weight_shape(inputs["bias"])
            return y

        out = {}
        if case.op == "instance_norm":
            out["y"] = norm(x, spatial)
        elif case.op == "group_norm":
            g = p["groups"]
            xc = xp.moveaxis(x, cax, 1)  # group the channel axis: [N, G, C/G, *spatial]
            grouped = xc.reshape((xc.shape[0], g, xc.shape[1] // g) + xc.shape[2:])
            mean = xp.mean(grouped, axis=tuple(range(2, grouped.ndim)), keepdims=True)
            var = xp.var(grouped, axis=tuple(range(2, grouped.ndim)), keepdims=True, ddof=DDOF[p["variance"]])
            y = xp.moveaxis(((grouped - mean) / xp.sqrt(var + dt.type(p["eps"]))).reshape(xc.shape), 1, cax)
            if "weight" in inputs:
                y = y * per_channel(inputs["weight"])
            if "bias" in inputs:
                y = y + per_channel(inputs["bias"])
            out["y"] = y
        elif case.op == "layer_norm":
            axes = [_axis(a, case.layout, x.ndim) for a in p["axes"]]
            order = sorted(range(len(axes)), key=lambda i: axes[i])  # weight dims in memory order

            def weight_shape(v):
                v = xp.transpose(xp.asarray(v, dt), order)
                shape = [1] * x.ndim
                for i, a in enumerate(sorted(axes)):
                    shape[a] = v.shape[i]
                return v.reshape(shape)
            out["y"] = norm(x, tuple(axes), weight_shape)
        elif case.op == "batch_norm":
            axes = (0,) + spatial
            rm = xp.asarray(inputs["running_mean"], dt)
            rv = xp.asarray(inputs["running_var"], dt)
            if p["training"]:
                for k, xk in enumerate(inputs["x_steps"], start=1):
                    xk = xp.asarray(to_layout(xk, case.layout), dtype=dt)
                    m = dt.type(1.0 / k if p["momentum"] is None else p["momentum"])
                    rm = (1 - m) * rm + m * xp.mean(xk, axis=axes)
                    rv = (1 - m) * rv + m * xp.var(xk, axis=axes, ddof=DDOF[p["running_variance"]])
                    out["y"] = norm(xk, axes)
                out["running_mean"], out["running_var"] = rm, rv
            if not p["training"] or p["eval_after"]:  # normalize with the running statistics
                y = (x - per_channel(rm)) / xp.sqrt(per_channel(rv) + dt.type(p["eps"]))
                y = y * per_channel(inputs["weight"]) if "weight" in inputs else y
                out["y"] = y + per_channel(inputs["bias"]) if "bias" in inputs else y
        elif case.op == "normalize":
            out["y"] = (x - per_channel(inputs["mean"])) / per_channel(inputs["std"])
        elif case.op == "channel_stats":
            ddof = DDOF[p["variance"]]
            if p["method"] == "pooled":
                out["mean"] = xp.mean(x, axis=(0,) + spatial)
                out["std"] = xp.std(x, axis=(0,) + spatial, ddof=ddof)
            else:
                out["mean"] = xp.mean(xp.mean(x, axis=spatial), axis=0)
                out["std"] = xp.mean(xp.std(x, axis=spatial, ddof=ddof), axis=0)
        if "y" in out:
            out["y"] = from_layout(out["y"], case.layout)
        return out


def _axis(canonical: int, layout: str, rank: int) -> int:
    """Where canonical dim ``canonical`` lives in ``layout`` memory order."""
    if layout == "channels_first":
        return canonical
    return rank - 1 if canonical == 1 else (canonical - 1 if canonical > 1 else 0)

"""JAX through ``flax.linen`` normalization modules and ``jax.numpy``, as their users write them."""
from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np

from normconf.adapter import Adapter, from_layout, host_dtype, host_output, no_cuda_driver, to_layout

FLAX_BATCHNORM = "https://flax.readthedocs.io/en/latest/api_reference/flax.linen/layers.html#flax.linen.BatchNorm"


class JaxAdapter(Adapter):
    """Flax ``BatchNorm``/``LayerNorm``/``GroupNorm``/``InstanceNorm``; ``jax.numpy`` for the rest."""

    name = framework = "jax"
    requires = ("jax", "flax")
    # Flax normalizes with the biased variance and stores the biased batch variance in
    # batch_stats['var'], with no option for either:
    # https://flax.readthedocs.io/en/latest/api_reference/flax.linen/layers.html#flax.linen.BatchNorm
    # flax.linen.RMSNorm multiplies rsqrt(var + eps) by the scale in float32 (force_float32_reductions), then x,
    # and casts to the input dtype last (flax/linen/normalization.py, _normalize):
    # https://github.com/google/flax/blob/main/flax/linen/normalization.py
    native = {"variance": "biased", "running_variance": "biased", "cast": "last"}
    # Flax defaults: epsilon=1e-6 for LayerNorm/GroupNorm/InstanceNorm, 1e-5 and momentum=0.99 (old-value
    # weight) for BatchNorm; jnp.std ddof=0. https://flax.readthedocs.io/en/latest/api_reference/flax.linen/layers.html
    defaults = {op: {"eps": 1e-6} for op in ("instance_norm", "layer_norm", "group_norm")}
    defaults.update(batch_norm={"eps": 1e-5, "momentum": 0.01}, channel_stats={"variance": "biased"})
    defaults["rms_norm"] = {"eps": 1e-6}  # flax.linen.RMSNorm(epsilon=1e-6)

    def native_for(self, case):
        # channel_stats is jnp.std, which takes ddof: only the Flax modules fix the divisor.
        return {} if case.op == "channel_stats" else super().native_for(case)

    def unsupported(self, case):
        if case.op == "instance_norm" and case.params["track_running_stats"]:
            return ("flax.linen.InstanceNorm keeps no running statistics: "
                    "https://flax.readthedocs.io/en/latest/api_reference/flax.linen/layers.html#flax.linen.InstanceNorm")
        if case.op == "batch_norm" and case.params["training"] and case.params["momentum"] is None:
            return ("flax.linen.BatchNorm has no cumulative moving average (PyTorch momentum=None): its "
                    f"momentum is a fixed decay of the old value, {FLAX_BATCHNORM}")
        return super().unsupported(case)

    def run(self, case, inputs):
        import jax

        # float64 arrays exist only with x64 on: https://docs.jax.dev/en/latest/default_dtypes.html
        jax.config.update("jax_enable_x64", True)
        with jax.default_device(jax.devices("gpu" if self.device == "cuda" else self.device)[0]):
            out = super().run(case, inputs)
        out = {k: host_output(v) for k, v in out.items()}
        for k in ("y", "grad_x"):
            if k in out:
                out[k] = from_layout(out[k], case.layout)
        return out

    @staticmethod
    def array(case, x):
        """A canonical array in the layout's memory order (channels at ``_cax``), of the case dtype."""
        import jax.numpy as jnp

        return jnp.asarray(to_layout(x, case.layout, host_dtype(case.dtype)), jnp.dtype(case.dtype))

    def normalize(self, case, inputs):  # mean/std in the image's dtype, as torchvision's Normalize does
        import jax
        import jax.numpy as jnp

        dt, x = jnp.dtype(case.dtype), self.array(case, inputs["x"])
        mean, std = (jnp.asarray(inputs[k], dt).reshape([-1 if a == _cax(case) else 1 for a in range(x.ndim)])
                     for k in ("mean", "std"))
        if not case.params["grad"]:
            return {"y": (x - mean) / std}
        y, vjp = jax.vjp(lambda x: (x - mean) / std, x)
        return {"y": y, "grad_x": vjp(self.array(case, inputs["grad_output"]))[0]}

    def channel_stats(self, case, inputs):
        import jax.numpy as jnp

        x, p = self.array(case, inputs["x"]), case.params
        axes, ddof = tuple(a for a in range(x.ndim) if a != _cax(case)), int(p["variance"] == "unbiased")
        if p["method"] == "pooled":
            return {"mean": jnp.mean(x, axis=axes), "std": jnp.std(x, axis=axes, ddof=ddof)}
        per = axes[1:]  # per image, then the mean over images
        return {"mean": jnp.mean(jnp.mean(x, axis=per), axis=0),
                "std": jnp.mean(jnp.std(x, axis=per, ddof=ddof), axis=0)}

    def instance_norm(self, case, inputs):
        import flax.linen as nn

        return self._flax(case, inputs, nn.InstanceNorm(feature_axes=_cax(case), **_common(case, inputs)))

    def layer_norm(self, case, inputs):
        import flax.linen as nn

        axes = _memory_axes(case)
        module = nn.LayerNorm(reduction_axes=axes, feature_axes=axes, **_common(case, inputs))
        # Flax's scale has the normalized dims in memory order; the case's weight is in canonical order.
        return self._flax(case, inputs, module, weight=lambda v: np.transpose(v, np.argsort(axes)),
                          back=lambda v: np.transpose(v, np.argsort(np.argsort(axes))))

    def rms_norm(self, case, inputs):
        """``flax.linen.RMSNorm`` over the case's axes in memory order; its scale (a float32 parameter for half
        inputs) holds ``weight_offset + weight`` (Gemma's 1 + weight, as a port of its checkpoint loads it), the
        gradient of the scale being the weight's. ``eps: null`` is passed as ``jnp.finfo(dtype).eps``."""
        import flax.linen as nn
        import jax.numpy as jnp

        p, axes, dt = case.params, _memory_axes(case), jnp.dtype(case.dtype)
        module = nn.RMSNorm(epsilon=float(jnp.finfo(dt).eps) if p["eps"] is None else p["eps"], dtype=dt,
                            param_dtype=_param_dtype(case), use_scale="weight" in inputs, reduction_axes=axes,
                            feature_axes=axes)
        return self._flax(case, inputs, module,
                          weight=lambda v: np.transpose(v, np.argsort(axes)) + p["weight_offset"],
                          back=lambda v: np.transpose(v, np.argsort(np.argsort(axes))))

    def group_norm(self, case, inputs):
        import flax.linen as nn

        # GroupNorm reads channels from the last axis only (no feature-axis option): channels_first users
        # transpose. https://flax.readthedocs.io/en/latest/api_reference/flax.linen/layers.html#flax.linen.GroupNorm
        module = nn.GroupNorm(num_groups=case.params["groups"], **_common(case, inputs))
        return self._flax(case, inputs, module, to_last=case.layout == "channels_first")

    def batch_norm(self, case, inputs):
        import flax.linen as nn

        # Flax momentum weights the OLD running value: 1 - PyTorch's (eval ignores it).
        momentum = 1.0 - (case.params["momentum"] or 0.0)
        # use_running_average: at each call
        return self._flax(case, inputs, nn.BatchNorm(axis=_cax(case), momentum=momentum, **_common(case, inputs)))

    def _flax(self, case, inputs, module, weight=lambda v: v, to_last=False, back=lambda v: v):
        """The outputs of a Flax module: one pass (batch norm: the base class's passes), with the gradients of
        the final pass. ``weight`` takes the case's weight to Flax's order, ``back`` a gradient back."""
        import jax.numpy as jnp

        pdt = _param_dtype(case)
        names = {"scale": "weight", "bias": "bias"}  # Flax's parameter names, the case's
        params = {k: jnp.asarray(weight(inputs[v]), pdt) for k, v in names.items() if v in inputs}

        def apply(x, params, stats, train):
            """y of the module on x (the layout's memory order), and the batch statistics after the pass."""
            if case.op != "batch_norm":
                y = module.apply({"params": params}, jnp.moveaxis(x, 1, -1) if to_last else x)
                return (jnp.moveaxis(y, -1, 1) if to_last else y), stats
            y, state = module.apply({"params": params, "batch_stats": stats}, x, use_running_average=not train,
                                    mutable=["batch_stats"])
            return y, state["batch_stats"]

        stats = None
        if case.op == "batch_norm":
            stats = {"mean": jnp.asarray(inputs["running_mean"], pdt), "var": jnp.asarray(inputs["running_var"], pdt)}
        layer = SimpleNamespace(apply=apply, params=params, stats=stats, grad_output=inputs.get("grad_output"))
        x = self.array(case, inputs["x"])
        if case.op == "batch_norm":
            out = self.running_passes(case, inputs, layer, x)
        else:
            out = {"y": self.final_step(case, layer, x, False, None)[0]}
        if case.params.get("grad"):  # the parameters' gradients back in the case's order
            grad_x, grad_params = layer.grads
            out.update(grad_x=grad_x,
                       **{f"grad_{v}": back(grad_params[k]) for k, v in names.items() if k in grad_params})
        return out

    def step_input(self, case, x):
        import jax.numpy as jnp

        return jnp.asarray(to_layout(x, case.layout), jnp.dtype(case.dtype))

    def running_step(self, case, layer, x, train, momentum):
        y, layer.stats = layer.apply(x, layer.params, layer.stats, train)
        return y, layer

    def final_step(self, case, layer, x, train, momentum):
        import jax
        import jax.numpy as jnp

        last = functools.partial(layer.apply, stats=layer.stats, train=train)
        if case.params.get("grad"):  # jax.vjp of the function of (x, params), the batch statistics as aux
            y, vjp, layer.stats = jax.vjp(last, x, layer.params, has_aux=True)
            layer.grads = vjp(jnp.asarray(to_layout(layer.grad_output, case.layout), jnp.dtype(case.dtype)))
        else:
            y, layer.stats = last(x, layer.params)
        return y, layer

    def running_stats(self, case, layer):
        return layer.stats["mean"], layer.stats["var"]


def _memory_axes(case) -> list[int]:
    """layer_norm's and rms_norm's ``axes`` (canonical dims) in the layout's memory order: channels_last moves
    C to the end and the spatial dims up one."""
    rank = len(case.shape)
    return [a if case.layout == "channels_first" or a == 0 else rank - 1 if a == 1 else a - 1
            for a in case.params["axes"]]


def _cax(case) -> int:
    """Where the channels live in the layout's memory order."""
    return len(case.shape) - 1 if case.layout == "channels_last" else 1


def _param_dtype(case):
    """Params and batch_stats at Flax's float32 default (float64 for float64 users); Flax also computes the
    statistics of half inputs in float32 (force_float32_reductions): https://github.com/google/flax/issues/612"""
    import jax.numpy as jnp

    return jnp.promote_types(jnp.dtype(case.dtype), jnp.float32)


def _common(case, inputs) -> dict:
    # use_fast_variance stays at Flax's default True, E[x^2]-E[x]^2 (cancels on large-mean inputs):
    # https://flax.readthedocs.io/en/latest/api_reference/flax.linen/layers.html#flax.linen.LayerNorm
    import jax.numpy as jnp

    return dict(epsilon=case.params["eps"], dtype=jnp.dtype(case.dtype), param_dtype=_param_dtype(case),
                use_scale="weight" in inputs, use_bias="bias" in inputs)


class JaxCudaAdapter(JaxAdapter):
    """The same Flax code with its arrays on the first GPU JAX sees."""

    name, device = "jax-cuda", "cuda"

    def available(self):
        return super().available() or no_cuda_driver() or _no_gpu()


@functools.cache
def _no_gpu() -> str | None:
    import jax

    try:
        jax.devices("gpu")
    except Exception as exc:  # no CUDA jaxlib plugin, or a GPU it cannot open
        return f"JAX sees no GPU (jax.devices('gpu') raised {exc})"
    return None


"""PyTorch through ``torch.nn`` / ``torch.nn.functional`` as its users write it."""
from __future__ import annotations

import importlib.util
import math

import numpy as np

from normconf.adapter import Adapter, host_dtype, to_layout

UNBIASED = {"biased": False, "unbiased": True}


class TorchAdapter(Adapter):
    """``torch.nn.functional`` norms, ``nn.BatchNorm*d`` modules, torchvision's ``Normalize``."""

    name = framework = "torch"
    requires = ("torch",)
    # F.instance_norm/layer_norm/group_norm/batch_norm always normalize with the biased variance;
    # the running variance is updated with the unbiased one (n/(n-1) Bessel factor):
    # https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm2d.html
    native = {"variance": "biased", "running_variance": "unbiased"}
    # Default constructor arguments (nn.InstanceNorm*d, nn.BatchNorm*d, nn.LayerNorm, nn.GroupNorm) and
    # Tensor.std's default correction=1: https://pytorch.org/docs/stable/generated/torch.std.html
    defaults = {op: {"eps": 1e-5} for op in ("instance_norm", "layer_norm", "group_norm")}
    defaults.update(batch_norm={"eps": 1e-5, "momentum": 0.1}, channel_stats={"variance": "unbiased"})

    def native_for(self, case):
        # channel_stats is written with Tensor.std(unbiased=...), which takes either divisor
        return {} if case.op == "channel_stats" else super().native_for(case)

    def unsupported(self, case):
        spatial = int(np.prod(case.shape[2:]))
        if case.op == "instance_norm" and spatial == 1:
            return "F.instance_norm raises 'Expected more than 1 spatial element when training'"
        if case.op == "group_norm" and case.shape[1] // case.params["groups"] * spatial == 1:  # found by --fuzz
            return "F.group_norm raises 'Expected more than 1 value per channel when training' for 1 value per group"
        if case.op == "batch_norm" and case.params["training"] and case.shape[0] * spatial == 1:
            return "nn.BatchNorm raises 'Expected more than 1 value per channel when training'"
        if (case.op == "instance_norm" and case.shape[0] == 0
                and (case.params["weight"] is not None or case.params["bias"] is not None)):
            # F.instance_norm runs batch_norm on a [1, N*C, *] view with weight.repeat(N); ATen's
            # empty-input path then takes weight[0] of that empty weight
            return ("F.instance_norm with weight or bias raises IndexError 'select(): index 0 out of range for "
                    "tensor of size [0]' on an empty batch (N = 0)")
        if case.op == "normalize":
            if importlib.util.find_spec("torchvision") is None:
                return "torchvision is not installed (torchvision.transforms.Normalize)"
        return super().unsupported(case)

    def tensor(self, x, case):
        """The canonical array as a torch tensor whose memory follows the case layout."""
        import torch

        t = torch.from_numpy(to_layout(np.asarray(x), case.layout, host_dtype(case.dtype))).to(self.device, getattr(torch, case.dtype))
        # channels_last: NHWC memory seen as NCHW (for 4D/5D this is torch.channels_last[_3d])
        return t.movedim(-1, 1) if case.layout == "channels_last" else t

    def param(self, v, case):
        import torch

        return None if v is None else torch.tensor(np.asarray(v), device=self.device).to(getattr(torch, case.dtype))

    def run(self, case, inputs):
        import torch
        import torch.nn.functional as F

        p, x, grad = case.params, self.tensor(inputs["x"], case), case.params.get("grad", False)
        w, b = self.param(inputs.get("weight"), case), self.param(inputs.get("bias"), case)
        if grad:  # leaves that require grad, as users train them; x keeps its layout's memory (NHWC stays NHWC)
            x, w, b = (None if t is None else t.detach().requires_grad_() for t in (x, w, b))
        leaves = {"x": x, "weight": w, "bias": b}
        with torch.set_grad_enabled(grad):
            if case.op == "instance_norm" and p["track_running_stats"]:
                out, leaves = self._running_module(case, inputs, x, w, b)
            elif case.op == "instance_norm":
                out = {"y": F.instance_norm(x, weight=w, bias=b, eps=p["eps"])}
            elif case.op == "group_norm":
                out = {"y": F.group_norm(x, p["groups"], weight=w, bias=b, eps=p["eps"])}
            elif case.op == "layer_norm":
                out = {"y": self._layer_norm(x, p["axes"], w, b, p["eps"])}
            elif case.op == "batch_norm":
                out, leaves = self._running_module(case, inputs, x, w, b)
            elif case.op == "normalize":
                from torchvision.transforms import Normalize

                # Normalize reads dim -3 as channels, (..., C, H, W): other ranks are viewed as [N, C, S, 1]
                image = x if x.ndim == 4 else x.reshape(*x.shape[:2], math.prod(x.shape[2:]), 1)
                out = {"y": Normalize(inputs["mean"].tolist(), inputs["std"].tolist())(image).reshape(x.shape)}
            else:  # channel_stats: what users write, x.mean / x.std over the non-channel dims
                dims = (0,) + tuple(range(2, x.ndim))
                unbiased = UNBIASED[p["variance"]]
                if p["method"] == "pooled":
                    out = {"mean": x.mean(dim=dims), "std": x.std(dim=dims, unbiased=unbiased)}
                else:
                    # torch reads dim=() as every dim: an [N, C] input (one value per image and channel)
                    # gets a trailing dim of its own to reduce over
                    image = x if x.ndim > 2 else x.unsqueeze(-1)
                    per = tuple(range(2, image.ndim))
                    out = {"mean": image.mean(dim=per).mean(dim=0),
                           "std": image.std(dim=per, unbiased=unbiased).mean(dim=0)}
        if grad:
            out["y"].backward(self.tensor(inputs["grad_output"], case))
            out.update({name: leaves[name.removeprefix("grad_")].grad for name in case.gradients})
        return {k: to_numpy(v) for k, v in out.items()}

    @staticmethod
    def _layer_norm(x, axes, w, b, eps):
        import torch.nn.functional as F

        # F.layer_norm normalizes trailing dims: move the case's axes to the end, then back.
        rest = [d for d in range(x.ndim) if d not in axes]
        xp = x.permute(*rest, *axes)
        y = F.layer_norm(xp, [x.shape[a] for a in axes], weight=w, bias=b, eps=eps)
        return y.permute(*np.argsort(rest + list(axes)).tolist())

    def _running_module(self, case, inputs, x, w, b):
        """``nn.BatchNorm*d`` or ``nn.InstanceNorm*d(track_running_stats=True)``: ``steps`` training passes,
        then (eval_after) one eval pass; y is the last pass's. Returns the outputs and the grad leaves."""
        import torch

        p, rank, nn = case.params, len(case.shape), torch.nn
        if case.op == "batch_norm":
            cls, extra = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[rank], {}
        else:
            cls = {3: nn.InstanceNorm1d, 4: nn.InstanceNorm2d, 5: nn.InstanceNorm3d}[rank]
            extra = {"track_running_stats": True}
        # PyTorch's momentum weights the new statistic, as the case's does; None = cumulative average.
        norm = cls(case.shape[1], eps=p["eps"], momentum=p["momentum"], affine=False, **extra)
        norm = norm.to(self.device, getattr(torch, case.dtype))
        if w is not None or b is not None:
            norm.weight = nn.Parameter(w if w is not None else torch.ones_like(b))
            norm.bias = nn.Parameter(b if b is not None else torch.zeros_like(w))
        with torch.no_grad():
            norm.running_mean.copy_(self.param(inputs["running_mean"], case))
            norm.running_var.copy_(self.param(inputs["running_var"], case))
        training = p.get("training", True)
        norm.train(training)
        earlier = inputs["x_steps"] if p.get("eval_after") else inputs["x_steps"][:-1] if training else []
        for xk in earlier:
            norm(self.tensor(xk, case))
        norm.train(training and not p.get("eval_after"))
        out = {"y": norm(x)}
        if training:
            out.update(running_mean=norm.running_mean, running_var=norm.running_var)
        return out, {"x": x, "weight": norm.weight, "bias": norm.bias}


def host_tensor(v, case, layout: bool = False):
    """A case array (float64 values of the case dtype) as a CPU tensor of the case dtype, copied once
    in that dtype (``layout=True``: in the case layout's memory order, as :func:`to_layout`)."""
    import torch

    v = np.asarray(v)
    host = to_layout(v, case.layout, host_dtype(case.dtype)) if layout else v.astype(host_dtype(case.dtype))
    return torch.from_numpy(host).to(getattr(torch, case.dtype))


def to_numpy(t) -> np.ndarray:
    """A tensor as NumPy in its own dtype; bfloat16 (which NumPy lacks) as float64, exactly."""
    import torch

    return t.detach().to("cpu", torch.float64 if t.dtype == torch.bfloat16 else t.dtype).numpy()

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
    # F.rms_norm (aten._fused_rms_norm) normalizes and multiplies by the weight in float32 and casts to the
    # input dtype last, Gemma's order, with no option (measured here: every bfloat16 element equal):
    # https://github.com/pytorch/pytorch/blob/main/torch/_decomp/decompositions.py (_fused_rms_norm)
    native = {"variance": "biased", "running_variance": "unbiased", "cast": "last"}
    # Default constructor arguments (nn.InstanceNorm*d, nn.BatchNorm*d, nn.LayerNorm, nn.GroupNorm) and
    # Tensor.std's default correction=1: https://pytorch.org/docs/stable/generated/torch.std.html
    defaults = {op: {"eps": 1e-5} for op in ("instance_norm", "layer_norm", "group_norm")}
    defaults.update(batch_norm={"eps": 1e-5, "momentum": 0.1}, channel_stats={"variance": "unbiased"})
    # nn.RMSNorm(eps=None) / F.rms_norm(eps=None): the case's eps null, documented as torch.finfo(x.dtype).eps:
    # https://pytorch.org/docs/stable/generated/torch.nn.RMSNorm.html
    defaults["rms_norm"] = {"eps": None}

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

        t = torch.from_numpy(to_layout(np.asarray(x), case.layout, host_dtype(case.dtype)))
        t = t.to(self.device, getattr(torch, case.dtype))
        # channels_last: NHWC memory seen as NCHW (for 4D/5D this is torch.channels_last[_3d])
        return t.movedim(-1, 1) if case.layout == "channels_last" else t

    def param(self, v, case):
        import torch

        return None if v is None else torch.tensor(np.asarray(v), device=self.device).to(getattr(torch, case.dtype))

    def run(self, case, inputs):
        import torch

        with torch.set_grad_enabled(case.params.get("grad", False)):
            out = super().run(case, inputs)
        return {k: to_numpy(v) for k, v in out.items()}

    def leaves(self, case, inputs):
        """x, weight and bias as tensors (None where absent); with ``grad``, leaves that require grad, as
        users train them (x keeps its layout's memory: NHWC stays NHWC)."""
        x = self.tensor(inputs["x"], case)
        w, b = self.param(inputs.get("weight"), case), self.param(inputs.get("bias"), case)
        if case.params.get("grad", False):
            x, w, b = (None if t is None else t.detach().requires_grad_() for t in (x, w, b))
        return x, w, b

    def with_grads(self, case, inputs, out, **leaves):
        """``out`` and, with ``grad``, the gradients of sum(y * grad_output) at ``leaves`` (x, weight, bias)."""
        if case.params.get("grad", False):
            out["y"].backward(self.tensor(inputs["grad_output"], case))
            out.update({name: leaves[name.removeprefix("grad_")].grad for name in case.gradients})
        return out

    def instance_norm(self, case, inputs):
        import torch.nn.functional as F

        if case.params["track_running_stats"]:
            return self.batch_norm(case, inputs)  # nn.InstanceNorm*d's running statistics: batch norm's passes
        x, w, b = self.leaves(case, inputs)
        y = F.instance_norm(x, weight=w, bias=b, eps=case.params["eps"])
        return self.with_grads(case, inputs, {"y": y}, x=x, weight=w, bias=b)

    def group_norm(self, case, inputs):
        import torch.nn.functional as F

        x, w, b = self.leaves(case, inputs)
        y = F.group_norm(x, case.params["groups"], weight=w, bias=b, eps=case.params["eps"])
        return self.with_grads(case, inputs, {"y": y}, x=x, weight=w, bias=b)

    def layer_norm(self, case, inputs):
        import torch.nn.functional as F

        x, w, b = self.leaves(case, inputs)
        # F.layer_norm normalizes trailing dims: move the case's axes to the end, then back.
        axes = case.params["axes"]
        rest = [d for d in range(x.ndim) if d not in axes]
        y = F.layer_norm(x.permute(*rest, *axes), [x.shape[a] for a in axes], weight=w, bias=b, eps=case.params["eps"])
        y = y.permute(*np.argsort(rest + list(axes)).tolist())
        return self.with_grads(case, inputs, {"y": y}, x=x, weight=w, bias=b)

    def rms_norm(self, case, inputs):
        """``F.rms_norm`` over the case's axes moved to the end (it normalizes trailing dims), ``eps=None``
        for the case's null; Gemma's ``weight_offset`` is added to the weight in its dtype, as ports of
        Gemma checkpoints to ``nn.RMSNorm`` do, with the gradient flowing to the weight itself."""
        import torch.nn.functional as F

        x, w, _ = self.leaves(case, inputs)
        p = case.params
        axes = p["axes"]
        rest = [d for d in range(x.ndim) if d not in axes]
        scale = w + p["weight_offset"] if w is not None and p["weight_offset"] else w
        y = F.rms_norm(x.permute(*rest, *axes), [x.shape[a] for a in axes], weight=scale, eps=p["eps"])
        y = y.permute(*np.argsort(rest + list(axes)).tolist())
        return self.with_grads(case, inputs, {"y": y}, x=x, weight=w)

    def normalize(self, case, inputs):
        from torchvision.transforms import Normalize

        x, _, _ = self.leaves(case, inputs)
        # Normalize reads dim -3 as channels, (..., C, H, W): other ranks are viewed as [N, C, S, 1]
        image = x if x.ndim == 4 else x.reshape(*x.shape[:2], math.prod(x.shape[2:]), 1)
        y = Normalize(inputs["mean"].tolist(), inputs["std"].tolist())(image).reshape(x.shape)
        return self.with_grads(case, inputs, {"y": y}, x=x)

    def channel_stats(self, case, inputs):
        # what users write, x.mean / x.std over the non-channel dims
        x, p = self.tensor(inputs["x"], case), case.params
        unbiased = UNBIASED[p["variance"]]
        if p["method"] == "pooled":
            dims = (0,) + tuple(range(2, x.ndim))
            return {"mean": x.mean(dim=dims), "std": x.std(dim=dims, unbiased=unbiased)}
        # torch reads dim=() as every dim: an [N, C] input (one value per image and channel) gets a
        # trailing dim of its own to reduce over
        image = x if x.ndim > 2 else x.unsqueeze(-1)
        per = tuple(range(2, image.ndim))
        return {"mean": image.mean(dim=per).mean(dim=0), "std": image.std(dim=per, unbiased=unbiased).mean(dim=0)}

    def batch_norm(self, case, inputs):
        """``nn.BatchNorm*d``, or ``nn.InstanceNorm*d(track_running_stats=True)``, through the base class's
        passes: ``steps`` training passes, then (eval_after) one eval pass; y is the last pass's."""
        import torch

        p, rank, nn = case.params, len(case.shape), torch.nn
        x, w, b = self.leaves(case, inputs)
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
        out = self.running_passes(case, inputs, norm, x)
        return self.with_grads(case, inputs, out, x=x, weight=norm.weight, bias=norm.bias)

    def step_input(self, case, x):
        return self.tensor(x, case)

    def running_step(self, case, norm, x, train, momentum):
        norm.train(train)
        return norm(x), norm

    def running_stats(self, case, norm):
        return norm.running_mean, norm.running_var


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

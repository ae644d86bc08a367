"""PyTorch through ``torch.nn`` / ``torch.nn.functional`` as its users write it."""
from __future__ import annotations

import importlib.util

import numpy as np

from normconf.adapter import Adapter, to_layout

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
        if case.op == "normalize":
            if importlib.util.find_spec("torchvision") is None:
                return "torchvision is not installed (torchvision.transforms.Normalize)"
            if len(case.shape) != 4:
                return "torchvision Normalize reads dim -3 as channels: it takes [N, C, H, W] only"
        return super().unsupported(case)

    def tensor(self, x, case):
        """The canonical array as a torch tensor whose memory follows the case layout."""
        import torch

        t = torch.from_numpy(to_layout(np.asarray(x), case.layout)).to(self.device, getattr(torch, case.dtype))
        # channels_last: NHWC memory seen as NCHW (for 4D/5D this is torch.channels_last[_3d])
        return t.movedim(-1, 1) if case.layout == "channels_last" else t

    def param(self, v, case):
        import torch

        return None if v is None else torch.tensor(np.asarray(v), device=self.device).to(getattr(torch, case.dtype))

    def run(self, case, inputs):
        import torch
        import torch.nn.functional as F

        p, x = case.params, self.tensor(inputs["x"], case)
        w, b = self.param(inputs.get("weight"), case), self.param(inputs.get("bias"), case)
        with torch.no_grad():
            if case.op == "instance_norm":
                out = {"y": F.instance_norm(x, weight=w, bias=b, eps=p["eps"])}
            elif case.op == "group_norm":
                out = {"y": F.group_norm(x, p["groups"], weight=w, bias=b, eps=p["eps"])}
            elif case.op == "layer_norm":
                out = {"y": self._layer_norm(x, p["axes"], w, b, p["eps"])}
            elif case.op == "batch_norm":
                out = self._batch_norm(case, inputs, w, b)
            elif case.op == "normalize":
                from torchvision.transforms import Normalize

                out = {"y": Normalize(inputs["mean"].tolist(), inputs["std"].tolist())(x)}
            else:  # channel_stats: what users write, x.mean / x.std over the non-channel dims
                dims = (0,) + tuple(range(2, x.ndim))
                unbiased = UNBIASED[p["variance"]]
                if p["method"] == "pooled":
                    out = {"mean": x.mean(dim=dims), "std": x.std(dim=dims, unbiased=unbiased)}
                else:
                    per = tuple(range(2, x.ndim))
                    out = {"mean": x.mean(dim=per).mean(dim=0), "std": x.std(dim=per, unbiased=unbiased).mean(dim=0)}
        return {k: v.detach().to("cpu", torch.float64).numpy() for k, v in out.items()}

    @staticmethod
    def _layer_norm(x, axes, w, b, eps):
        import torch.nn.functional as F

        # F.layer_norm normalizes trailing dims: move the case's axes to the end, then back.
        rest = [d for d in range(x.ndim) if d not in axes]
        xp = x.permute(*rest, *axes)
        y = F.layer_norm(xp, [x.shape[a] for a in axes], weight=w, bias=b, eps=eps)
        return y.permute(*np.argsort(rest + list(axes)).tolist())

    def _batch_norm(self, case, inputs, w, b):
        import torch

        p, rank = case.params, len(case.shape)
        cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}[rank]
        # PyTorch's momentum weights the new statistic, as the case's does; None = cumulative average.
        bn = cls(case.shape[1], eps=p["eps"], momentum=p["momentum"], affine=False).to(self.device, getattr(torch, case.dtype))
        if w is not None or b is not None:
            bn.weight = torch.nn.Parameter(w if w is not None else torch.ones_like(b))
            bn.bias = torch.nn.Parameter(b if b is not None else torch.zeros_like(w))
        bn.running_mean.copy_(self.param(inputs["running_mean"], case))
        bn.running_var.copy_(self.param(inputs["running_var"], case))
        bn.train(p["training"])
        for xk in inputs["x_steps"] if p["training"] else [inputs["x"]]:
            y = bn(self.tensor(xk, case))
        out = {"y": y}
        if p["training"]:
            out.update(running_mean=bn.running_mean, running_var=bn.running_var)
        return out


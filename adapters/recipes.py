"""The hand-written normalizations of the seed documents, each written the way its document writes
it (the public write-ups cited in cases/seeds.yaml), each declaring the conventions it fixes. Their
mismatches are expected."""
from __future__ import annotations

import importlib.util

import numpy as np

from normconf.adapter import OPS, Adapter

from .torch_adapter import host_tensor, to_numpy

FOUR_D = "the recipe unpacks n, c, h, w = feat.shape: [N, C, H, W] input only"


class Recipe(Adapter):
    """Shared checks: the recipes take 4-D channels-first input, no affine parameters. Each recipe has
    a method for each op its document writes."""

    framework = "numpy"
    affine = False
    empty_batch: str | None = None  # why the recipe cannot take N = 0, where it cannot

    def unsupported(self, case):
        if case.params.get("track_running_stats"):
            return "the recipe keeps no running statistics (PyTorch's track_running_stats)"
        if not self.implements(case.op):
            return f"the recipe implements only {', '.join(op for op in OPS if self.implements(op))}"
        if case.shape[0] == 0 and self.empty_batch:
            return self.empty_batch
        if len(case.shape) != 4:
            return FOUR_D
        if case.layout != "channels_first":
            return "the recipe indexes axes of an NCHW array; it has no channels_last form"
        if not self.affine and ("weight" in case.params and case.params["weight"] is not None
                                or "bias" in case.params and case.params["bias"] is not None):
            return "the recipe has no affine weight or bias"
        return super().unsupported(case)

    def unsupported_outputs(self, case):
        return {name: "the recipe is a forward pass written in its document; it computes no gradients"
                for name in case.gradients}


class Seed000Numpy(Recipe):
    """Seed 000, NumPy ``calc_mean_std``: ``np.var`` divides by n."""

    name = "recipe-000-numpy"
    requires = ("numpy",)
    native = {"variance": "biased"}
    unsupported_dtypes = {"bfloat16": "NumPy has no bfloat16 dtype"}
    empty_batch = ("calc_mean_std calls feat.reshape(n, c, -1), which raises ValueError 'cannot reshape array "
                   "of size 0' on an empty batch (N = 0)")

    def instance_norm(self, case, inputs):
        def calc_mean_std(feat, eps=1e-5):
            n, c, h, w = feat.shape
            feat_var = np.var(feat.reshape(n, c, -1), axis=2) + eps
            feat_std = np.sqrt(feat_var).reshape(n, c, 1, 1)
            feat_mean = np.mean(feat.reshape(n, c, -1), axis=2).reshape(n, c, 1, 1)
            return feat_mean, feat_std

        X = np.asarray(inputs["x"], dtype=case.dtype)
        feat_mean, feat_std = calc_mean_std(X, eps=case.params["eps"])
        return {"y": (X - feat_mean) / feat_std}


class Seed000Torch(Recipe):
    """Seed 000, PyTorch ``calc_mean_std``: ``Tensor.var`` divides by n-1."""

    name = "recipe-000-torch"
    framework = "torch"
    requires = ("torch",)
    native = {"variance": "unbiased"}
    empty_batch = ("calc_mean_std calls feat.view(n, c, -1), which raises RuntimeError 'cannot reshape tensor "
                   "of 0 elements' on an empty batch (N = 0)")

    def instance_norm(self, case, inputs):
        def calc_mean_std(feat, eps=1e-5):
            n, c, h, w = feat.shape
            feat_var = feat.view(n, c, -1).var(dim=2) + eps
            feat_std = feat_var.sqrt().view(n, c, 1, 1)
            feat_mean = feat.view(n, c, -1).mean(dim=2).view(n, c, 1, 1)
            return feat_mean, feat_std

        X = host_tensor(inputs["x"], case)
        feat_mean, feat_std = calc_mean_std(X, eps=case.params["eps"])
        return {"y": to_numpy((X - feat_mean) / feat_std)}


class Seed001Labml(Recipe):
    """Seed 001, labml.ai's annotated InstanceNorm: variance as E[x^2] - E[x]^2 (from ``labml-nn``
    when installed, else the document's own lines)."""

    name = "recipe-001-labml"
    framework = "torch"
    requires = ("torch",)
    affine = True
    native = {"variance": "biased"}

    def unsupported(self, case):
        if self.implements(case.op) and not case.params.get("track_running_stats"):
            if case.shape[0] == 0:  # as labml-nn's own InstanceNorm (adapters/labml_adapter.py)
                return ("labml's InstanceNorm calls x.view(batch_size, channels, -1), which raises RuntimeError "
                        "'cannot reshape tensor of 0 elements' on an empty batch (N = 0)")
            return Adapter.unsupported(self, case)  # the module takes [batch, channels, *] of any rank and layout
        return super().unsupported(case)

    def instance_norm(self, case, inputs):
        import torch

        cls = _labml_instance_norm()
        c = case.shape[1]
        norm = cls(c, eps=case.params["eps"], affine=True).to(getattr(torch, case.dtype))
        with torch.no_grad():
            if "weight" in inputs:
                norm.scale.copy_(torch.tensor(inputs["weight"]))
            if "bias" in inputs:
                norm.shift.copy_(torch.tensor(inputs["bias"]))
            x = host_tensor(inputs["x"], case, layout=True)
            y = norm(x.movedim(-1, 1) if case.layout == "channels_last" else x)  # NHWC memory seen as NCHW
        return {"y": to_numpy(y)}


def _labml_instance_norm():
    if importlib.util.find_spec("labml_nn") is not None:
        from labml_nn.normalization.instance_norm import InstanceNorm

        return InstanceNorm
    import torch
    from torch import nn

    class InstanceNorm(nn.Module):  # the document's lines 35-104, for machines without labml-nn
        def __init__(self, channels, *, eps=1e-5, affine=True):
            super().__init__()
            self.channels, self.eps, self.affine = channels, eps, affine
            if self.affine:
                self.scale = nn.Parameter(torch.ones(channels))
                self.shift = nn.Parameter(torch.zeros(channels))

        def forward(self, x):
            x_shape = x.shape
            batch_size = x_shape[0]
            assert self.channels == x.shape[1]
            x = x.view(batch_size, self.channels, -1)
            mean = x.mean(dim=[-1], keepdim=True)
            mean_x2 = (x ** 2).mean(dim=[-1], keepdim=True)
            var = mean_x2 - mean ** 2
            x_norm = (x - mean) / torch.sqrt(var + self.eps)
            x_norm = x_norm.view(batch_size, self.channels, -1)
            if self.affine:
                x_norm = self.scale.view(1, -1, 1) * x_norm + self.shift.view(1, -1, 1)
            return x_norm.view(x_shape)

    return InstanceNorm


class Seed002EinopsTorch(Recipe):
    """Seed 002, einops re-derivations of Instance/Layer/GroupNorm with torch's ``.std()`` (n-1)
    and no eps."""

    name = "recipe-002-einops-torch"
    framework = "torch"
    requires = ("torch", "einops")
    native = {"variance": "unbiased", "eps": 0.0}

    def unsupported(self, case):
        if case.op == "layer_norm" and case.params["axes"] != [1, 2, 3]:
            return "the recipe normalizes over (c, h, w) only"
        return super().unsupported(case)

    def instance_norm(self, case, inputs):
        from einops import rearrange

        x = host_tensor(inputs["x"], case)
        x_ = rearrange(x, "b c h w -> b c (h w)")
        mean = rearrange(x_.mean(dim=2), "b c -> b c 1 1")
        std = rearrange(x_.std(dim=2), "b c -> b c 1 1")
        y_ = (x - mean) / std
        return {"y": to_numpy(y_)}

    def layer_norm(self, case, inputs):
        from einops import rearrange

        x = host_tensor(inputs["x"], case)
        x_ = rearrange(x, "b c h w -> (h w c) b")
        mean = rearrange(x_.mean(axis=0), "b -> b 1 1 1")
        std = rearrange(x_.std(axis=0), "b -> b 1 1 1")
        y_ = (x - mean) / std
        return {"y": to_numpy(y_)}

    def group_norm(self, case, inputs):
        from einops import rearrange

        x = host_tensor(inputs["x"], case)
        b, c, h, w = x.shape
        group_num = case.params["groups"]
        x_ = rearrange(x, "b (g n) h w -> b g (n h w)", g=group_num)
        mean = rearrange(x_.mean(dim=2), "b g -> b g 1")
        std = rearrange(x_.std(dim=2), "b g -> b g 1")
        y_ = (x_ - mean) / std
        y_ = rearrange(y_, "b g (n h w) -> b (g n) h w", g=group_num, h=h, w=w)
        return {"y": to_numpy(y_)}


class Seed002EinopsNumpy(Recipe):
    """Seed 002, the einops BatchNorm re-derivation on NumPy arrays: ``.std(axis=0)`` divides by n,
    no eps, batch statistics only."""

    name = "recipe-002-einops-numpy"
    requires = ("numpy", "einops")
    native = {"variance": "biased", "eps": 0.0}
    unsupported_dtypes = {"bfloat16": "NumPy has no bfloat16 dtype"}

    def unsupported(self, case):
        if case.op == "batch_norm" and (not case.params["training"] or case.params["eval_after"]):
            return "the recipe has no running statistics: batch statistics (training) only"
        return super().unsupported(case)

    def unsupported_outputs(self, case):
        why = "the recipe computes batch statistics only and keeps no running statistics"
        return {**super().unsupported_outputs(case), "running_mean": why, "running_var": why}

    def batch_norm(self, case, inputs):
        from einops import rearrange

        image = rearrange(np.asarray(inputs["x"], dtype=case.dtype), "b c h w -> b h w c")
        image_ = rearrange(image, "b h w c -> (b h w) c")
        mean = rearrange(image_.mean(axis=0), "c -> 1 1 1 c")
        std = rearrange(image_.std(axis=0), "c -> 1 1 1 c")
        y_ = (image - mean) / std
        return {"y": rearrange(y_, "b h w c -> b c h w")}


class Seed004CalculateNorm(Recipe):
    """Seed 004, ``calculate_norm``: the mean over images of each image's ``np.std``, not the
    pooled std of the dataset."""

    name = "recipe-004-calculate-norm"
    requires = ("numpy",)
    native = {"method": "per_image_mean", "variance": "biased"}
    empty_batch = ("calculate_norm averages a Python list of per-image statistics: with no images "
                   "np.array([]).mean(axis=0) is one NaN scalar, not one value per channel")
    unsupported_dtypes = {"bfloat16": "NumPy has no bfloat16 dtype"}

    def channel_stats(self, case, inputs):
        dataset = [(img, 0) for img in np.asarray(inputs["x"], dtype=case.dtype)]  # (image, label) pairs

        def calculate_norm(dataset):
            mean_ = np.array([np.mean(x, axis=(1, 2)) for x, _ in dataset])
            std_ = np.array([np.std(x, axis=(1, 2)) for x, _ in dataset])
            return mean_.mean(axis=0), std_.mean(axis=0)

        mean, std = calculate_norm(dataset)
        return {"mean": mean, "std": std}


class RMSRecipe(Adapter):
    """The RMSNorm modules that model code copies, each written the way its repository writes it: an
    ``nn.Module`` over the last dim of a [batch, ..., dim] tensor, its ``weight`` a parameter (the
    case's loaded into it; the module's own init where the case has none), gradients by autograd. The
    conventions each fixes (its weight offset and where it rounds a half result) are declared
    ``native``; its default eps (1e-6) is what ``framework_defaults`` cases run with."""

    framework = "torch"
    requires = ("torch",)
    defaults = {"rms_norm": {"eps": 1e-6}}

    def unsupported(self, case):
        if not self.implements(case.op):
            return f"the recipe implements only {', '.join(op for op in OPS if self.implements(op))}"
        rank = len(case.shape)
        if sorted(a % rank for a in case.params["axes"]) != [rank - 1]:
            return "the module normalizes over the last dim only (x.pow(2).mean(-1, keepdim=True))"
        if case.layout != "channels_first":
            return ("the module takes a [batch, ..., dim] tensor and normalizes its last dim; it has no "
                    "channels_last form")
        return super().unsupported(case)

    def module(self, dim: int, eps: float):
        """The repository's module, constructed as its model constructs it."""
        raise NotImplementedError

    def rms_norm(self, case, inputs):
        import torch

        from normconf.adapter import rms_eps

        x = host_tensor(inputs["x"], case)
        # the model's parameters are in its dtype (LLaMA and Gemma load their checkpoints in bfloat16)
        norm = self.module(case.shape[-1], rms_eps(case.params, case.dtype)).to(x.dtype)
        with torch.no_grad():
            if "weight" in inputs:
                norm.weight.copy_(host_tensor(inputs["weight"], case))
        grad = case.params["grad"]
        x.requires_grad_(grad)
        y = norm(x)
        out = {"y": to_numpy(y)}
        if grad:
            y.backward(host_tensor(inputs["grad_output"], case))
            out["grad_x"] = to_numpy(x.grad)
            if "weight" in inputs:
                out["grad_weight"] = to_numpy(norm.weight.grad)
        return out


class LlamaRMSNorm(RMSRecipe):
    """LLaMA's ``RMSNorm`` (https://github.com/meta-llama/llama/blob/main/llama/model.py): normalized
    in float32 (``x.float()``), cast to the input dtype (``.type_as(x)``), then multiplied by the
    weight in that dtype; a float64 input is computed in float32 too."""

    name = "recipe-llama-rmsnorm"
    native = {"weight_offset": 0.0, "cast": "before_weight"}

    def module(self, dim, eps):
        import torch
        from torch import nn

        class RMSNorm(torch.nn.Module):
            def __init__(self, dim: int, eps: float = 1e-6):
                super().__init__()
                self.eps = eps
                self.weight = nn.Parameter(torch.ones(dim))

            def _norm(self, x):
                return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

            def forward(self, x):
                output = self._norm(x.float()).type_as(x)
                return output * self.weight

        return RMSNorm(dim, eps=eps)


class GemmaRMSNorm(RMSRecipe):
    """Gemma's ``RMSNorm`` (https://github.com/google/gemma_pytorch/blob/main/gemma/model.py): the
    weight stored as an offset from 1 (``add_unit_offset=True``, initialized to zeros), normalized and
    multiplied by ``1 + weight`` in float32, cast to the input dtype last (``.type_as(x)``); a float64
    input is computed in float32 too."""

    name = "recipe-gemma-rmsnorm"
    native = {"weight_offset": 1.0, "cast": "last"}

    def module(self, dim, eps):
        import torch
        from torch import nn

        class RMSNorm(torch.nn.Module):
            def __init__(self, dim: int, eps: float = 1e-6, add_unit_offset: bool = True):
                super().__init__()
                self.eps = eps
                self.add_unit_offset = add_unit_offset
                self.weight = nn.Parameter(torch.zeros(dim))

            def _norm(self, x):
                return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

            def forward(self, x):
                output = self._norm(x.float())
                if self.add_unit_offset:
                    output = output * (1 + self.weight.float())
                else:
                    output = output * self.weight.float()
                return output.type_as(x)

        return RMSNorm(dim, eps=eps)


class T5LayerNorm(RMSRecipe):
    """Hugging Face's ``T5LayerNorm`` (https://github.com/huggingface/transformers/blob/main/src/
    transformers/models/t5/modeling_t5.py), an RMS norm despite its name: the variance (the mean of
    the squares, no mean subtracted) in float32, x times its rsqrt, cast to the weight's dtype where
    that is half, then multiplied by the weight."""

    name = "recipe-t5-layernorm"
    native = {"weight_offset": 0.0, "cast": "before_weight"}

    def module(self, dim, eps):
        import torch
        from torch import nn

        class T5LayerNorm(nn.Module):
            def __init__(self, hidden_size, eps=1e-6):
                super().__init__()
                self.weight = nn.Parameter(torch.ones(hidden_size))
                self.variance_epsilon = eps

            def forward(self, hidden_states):
                variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
                hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
                if self.weight.dtype in [torch.float16, torch.bfloat16]:
                    hidden_states = hidden_states.to(self.weight.dtype)
                return self.weight * hidden_states

        return T5LayerNorm(dim, eps=eps)


RECIPES = [Seed000Numpy, Seed000Torch, Seed001Labml, Seed002EinopsTorch, Seed002EinopsNumpy, Seed004CalculateNorm,
           LlamaRMSNorm, GemmaRMSNorm, T5LayerNorm]

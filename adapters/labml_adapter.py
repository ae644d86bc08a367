"""labml-nn's annotated normalization modules (``labml_nn.normalization``), used as its readers use them."""
from __future__ import annotations

import math

import numpy as np

from normconf.adapter import Adapter

from .torch_adapter import host_tensor, to_numpy

DOC = "https://nn.labml.ai/normalization/{}/index.html"  # the annotated source of each module


class LabmlAdapter(Adapter):
    """labml-nn's ``InstanceNorm``, ``BatchNorm``, ``LayerNorm`` and ``GroupNorm`` modules, on CPU torch."""

    name = distribution = "labml-nn"
    framework = "torch"
    requires = ("torch", "labml_nn")
    # Every module computes var = mean(x ** 2) - mean(x) ** 2 (divisor n), and BatchNorm writes that
    # same biased batch variance into its exp_var: https://nn.labml.ai/normalization/batch_norm/index.html
    native = {"variance": "biased", "running_variance": "biased"}
    # labml-nn's constructors: eps=1e-5 everywhere, BatchNorm momentum=0.1 (new-value weight, as torch)
    defaults = {op: {"eps": 1e-5} for op in ("instance_norm", "layer_norm", "group_norm")}
    defaults["batch_norm"] = {"eps": 1e-5, "momentum": 0.1}
    unsupported_ops = {"normalize": "labml-nn has no constant per-channel Normalize module",
                       "channel_stats": "labml-nn has no channel-statistics function"}

    def unsupported(self, case):
        p = case.params
        if case.op == "instance_norm" and p["track_running_stats"]:
            return f"labml-nn's InstanceNorm keeps no running statistics ({DOC.format('instance_norm')})"
        if case.shape[0] == 0 and case.op in ("instance_norm", "batch_norm", "group_norm"):
            # x.view(batch_size, channels_or_groups, -1): -1 is ambiguous with 0 elements
            return ("labml-nn's InstanceNorm/BatchNorm/GroupNorm call x.view(batch_size, ..., -1), which raises "
                    "RuntimeError 'cannot reshape tensor of 0 elements' on an empty batch (N = 0)")
        if case.op == "batch_norm" and p["momentum"] is None:
            # exp_mean = (1 - self.momentum) * ...: None raises TypeError (labml has no cumulative average)
            return ("labml-nn BatchNorm has no cumulative average: momentum=None raises TypeError in "
                    f"(1 - self.momentum) ({DOC.format('batch_norm')})")
        if (case.op == "group_norm" and case.layout == "channels_last"
                and case.shape[1] // p["groups"] > 1 and math.prod(case.shape[2:]) > 1):
            # InstanceNorm/BatchNorm's x.view(N, C, -1) merges only the spatial dims, which NHWC memory keeps
            # together; GroupNorm's x.view(N, groups, -1) must merge channels with positions: it raises.
            return ("labml-nn GroupNorm calls x.view(batch_size, groups, -1), which raises on a channels_last "
                    f"tensor (a group spans several channels and positions) ({DOC.format('group_norm')})")
        return super().unsupported(case)

    def run(self, case, inputs):
        import torch

        with torch.set_grad_enabled(case.params.get("grad", False)):
            out = super().run(case, inputs)
        return {k: to_numpy(v) for k, v in out.items()}

    def instance_norm(self, case, inputs):
        from labml_nn.normalization.instance_norm import InstanceNorm

        return self._forward(case, inputs, InstanceNorm(case.shape[1], eps=case.params["eps"], affine=_affine(inputs)))

    def group_norm(self, case, inputs):
        from labml_nn.normalization.group_norm import GroupNorm

        p = case.params
        return self._forward(case, inputs, GroupNorm(p["groups"], case.shape[1], eps=p["eps"], affine=_affine(inputs)))

    def layer_norm(self, case, inputs):
        from labml_nn.normalization.layer_norm import LayerNorm

        axes = case.params["axes"]
        norm = LayerNorm([case.shape[a] for a in axes], eps=case.params["eps"], elementwise_affine=_affine(inputs))

        def forward(x):
            # LayerNorm normalizes the trailing dims only: move the case's axes to the end, then back
            # (https://nn.labml.ai/normalization/layer_norm/index.html).
            rest = [d for d in range(x.ndim) if d not in axes]
            return {"y": norm(x.permute(*rest, *axes)).permute(*np.argsort(rest + axes).tolist())}
        return self._forward(case, inputs, norm, forward)

    def batch_norm(self, case, inputs):
        from labml_nn.normalization.batch_norm import BatchNorm

        p = case.params
        # labml's momentum weights the new batch statistic, as the case's does (PyTorch's convention).
        norm = BatchNorm(case.shape[1], eps=p["eps"], momentum=p["momentum"], affine=_affine(inputs))
        return self._forward(case, inputs, norm, lambda x: self.running_passes(case, inputs, norm, x))

    def _forward(self, case, inputs, norm, forward=None):
        """``norm`` in the case dtype with the case's weight, bias (and running statistics), ``forward(x)``
        (default ``{"y": norm(x)}``) on x in the case layout; with ``grad``, the gradients too."""
        import torch

        dtype = getattr(torch, case.dtype)
        norm = norm.to(dtype)
        param = lambda v: torch.tensor(np.asarray(v)).to(dtype)  # noqa: E731
        scale = shift = None  # the modules' affine parameters (they have none without affine)
        if _affine(inputs):
            scale, shift = (norm.gain, norm.bias) if case.op == "layer_norm" else (norm.scale, norm.shift)
        with torch.no_grad():
            if "weight" in inputs:
                scale.copy_(param(inputs["weight"]))
            if "bias" in inputs:
                shift.copy_(param(inputs["bias"]))
            if case.op == "batch_norm":
                norm.exp_mean.copy_(param(inputs["running_mean"]))
                norm.exp_var.copy_(param(inputs["running_var"]))
        grad = case.params.get("grad", False)
        x = self.step_input(case, inputs["x"]).detach().requires_grad_(grad)  # a leaf, as users train them
        out = forward(x) if forward else {"y": norm(x)}
        if grad:
            out["y"].backward(self.step_input(case, inputs["grad_output"]))
            leaves = {"grad_x": x, "grad_weight": scale, "grad_bias": shift}
            out.update({name: leaves[name].grad for name in case.gradients})
        return out

    def step_input(self, case, x):
        """The canonical array as a tensor whose memory follows the case layout (NHWC seen as NCHW)."""
        t = host_tensor(x, case, layout=True)
        return t.movedim(-1, 1) if case.layout == "channels_last" else t

    def running_step(self, case, norm, x, train, momentum):
        norm.train(train)
        return norm(x), norm

    def running_stats(self, case, norm):
        return norm.exp_mean, norm.exp_var


def _affine(inputs) -> bool:
    """Every module takes affine=False; with only one of weight/bias given, the other keeps its ones/zeros."""
    return "weight" in inputs or "bias" in inputs

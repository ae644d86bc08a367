"""A complete adapter, as docs/adapters.md walks through it: a hand-written instance norm kernel.

Run it against a shipped case file, with NumPy as a second opinion in the pairwise matrices:

    PYTHONPATH=docs .venv/bin/pytest cases/instance_norm.yaml --adapters numpy \
        --adapter example_adapter:MyInstanceNorm

The "kernel" is NumPy code written the way a kernel author would: statistics accumulated in float32
for half-precision inputs (float64 for float64), the result rounded once to the input dtype.
"""
from __future__ import annotations

import numpy as np

from normconf.adapter import Adapter, from_layout, host_dtype, host_output, to_layout

OTHER_OPS = ("batch_norm", "layer_norm", "group_norm", "normalize", "channel_stats")


class MyInstanceNorm(Adapter):
    """Instance norm over the spatial dims, with the case's eps, divisor and optional affine."""

    name = "my-instance-norm"          # what --adapters and the item ids use
    framework = "numpy"                # its version is reported (the `numpy` distribution)
    requires = ("numpy", "ml_dtypes")  # available() checks these without importing them
    unsupported_ops = {op: "my kernel implements instance_norm only" for op in OTHER_OPS}

    def unsupported(self, case):
        if case.params.get("track_running_stats"):
            return "my kernel keeps no running statistics (PyTorch's track_running_stats)"
        return super().unsupported(case)  # unsupported_ops, unsupported_dtypes

    def unsupported_outputs(self, case):
        # gradient cases still check y; grad_x, grad_weight, grad_bias are reported as unsupported
        return {name: "my kernel has no backward pass" for name in case.gradients}

    def run(self, case, inputs):
        import ml_dtypes  # what a framework import would be: inside run(), never at module level

        p = case.params
        # inputs["x"] is canonical [N, C, *spatial], float64 holding values of the case dtype, read-only.
        # to_layout gives a writable copy in the layout's memory order; host_dtype(bfloat16) is float32.
        x = to_layout(inputs["x"], case.layout, host_dtype(case.dtype))
        acc = np.float64 if case.dtype == "float64" else np.float32
        channel_axis = 1 if case.layout == "channels_first" else x.ndim - 1
        spatial = tuple(a for a in range(1, x.ndim) if a != channel_axis)
        per_channel = [-1 if a == channel_axis else 1 for a in range(x.ndim)]

        xs = x.astype(acc)
        mean = xs.mean(axis=spatial, keepdims=True)
        var = xs.var(axis=spatial, keepdims=True, ddof=1 if p["variance"] == "unbiased" else 0)
        y = (xs - mean) / np.sqrt(var + acc(p["eps"]))
        if "weight" in inputs:  # present only when the case has a weight (and likewise bias)
            y = y * np.asarray(inputs["weight"], acc).reshape(per_channel)
        if "bias" in inputs:
            y = y + np.asarray(inputs["bias"], acc).reshape(per_channel)

        # Round once to the case dtype. NumPy has no bfloat16: ml_dtypes does, and host_output hands
        # such an array back as float64 (exactly), other dtypes as they are.
        out_dtype = ml_dtypes.bfloat16 if case.dtype == "bfloat16" else np.dtype(case.dtype)
        return {"y": from_layout(host_output(y.astype(out_dtype)), case.layout)}

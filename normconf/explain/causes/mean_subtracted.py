"""``mean_subtracted``: a layer norm where an RMS norm was asked: the mean subtracted and the
variance taken where rms_norm divides x by sqrt(mean(x^2) + eps).

The porting bug of ``nn.LayerNorm(dim, elementwise_affine=...)`` (or ``F.layer_norm``) standing in
for an RMSNorm: both divide by a root mean square, but the layer norm's is of x - mean. y moves by
mean / rms per slice, which is small only where the slices' means are.
"""
from __future__ import annotations

import numpy as np

from .. import rms
from ..variant import Variant


def computed(ex) -> list[Variant]:
    if ex.case.op != "rms_norm":
        return []
    return [Variant("mean_subtracted", {"op": "layer_norm", "axes": list(ex.case.params["axes"])}, text,
                    fn=lambda case, inputs: rms.forward(case, inputs, subtract_mean=True))]


def text(ex, v: Variant) -> str:
    axes = tuple(ex.case.params["axes"])
    head = (f"y = (x - mean) / sqrt(var + eps) (a layer norm over dims {list(axes)}) instead of "
            f"x / sqrt(mean(x^2) + eps): the mean subtracted")
    x = ex.x
    if not x.size:
        return head
    with np.errstate(all="ignore"):
        ratio = np.abs(x.mean(axis=axes)) / np.sqrt(rms.mean_square(x, axes).reshape(np.shape(x.mean(axis=axes))))
    ratio = ratio[np.isfinite(ratio)]
    if not ratio.size:
        return head
    return f"{head}; |mean| / rms per slice up to {ratio.max():.3g} (median {np.median(ratio):.3g})"

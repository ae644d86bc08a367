"""``weight_offset``: rms_norm scaled by ``weight`` where ``1 + weight`` was asked (Gemma's unit
offset), or the reverse.

Gemma stores its RMSNorm scale as an offset from 1 (``output * (1 + self.weight.float())``, the
weight initialized to zeros); LLaMA, T5 and torch's ``nn.RMSNorm`` multiply by the weight itself
(initialized to ones). A Gemma checkpoint loaded into a LLaMA-style module, or the reverse, keeps
every weight and moves y by x / rms per element: y = yhat (offset + w) against yhat (other + w).
"""
from __future__ import annotations

import numpy as np

from ..variant import Variant, num

OFFSETS = (0.0, 1.0)  # LLaMA/T5/torch, Gemma


def discrete(ex) -> list[Variant]:
    case, p = ex.case, ex.case.params
    if case.op != "rms_norm" or "weight" not in ex.inputs:
        return []
    return [Variant("weight_offset", {"weight_offset": o, "asked": p["weight_offset"]}, text,
                    changes={"weight_offset": o})
            for o in OFFSETS if o != p["weight_offset"]]


def _scale(offset: float) -> str:
    return "weight" if offset == 0 else f"({num(offset)} + weight)"


def text(ex, v: Variant) -> str:
    used, asked = v.params["weight_offset"], v.params["asked"]
    w = np.asarray(ex.inputs["weight"], dtype=np.float64)
    who = {0.0: "LLaMA, T5 and torch's nn.RMSNorm", 1.0: "Gemma's unit offset"}
    named = f" ({who[used]})" if used in who else ""
    head = f"y = x / rms * {_scale(used)}{named} instead of x / rms * {_scale(asked)}"
    if not np.isfinite(w).any():
        return head
    lo, hi = float(np.nanmin(w)), float(np.nanmax(w))
    by = "" if abs(used - asked) == 1 else f"{abs(used - asked):g} "
    return (f"{head}: weight in [{lo:.4g}, {hi:.4g}], so the scale is {used + lo:.4g}..{used + hi:.4g} "
            f"where {asked + lo:.4g}..{asked + hi:.4g} was asked (y off by {by}x / rms)")

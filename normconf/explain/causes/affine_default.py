"""``affine_default``: a scale or shift the case did not ask for, or one it asked for and the output lacks."""
from __future__ import annotations

import numpy as np

from ... import oracle
from ..geometry import STAT_OPS
from ..variant import Variant


def discrete(ex) -> list[Variant]:
    """The case's weight, bias or both dropped."""
    present = [k for k in ("weight", "bias") if k in ex.inputs]
    drops = [("weight",), ("bias",), ("weight", "bias")] if len(present) == 2 else [tuple(present)] if present else []
    return [Variant("affine_default", {"ignored": list(drop)},
                    f"{' and '.join(drop)} of the case ignored (y as without {' and '.join(drop)})", drop=drop)
            for drop in drops]


def fallback(ex) -> Variant | None:
    """A per-channel scale and shift fitted by least squares: an affine the case did not ask for."""
    if "y" not in ex.bad or ex.case.op not in STAT_OPS + ("normalize",):
        return None
    e, a = np.asarray(ex.expected["y"], dtype=np.float64), ex.actual["y"]
    if not (np.isfinite(e).all() and np.isfinite(a).all()):
        return None
    if ex.case.op == "layer_norm":  # its affine is not per channel
        return None
    ax = (0,) + tuple(range(2, e.ndim))
    em, am = e.mean(axis=ax, keepdims=True), a.mean(axis=ax, keepdims=True)
    with np.errstate(all="ignore"):
        scale = ((e - em) * (a - am)).sum(axis=ax, keepdims=True) / ((e - em) ** 2).sum(axis=ax, keepdims=True)
    scale = np.where(np.isfinite(scale), scale, 1.0)
    shift = am - scale * em
    s, b = scale.reshape(-1), shift.reshape(-1)

    def fn(case, inputs):
        out = oracle.reference(case, inputs)
        return {**out, "y": out["y"] * scale + shift}

    return Variant("affine_default", {"scale": [float(v) for v in s], "shift": [float(v) for v in b]},
                   f"y = oracle x scale + shift per channel, scale in [{s.min():.4g}, {s.max():.4g}], shift in "
                   f"[{b.min():.4g}, {b.max():.4g}]: an affine the case did not ask for", fn=fn, tier=4)

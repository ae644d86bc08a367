"""``attribute_precision``: a parameter rounded to the precision of the attribute that holds it.

ONNX float attributes are 32-bit (``AttributeProto.f``), as are the epsilon and momentum of many
kernels' parameter structs: a float64 model's eps 1e-5 becomes 9.99999975e-06 and its momentum 0.9
(ONNX weights the old value) 0.89999998, so y moves by about eps's rounding over var (5e-13 at
var 1: 50 times float64's tolerance) and the running mean by (momentum's rounding) x |batch mean -
old mean| (2.4e-4 at mean 1e4). The variant is the oracle with eps and momentum rounded to float32;
only float64 cases are asked (in float32 and below the rounding is the case dtype's own).
"""
from __future__ import annotations

import numpy as np

from ..variant import Variant


def f32(v: float) -> float:
    return float(np.float32(v))


def discrete(ex) -> list[Variant]:
    case, p = ex.case, ex.case.params
    if case.dtype != "float64":
        return []
    changes, said = {}, []
    if "eps" in p and p["eps"] is not None and f32(p["eps"]) != p["eps"]:
        changes["eps"] = f32(p["eps"])
        said.append(f"eps {p['eps']:g} -> {changes['eps']:.9g}")
    out = []
    m = p.get("momentum")
    train = "running_variance" in p and p.get("training", True) and m is not None
    # the momentum as a framework stores it: ONNX's weight of the old value (1 - m), or m itself
    forms = [("old", 1.0 - f32(1.0 - m)), ("new", f32(m))] if train else []
    forms = [(w, v) for w, v in forms if v != m]
    for which, value in forms or [(None, None)]:
        ch, text = dict(changes), list(said)
        if which is not None:
            ch["momentum"] = value
            stored = f32(1.0 - m) if which == "old" else f32(m)
            text.append(f"momentum {1 - m if which == 'old' else m:g} (weight of the {which} value) -> {stored:.9g}")
        if not ch:
            continue
        out.append(Variant("attribute_precision", {"rounded_to": "float32", **ch},
                           f"parameters rounded to float32 attributes: {', '.join(text)}", changes=ch))
    return out

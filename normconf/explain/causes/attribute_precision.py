"""``attribute_precision``: a parameter rounded to the precision of the attribute that holds it.

ONNX float attributes are 32-bit (``AttributeProto.f``), as are the epsilon and momentum of many
kernels' parameter structs: a float64 model's eps 1e-5 becomes 9.99999975e-06 and its momentum 0.9
(ONNX weights the old value) 0.89999998, so y moves by about eps's rounding over var (5e-13 at
var 1: 50 times float64's tolerance) and the running mean by (momentum's rounding) x |batch mean -
old mean| (2.4e-4 at mean 1e4). The variant is the oracle with eps and momentum rounded to float32;
only float64 cases are asked (in float32 and below the rounding is the case dtype's own).

``momentum: null`` (a cumulative average) is a momentum per step, 1/k at the k-th, which a runtime
of fixed attributes gets as one node per step (ONNX: ``momentum = 1 - 1/k``, the weight of the old
value); 1 - 1/3 = 0.666666667 is 0.666666687 in float32. That variant runs the oracle's update one
step at a time with each step's rounded momentum (a computed variant: a case's momentum is one
number or null).
"""
from __future__ import annotations

import numpy as np

from ... import oracle
from ..geometry import op_axes
from ..variant import Variant


def f32(v: float) -> float:
    return float(np.float32(v))


def stored(m: float, which: str) -> float:
    """The momentum (PyTorch's, the weight of the new statistic) a float32 attribute makes of ``m``:
    held as the weight of the ``old`` value (ONNX: 1 - m) or of the ``new`` one (m itself)."""
    return 1.0 - f32(1.0 - m) if which == "old" else f32(m)


def discrete(ex) -> list[Variant]:
    case, p = ex.case, ex.case.params
    if case.dtype != "float64":
        return []
    changes, said = _eps(p)
    out = []
    m = p.get("momentum")
    train = "running_variance" in p and p.get("training", True) and m is not None
    # the momentum as a framework stores it: ONNX's weight of the old value (1 - m), or m itself
    forms: list[tuple[str | None, float | None]] = [(w, stored(m, w)) for w in ("old", "new")] if train else []
    forms = [(w, v) for w, v in forms if v != m]
    for which, value in forms or [(None, None)]:
        ch, text = dict(changes), list(said)
        if which is not None:
            ch["momentum"] = value
            held = f32(1.0 - m) if which == "old" else f32(m)
            text.append(f"momentum {1 - m if which == 'old' else m:g} (weight of the {which} value) -> {held:.9g}")
        if not ch:
            continue
        out.append(Variant("attribute_precision", {"rounded_to": "float32", **ch},
                           f"parameters rounded to float32 attributes: {', '.join(text)}", changes=ch))
    return out


def computed(ex) -> list[Variant]:
    """``momentum: null``: each step's momentum 1/k rounded to float32 (as the weight of the old
    value, ONNX's, and of the new one), with eps rounded too."""
    case, p = ex.case, ex.case.params
    if (case.dtype != "float64" or "running_variance" not in p or not p.get("training", True)
            or p.get("momentum", 0.0) is not None or "x_steps" not in ex.inputs):
        return []
    changes, said = _eps(p)
    steps = len(ex.inputs["x_steps"])
    out = []
    for which in ("old", "new"):
        moved = [k for k in range(1, steps + 1) if stored(1.0 / k, which) != 1.0 / k]
        if not moved:
            continue  # 1, 1/2, 1/4, ...: exact in float32 either way
        held = [(k, 1.0 - 1.0 / k if which == "old" else 1.0 / k) for k in moved]
        text = ", ".join(said + [f"momentum null: step {k}'s {v:.9g} (weight of the {which} value) -> {f32(v):.9g}"
                                 for k, v in held])
        out.append(Variant("attribute_precision",
                           {"rounded_to": "float32", **changes, "per_step": which,
                            "step_momentum": [stored(1.0 / k, which) for k in range(1, steps + 1)]},
                           f"parameters rounded to float32 attributes: {text}", changes=changes,
                           fn=_per_step(which)))
    return out


def _eps(p) -> tuple[dict, list[str]]:
    if "eps" in p and p["eps"] is not None and f32(p["eps"]) != p["eps"]:
        return {"eps": f32(p["eps"])}, [f"eps {p['eps']:g} -> {f32(p['eps']):.9g}"]
    return {}, []


def _per_step(which: str):
    """``fn(case, inputs)``: the oracle with the running statistics updated one step at a time, the
    k-th with the momentum 1/k as a float32 attribute holds it (:func:`stored`); y from them where
    the case normalizes with them (``eval_after``), else the oracle's."""
    def fn(case, inputs):
        x = np.asarray(inputs["x"], dtype=np.float64)
        axes = op_axes(case, x.ndim)
        stats = {"running_mean": inputs["running_mean"], "running_var": inputs["running_var"]}
        for k, xk in enumerate(inputs["x_steps"], start=1):
            one = case.with_params(momentum=stored(1.0 / k, which))
            stats = oracle.running_stats(one, {**stats, "x_steps": [xk]}, axes)
        if case.op == "batch_norm" and case.params["eval_after"]:
            out = oracle.reference(case.with_params(training=False, eval_after=False), {**inputs, **stats})
        else:
            out = oracle.reference(case, inputs)
        return {**out, **stats}
    return fn

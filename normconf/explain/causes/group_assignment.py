"""``group_assignment``: group norm with channel c in group c % G (interleaved) instead of c // (C/G).

What ``x.reshape(N, C // G, G, ...)`` does where ``x.reshape(N, G, C // G, ...)`` was meant. The
variant is the oracle on the channels reordered so that the interleaved groups are contiguous (the
weight, bias and upstream gradient reordered alike), and every output put back in channel order.
"""
from __future__ import annotations

import numpy as np

from ... import oracle
from ..variant import Variant


def computed(ex) -> list[Variant]:
    case, c = ex.case, ex.x.shape[1]
    g = case.params.get("groups")
    if case.op != "group_norm" or not 1 < g < c:  # one group, or one channel per group: the same groups
        return []
    per = c // g
    return [Variant("group_assignment", {"groups": g, "assignment": "interleaved"},
                    f"channel c in group c % {g} (group 0 = channels 0, {g}, {2 * g}, ...) instead of c // {per} "
                    f"(group 0 = channels 0..{per - 1})", fn=interleaved, extra={"reorders": True})]


def order(c: int, g: int) -> np.ndarray:
    """The channel at each position once the channels are sorted by interleaved group (c % g)."""
    per = c // g
    j = np.arange(c)
    return (j % per) * g + j // per


def interleaved(case, inputs):
    x = inputs["x"]
    forward = order(x.shape[1], case.params["groups"])
    back = np.argsort(forward)
    ins = dict(inputs)
    for k in ("x", "grad_output"):
        if k in ins:
            ins[k] = np.asarray(ins[k])[:, forward]
    for k in ("weight", "bias"):
        if k in ins:
            ins[k] = np.asarray(ins[k])[forward]
    out = dict(oracle.reference(case, ins))
    for k, v in out.items():
        out[k] = v[:, back] if k in ("y", "grad_x") else v[back] if k in ("grad_weight", "grad_bias") else v
    return out

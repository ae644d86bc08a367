"""``reduction_axes``: the statistics over other dims (other axes, a misread layout, other groups)."""
from __future__ import annotations

import numpy as np

from ... import oracle
from ..arith import with_variation
from ..geometry import affine, op_axes
from ..variant import Variant


def discrete(ex) -> list[Variant]:
    """Group norm with another number of groups."""
    case, p = ex.case, ex.case.params
    if case.op != "group_norm":
        return []
    c = ex.x.shape[1]
    out = []
    for g in [d for d in range(1, c + 1) if c % d == 0 and d != p["groups"]]:
        like = " (a layer norm)" if g == 1 else " (an instance norm)" if g == c else ""
        out.append(Variant("reduction_axes", {"groups": g}, f"groups = {g}{like} instead of {p['groups']}",
                           changes={"groups": g}))
    return out


def computed(ex) -> list[Variant]:
    """y's statistics over other dims (instance, layer, batch and rms norm), or the channel axis read
    as another dim (group norm, channel_stats, normalize)."""
    case, x = ex.case, ex.x
    r, op = x.ndim, case.op
    if op in ("instance_norm", "layer_norm", "batch_norm", "rms_norm") and not (
            op == "batch_norm" and not case.params["training"]):
        own = tuple(sorted(op_axes(case, r)))
        return [Variant("reduction_axes", {"axes": list(axes)},
                        f"statistics over dims {list(axes)} ({label}) instead of {list(own)}",
                        fn=with_variation(axes=axes))
                for axes, label in _axis_sets(case, r).items()
                if not (axes == own or not axes or (op == "batch_norm" and len(axes) == r))]
    out = []
    if op in ("group_norm", "channel_stats", "normalize") and r > 2:
        c = x.shape[1]
        for d in range(2, r):
            if x.shape[d] != c and op != "group_norm":
                continue
            if op == "group_norm" and x.shape[d] % case.params["groups"]:
                continue
            label = ("channels_last memory read as channels_first" if d == 2 else
                     "channels_first memory read as channels_last" if d == r - 1 else "layout misread")
            out.append(Variant("reduction_axes", {"channel_axis": d},
                               f"channel axis read as dim {d} ({label}) instead of 1", fn=swapped(d)))
    return out


def _axis_sets(case, r: int) -> dict:
    """Other sets of reduced dims -> what they are (the op's own among them; the caller skips it)."""
    op = case.op
    own = tuple(sorted(op_axes(case, r)))
    sets = {tuple(range(1, r)): "layer_norm axes, every dim but N", tuple(range(2, r)): "instance_norm axes",
            (0,) + tuple(range(2, r)): "batch_norm axes", (r - 1,): "the last dim only", (1,): "C only"}
    for d in range(2, r):  # the channel axis read as canonical dim d (a layout misread)
        label = f"channel axis read as dim {d}" + (
            " (channels_last memory read as channels_first)" if d == 2 else
            " (channels_first memory read as channels_last)" if d == r - 1 else "")
        keep = (0, d) if op == "instance_norm" else (d,) if op == "batch_norm" else None
        if keep is not None:
            sets.setdefault(tuple(a for a in range(r) if a not in keep), label)
    if op in ("layer_norm", "rms_norm") and r > 2:  # axes taken in the other layout's memory order
        perm = [0] + list(range(2, r)) + [1]
        inv = list(np.argsort(perm))
        for mapping, label in ((perm, "axes read in channels_last memory order"),
                               (inv, "axes read as channels_last memory positions")):
            sets.setdefault(tuple(sorted(int(mapping[a]) for a in own)), label)
    return sets


def swapped(d: int):
    """The op run with canonical dims 1 and ``d`` swapped (the channel axis read as dim d); the
    case's own affine applied on the real channels."""
    def fn(case, inputs):
        bare = case.with_params(**{k: None for k in ("weight", "bias") if k in case.params})
        swap = {k: (np.swapaxes(v, 1, d) if k in ("x", "grad_output") else [np.swapaxes(s, 1, d) for s in v]
                    if k == "x_steps" else v)
                for k, v in inputs.items() if k not in ("weight", "bias")}
        out = oracle.reference(bare.with_params(grad=False), swap)  # forward outputs, as the other variations
        if case.op == "channel_stats":
            return out
        return dict(out, y=affine(case, inputs, np.swapaxes(out["y"], 1, d)))
    return fn

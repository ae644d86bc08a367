"""``affine_default``: a scale or shift the case did not ask for, or one it asked for and the output lacks."""
from __future__ import annotations

import numpy as np

from ... import oracle
from ..geometry import STAT_OPS
from ..variant import Variant, tol


def discrete(ex) -> list[Variant]:
    """The case's weight, bias or both dropped."""
    present = [k for k in ("weight", "bias") if k in ex.inputs]
    drops = [("weight",), ("bias",), ("weight", "bias")] if len(present) == 2 else [tuple(present)] if present else []
    return [Variant("affine_default", {"ignored": list(drop)},
                    f"{' and '.join(drop)} of the case ignored (y as without {' and '.join(drop)})", drop=drop)
            for drop in drops]


def fallback(ex) -> Variant | None:
    """A per-channel scale and shift fitted by least squares, claimed only where it is a plausible
    default: the case's weight, bias or both dropped, to within y's tolerance on every channel.
    Any other per-channel affine (a factor std^2 from multiplying by std, a bias of the wrong sign,
    batch statistics where running ones were asked) is no default: the fit gives way, and the
    unexplained result says what it would have been (naming it would be a wrong answer)."""
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
    fitted = f"scale in [{s.min():.4g}, {s.max():.4g}], shift in [{b.min():.4g}, {b.max():.4g}]"
    t = tol(ex.tolerance, "y")
    with np.errstate(all="ignore"):
        allowed = (t["atol"] + t["rtol"] * np.abs(a)).min(axis=ax).reshape(-1)
        largest = np.abs(e).max(axis=ax).reshape(-1)
    for dropped, sp, bp in _defaults(ex.inputs, s.size):
        with np.errstate(all="ignore"):  # the fitted affine and the default's give the same y on every channel
            same = np.abs(s - sp) * largest + np.abs(b - bp) <= allowed
        if same.all():
            shape = (1, -1) + (1,) * (e.ndim - 2)

            def fn(case, inputs, sp=sp, bp=bp, shape=shape):
                out = oracle.reference(case, inputs)
                return {**out, "y": out["y"] * sp.reshape(shape) + bp.reshape(shape)}

            return Variant("affine_default", {"ignored": list(dropped), "scale": [float(v) for v in s],
                                              "shift": [float(v) for v in b]},
                           f"y = oracle x scale + shift per channel, {fitted}: the case's {' and '.join(dropped)} "
                           f"ignored", fn=fn, tier=4)
    ex.notes.append(f"a per-channel scale and shift would fit y ({fitted}) but match no default (the case's "
                    f"weight or bias dropped): not named")
    return None


def _defaults(inputs: dict, c: int) -> list:
    """``(dropped, scale, shift)`` per channel that turn the oracle's y into y without the case's
    weight, bias or both: yhat w + b as yhat + b is y / w + b (1 - 1/w), as yhat w is y - b, as
    yhat is (y - b) / w."""
    w = np.asarray(inputs["weight"], dtype=np.float64).reshape(-1) if "weight" in inputs else None
    b = np.asarray(inputs["bias"], dtype=np.float64).reshape(-1) if "bias" in inputs else None
    out: list[tuple[tuple[str, ...], np.ndarray | float, np.ndarray | float]] = []
    with np.errstate(all="ignore"):
        if w is not None:
            out.append((("weight",), 1.0 / w, (b if b is not None else 0.0) * (1.0 - 1.0 / w)))
        if b is not None:
            out.append((("bias",), np.ones(c), -b))
        if w is not None and b is not None:
            out.append((("weight", "bias"), 1.0 / w, -b / w))
    return [(d, np.broadcast_to(sp, (c,)), np.broadcast_to(bp, (c,))) for d, sp, bp in out]

"""``per_group_affine``: group norm's scale and bias applied per group instead of per channel.

GroupNormalization-18 (ONNX) takes one scale and one bias per group ([num_groups]); opset 21 made
them per channel ([C]), as PyTorch, Keras and the paper have them (onnx/onnx#5466). A model that
carries a per-channel affine through the opset-18 op keeps one value per group. The fallback fits a
scale and a shift per group to y (the oracle without the case's affine, times the scale, plus the
shift) and names them only where the case's weight or bias is not constant within its groups (else
they are the case's own affine) and the fit reproduces y within tolerance.
"""
from __future__ import annotations

import numpy as np

from ... import oracle
from ..variant import Variant, ratio, tol


def fallback(ex) -> Variant | None:
    case, inputs = ex.case, ex.inputs
    if case.op != "group_norm" or "y" not in ex.bad or not ({"weight", "bias"} & set(inputs)):
        return None
    g, c = case.params["groups"], ex.x.shape[1]
    per = c // g
    if per == 1:
        return None

    def varies(name):
        if name not in inputs:
            return False
        v = np.asarray(inputs[name], dtype=np.float64).reshape(g, per)
        return bool((v != v[:, :1]).any())
    if not (varies("weight") or varies("bias")):
        return None
    bare = {k: v for k, v in inputs.items() if k not in ("weight", "bias")}
    found = _fit(ex, case, bare, g, per, c)
    if ((found is None or not _reproduces(ex, found)) and case.dtype == "float64"
            and float(np.float32(case.params["eps"])) != case.params["eps"]):
        # a float64 model's eps is a float32 attribute too (attribute_precision): tried where the
        # fit with the case's eps does not reproduce y (its eps's rounding is 50x float64's tolerance)
        rounded = _fit(ex, case.with_params(eps=float(np.float32(case.params["eps"]))), bare, g, per, c)
        if rounded is not None:
            rounded.causes = ("per_group_affine", "attribute_precision")
            rounded.params["eps"] = float(np.float32(case.params["eps"]))
            rounded.text += f"; and eps {case.params['eps']:g} rounded to float32 ({rounded.params['eps']:.9g})"
            found = rounded if found is None or _reproduces(ex, rounded) else found
    return found


def _reproduces(ex, v: Variant) -> bool:
    """Whether the fitted y is within the case's tolerance of the output."""
    assert v.fn is not None  # a fitted variant always has its function
    with np.errstate(all="ignore"):
        y = v.fn(ex.case, ex.inputs)["y"]
    return ratio(y, ex.actual["y"], **tol(ex.tolerance, "y"))[1]


def _fit(ex, case, bare, g, per, c) -> Variant | None:
    """The per-group scale and shift fitted to y over the oracle of ``case`` without its affine,
    as a variant, or None where the oracle or y is not finite."""
    inputs = ex.inputs
    z = np.asarray(oracle.reference(case, bare)["y"], dtype=np.float64)
    a = ex.actual["y"]
    if not (np.isfinite(z).all() and np.isfinite(a).all()):
        return None
    n = z.shape[0]
    zg = z.reshape(n, g, per, -1).transpose(1, 0, 2, 3).reshape(g, -1)
    ag = a.reshape(n, g, per, -1).transpose(1, 0, 2, 3).reshape(g, -1)
    zm, am = zg.mean(axis=1, keepdims=True), ag.mean(axis=1, keepdims=True)
    with np.errstate(all="ignore"):
        scale = ((zg - zm) * (ag - am)).sum(axis=1, keepdims=True) / ((zg - zm) ** 2).sum(axis=1, keepdims=True)
    scale = np.where(np.isfinite(scale), scale, 1.0)
    shift = am - scale * zm
    s, b = scale.reshape(-1), shift.reshape(-1)
    shape = (1, c) + (1,) * (z.ndim - 2)
    y_hat = z * np.repeat(s, per).reshape(shape) + np.repeat(b, per).reshape(shape)
    first = {}
    for name, fitted in (("weight", s), ("bias", b)):
        if name in inputs:
            given = np.asarray(inputs[name], dtype=np.float64).reshape(g, per)
        else:
            given = np.full((g, per), float(name == "weight"))
        atol = 1e-3 * max(1.0, float(np.abs(given).max()))
        first[name] = bool(np.allclose(fitted, given[:, 0], rtol=1e-3, atol=atol))
    which = " and ".join(k for k, v in first.items() if v)
    origin = f": each group's first channel's {which}" if which else ""

    def fn(case_, inputs_):
        return {**oracle.reference(case_, inputs_), "y": y_hat}

    return Variant("per_group_affine", {"groups": g, "scale": [float(v) for v in s], "shift": [float(v) for v in b],
                                        "first_channel": which or None},
                   f"scale and bias per group ({g} values each, as GroupNormalization-18 takes them) instead of per "
                   f"channel: scale in [{s.min():.4g}, {s.max():.4g}], shift in [{b.min():.4g}, {b.max():.4g}]{origin}",
                   fn=fn, tier=4)

"""``compute_precision``: a float64 case computed in float32.

What ONNX's ``stash_type=1`` (the default of GroupNormalization-21 and LayerNormalization: "casts all
input variables to 32-bit float, performs the computation, and finally casts the normalized results
back") and OpenVINO's CPU plugin (no float64 kernels: a float64 model runs in float32) do. Such an
output is float32 arithmetic, so no float64 variant reproduces it within float64's tolerance: the
variants here are judged at float32's (the case's tolerance times u(float32) / u(float64), the same
formula in the other dtype), and they are tried only where the output shows float32's fingerprint:
before the case's affine, its values are float32 numbers (every bad output, 90% of the finite
elements at least). A float64 bug of another kind does not leave float32 values behind.

- two-pass statistics in float32 (the oracle on the input rounded to float32, eps too);
- E[x^2] - E[x]^2 in float32 (GroupNormalization-21's function body), named with
  ``one_pass_variance``;
- where the one-pass variance cancels catastrophically (mean 1e4: the float32 variance is noise of
  a few units), no summation order can be reproduced: the fallback accepts it from the per-slice
  statistics y implies, as stage 3 does, when every slice's variance is within the one-pass float32
  bound c u E[x^2] and some is beyond a two-pass float32 error.
"""
from __future__ import annotations

import numpy as np

from ... import oracle
from ...cases import rms_eps
from ...compare import UNIT
from ..arith import Arith, low_precision, one_pass, with_moments
from ..bounds import c_pairwise, implied_fit
from ..geometry import STAT_OPS, affine, unaffine
from ..rms import low_precision_square_mean, scaled
from ..variant import Variant, ratio, tol
from .weight_offset import OFFSETS

SCALE = UNIT["float32"] / UNIT["float64"]


def tolerance32(ex) -> dict:
    """The case's tolerance in float32's units (float64's formula has the same factors)."""
    out = {}
    for name, t in ex.tolerance.items():
        t = dict(t)
        t["atol"], t["rtol"] = float(t.get("atol", 0.0)) * SCALE, float(t.get("rtol", 0.0)) * SCALE
        out[name] = t
    return out


def _float32_share(v) -> float:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        r = v.astype(np.float32).astype(np.float64)
    return float((np.abs(r - v) <= 8 * UNIT["float64"] * np.abs(v)).mean())


def _scalings(ex) -> list:
    """The cases whose affine y may be divided by: the case itself and, for an rms_norm with a
    weight, the case with each other weight offset (a Gemma module, which multiplies by 1 + weight,
    run on a case that asks for the weight alone, or the reverse: weight_offset pairs with this
    cause, and the fingerprint is looked for before that pair is tried)."""
    case = ex.case
    out = [case]
    if case.op == "rms_norm" and "weight" in ex.inputs:
        out += [case.with_params(weight_offset=o) for o in OFFSETS if o != case.params["weight_offset"]]
    return out


def float32_valued(ex) -> bool:
    """Every failing output holds float32 numbers (y as it is, where the affine ran in float32 too,
    or before the case's affine, where the affine ran in float64)."""
    for name in ex.bad:
        v = ex.actual[name]
        if _float32_share(v) >= 0.9:
            continue
        if name == "y" and any(_float32_share(unaffine(c, ex.inputs, v)) >= 0.9 for c in _scalings(ex)):
            continue
        return False
    return True


def normalizer_float32(ex) -> bool:
    """rms_norm's y / (x (offset + weight)), the 1 / rms it was scaled by, holds float32 numbers
    (90% of the finite ones at least): only the statistic was computed in float32, and x and the
    weight multiply stayed float64 (Hugging Face's T5LayerNorm on a float64 input). Gradients, which
    follow y, may be off too; y must be."""
    if ex.case.op != "rms_norm" or "y" not in ex.bad or any(n != "y" and not n.startswith("grad_") for n in ex.bad):
        return False
    x = ex.x
    with np.errstate(all="ignore"):
        for c in _scalings(ex):
            k = unaffine(c, ex.inputs, ex.actual["y"]) / x
            if _float32_share(np.where(x != 0, k, np.nan)) >= 0.9:
                return True
    return False


def _rounded(case, inputs):
    """The case and inputs as float32 holds them."""
    ins = {k: (np.asarray(v, dtype=np.float32).astype(np.float64) if isinstance(v, np.ndarray) else v)
           for k, v in inputs.items()}
    if "x_steps" in inputs:
        ins["x_steps"] = [np.asarray(s, dtype=np.float32).astype(np.float64) for s in inputs["x_steps"]]
    p = case.params
    if p.get("eps") is not None:
        case = case.with_params(eps=float(np.float32(p["eps"])))
    return case, ins


def _in_float32(factory, *args):
    moments = with_moments(factory, *args)

    def fn(case, inputs):
        c, ins = _rounded(case, inputs)
        out = moments(c, ins)
        fn.moments = moments.moments
        return out
    fn.moments = None
    return fn


def _statistic32(case, inputs):
    """rms_norm with its statistic alone in float32, as T5LayerNorm computes a float64 input:
    ``variance = x.to(float32).pow(2).mean(-1)``, ``rsqrt(variance + eps)`` in float32, then the
    float64 x times that float32 1 / rms and the weight multiply in float64. Gradients are the
    float32 oracle's (judged, as y, at float32's tolerance)."""
    x = np.asarray(inputs["x"], dtype=np.float64)
    p, ar = case.params, Arith("float32")
    axes = tuple(p["axes"])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ms = low_precision_square_mean("float32", "pairwise")(x, axes)
        root = np.sqrt(np.asarray(ar(ar(ms) + ar(rms_eps(p, case.dtype))), dtype=np.float64))
        r = np.asarray(ar(1.0 / np.asarray(ar(root), dtype=np.float64)), dtype=np.float64)
        y = scaled(case, inputs, x * r)
    return {**oracle.reference(*_rounded(case, inputs)), "y": y}


def computed(ex) -> list[Variant]:
    case = ex.case
    if case.dtype != "float64" or case.op not in STAT_OPS + ("rms_norm",):
        return []
    t32 = tolerance32(ex)
    if normalizer_float32(ex):
        return [Variant("compute_precision", {"dtype": "float32", "statistic": "float32"},
                        "the statistic computed in float32 (mean(x.float()^2) and its rsqrt, as T5LayerNorm), "
                        "x / rms and the weight multiply in float64, judged at float32's tolerance",
                        fn=_statistic32, extra={"tolerance": t32})]
    if not float32_valued(ex):
        return []
    if case.op == "rms_norm" or (case.op == "batch_norm" and not case.params["training"]):
        # no statistics to vary (rms_norm's are not a mean and a variance; inference batch norm
        # takes the running ones): the oracle on what float32 holds
        def plain(case, inputs):
            return oracle.reference(*_rounded(case, inputs))
        return [Variant("compute_precision", {"dtype": "float32"},
                        "computed in float32: the float64 input and eps in float32, judged at float32's tolerance",
                        fn=plain, extra={"tolerance": t32})]
    two = Variant("compute_precision", {"dtype": "float32", "variance": "two-pass"},
                  "computed in float32: the float64 input, eps and statistics in float32 (two-pass), "
                  "judged at float32's tolerance", fn=_in_float32(low_precision, "float32", "pairwise"),
                  extra={"tolerance": t32})
    one = Variant("compute_precision", {"dtype": "float32", "variance": "one-pass"},
                  "computed in float32 with var = E[x^2] - E[x]^2 (ONNX's stash_type=1 function body), "
                  "judged at float32's tolerance", fn=_in_float32(one_pass, "float32", "pairwise", False),
                  causes=("compute_precision", "one_pass_variance"), extra={"tolerance": t32})
    # Where the two-pass float32 statistics reproduce the output, the one-pass ones would name a
    # second cause the data cannot show (at mean 0 both round alike): ranked by fit, rounding noise
    # would pick between them. The one-pass variant is offered where the two-pass one does not do.
    return [two] if _reproduces(ex, two) else [two, one]


def _reproduces(ex, v: Variant) -> bool:
    """Whether ``v`` alone reproduces every compared output at its own tolerance (not recorded as
    evaluated: the explainer evaluates the variants it is given)."""
    if v.fn is None:
        return False
    with np.errstate(all="ignore"):
        try:
            out = v.fn(ex.case, ex.inputs)
        except Exception:  # noqa: BLE001 - a variant that cannot be built reproduces nothing
            return False
    t = v.extra["tolerance"]
    return all(n in out and ratio(out[n], ex.actual[n], **tol(t, n))[1] for n in ex.names)


def fallback(ex) -> Variant | None:
    """The one-pass float32 variance accepted from the statistics y implies (see the module)."""
    case, p = ex.case, ex.case.params
    if (case.dtype != "float64" or case.op not in ("instance_norm", "layer_norm", "group_norm")
            or ex.bad != ["y"] or not float32_valued(ex)):
        return None
    x32 = np.asarray(ex.x, dtype=np.float32).astype(np.float64)
    (forward, ax, back, xs, mean, dev, var, var_b, z, finite, nan_slice, zz, zbar, k, model,
     var_impl) = implied_fit(case, ex.inputs, x32, ex.actual["y"], float(np.float32(p["eps"])))
    n = int(np.prod([xs.shape[a] for a in ax]))
    u, c = UNIT["float32"], c_pairwise(n)
    ex2 = mean * mean + var_b
    bound = c * u * ex2
    err = np.abs(var_impl - var)
    ok_finite = np.where(nan_slice, var <= bound, err <= bound)
    if not ok_finite.all() or not (np.where(nan_slice, True, err > c * u * var)).any():
        return None
    y_hat = affine(case, ex.inputs, back(model))
    worst = float(np.max(np.where(nan_slice, 0.0, err)))

    def fn(case_, inputs_):
        return {**oracle.reference(case_, inputs_), "y": y_hat}

    t32 = tolerance32(ex)
    # the fitted model carries y's float32 rounding: four units of it, as stage 3 allows
    t32["y"] = dict(t32["y"], atol=tol(t32, "y")["atol"] + 4 * u * float(np.nanmax(np.abs(np.where(finite, z, 0)))))
    return Variant("compute_precision", {"dtype": "float32", "variance": "one-pass", "implied": True,
                                         "max_var_error": worst, "E[x^2]": float(ex2.max()),
                                         "nan_slices": int(nan_slice.sum())},
                   f"computed in float32 with var = E[x^2] - E[x]^2, implied by y: variance off by up to "
                   f"{worst:.3g} within c u E[x^2] = {float(bound.max()):.3g} (E[x^2] up to {float(ex2.max()):.3g}, "
                   f"u = {u:.3g}); NaN in {int(nan_slice.sum())} slice(s)", fn=fn, tier=4,
                   causes=("compute_precision", "one_pass_variance"), extra={"tolerance": t32})

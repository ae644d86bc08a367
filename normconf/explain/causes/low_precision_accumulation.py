"""``low_precision_accumulation``: sums (or the mean) in the input dtype instead of a wider accumulator."""
from __future__ import annotations

import math

import numpy as np

from ... import oracle
from ...compare import UNIT
from ...inputs import round_to_dtype
from ..arith import MAXIMUM, low_precision, rounded_mean, stat_summary, with_moments
from ..bounds import c_pairwise, states
from ..geometry import STAT_OPS, geometry
from ..rms import in_dtype, low_precision_square_mean, mean_square
from ..variant import Variant


def computed(ex) -> list[Variant]:
    """Two-pass sums in the input dtype (the summations NumPy, loops and trees give), the variance's
    sum alone (``np.var`` of float16), and the mean rounded to a 16-bit dtype before x - mean;
    rms_norm: the squares and their mean in the input dtype (:func:`rms_variants`)."""
    case, dt = ex.case, ex.case.dtype
    out: list[Variant] = []
    if case.op == "rms_norm":
        return rms_variants(ex)
    if case.op not in STAT_OPS + ("channel_stats",) or (case.op == "batch_norm" and not case.params["training"]):
        return out
    if dt == "float64":
        return out
    hows = ("pairwise", "sequential", "tree") if dt != "bfloat16" else ("tree",)
    if dt == "float32":
        hows = ("sequential",)
    for how in hows:
        out.append(Variant("low_precision_accumulation", {"dtype": dt, "sum": how}, text,
                           fn=with_moments(low_precision, dt, how)))
    if dt in ("float16", "bfloat16"):
        out.append(Variant("low_precision_accumulation", {"dtype": dt, "mean": "rounded"}, text,
                           fn=with_moments(rounded_mean, dt)))
        out.append(Variant("low_precision_accumulation", {"dtype": dt, "sum": "pairwise", "only": "variance"},
                           text, fn=with_moments(low_precision, dt, "pairwise", True)))
    return out


def rms_variants(ex) -> list[Variant]:
    """rms_norm without the cast to float32 (LLaMA's ``x.float()``): every step in the input dtype,
    x^2 rounded to it and summed there (float16: pairwise, sequential, a tree; bfloat16: float32
    accumulators rounded once, as torch's reductions, or a tree), or float32 sums done sequentially."""
    dt = ex.case.dtype
    hows = {"float16": ("pairwise", "sequential", "tree"), "bfloat16": ("pairwise", "tree"),
            "float32": ("sequential",)}.get(dt, ())
    return [Variant("low_precision_accumulation", {"dtype": dt, "sum": how, "statistic": "mean(x^2)"}, rms_text,
                    fn=in_dtype(dt, how))
            for how in hows]


def rms_text(ex, v: Variant) -> str:
    """The squares' mean in the input dtype: how far off it is, where it overflows."""
    dt, how = v.params["dtype"], v.params["sum"]
    head = (f"computed in {dt} throughout, x^2 and its mean over the normalized dims too ({how} sums, "
            f"u = {UNIT[dt]:.3g}), instead of in float32")
    axes = tuple(ex.case.params["axes"])
    with np.errstate(all="ignore"):
        got = low_precision_square_mean(dt, how)(ex.x, axes)
        want = mean_square(ex.x, axes)
        rel = np.abs(got - want) / want
    finite = np.isfinite(rel) & np.isfinite(got)
    out = head
    if finite.any():
        out += f": mean(x^2) off by up to {rel[finite].max():.3g} relative"
    over = int((np.isinf(got) & np.isfinite(want)).sum())
    if over:
        big = float(np.abs(ex.x).max()) if ex.x.size else 0.0
        out += (f"; inf in {over} slice(s), where x^2 or the sum passes {dt}'s largest value {MAXIMUM[dt]:.5g} "
                f"(|x| up to {big:.4g}), so y = x / inf = 0 there")
    return out


def text(ex, v: Variant) -> str:
    dt = v.params["dtype"]
    if v.params.get("mean") == "rounded":
        forward, ax, _ = geometry(ex.case, ex.x)
        mean, _, var = oracle._moments(forward(ex.x), ax, 0)
        with np.errstate(all="ignore"):
            shift = np.abs(round_to_dtype(mean, dt) - mean) / np.sqrt(var + ex.case.params.get("eps", 0.0))
        return (f"x - mean with the mean rounded to {dt} (u = {UNIT[dt]:.3g}, |mean| up to {np.abs(mean).max():.3g}): "
                f"y off by up to |round(mean) - mean| / std = {np.nanmax(shift):.3g}")
    head = (f"{'the variance' if v.params.get('only') else 'sums'} accumulated in {dt} "
            f"({v.params['sum']}, u = {UNIT[dt]:.3g})")
    s = stat_summary(ex, v)
    if s is None:
        return head
    _, var, err, bad = s
    out = head
    if math.isfinite(err):
        out += f": variance off by up to {err:.3g} (true {var:.3g})"
    if bad:
        out += f"; NaN/inf variance in {bad} slice(s) (a sum passes {dt}'s largest value {MAXIMUM[dt]:.5g})"
    return out


def implied(recs: list, dt: str, u_acc: float) -> dict | None:
    """Stage 3 (input dtype float32/16, bfloat16): mean errors within a sequential sum's worst case
    (n + 2) u mean|x|, variance errors within (2n + 4) u var + 2 dm^2, some error beyond a float32
    accumulation's (c u_acc); NaN / y = 0 only where a sum passes the dtype's maximum."""
    if dt == "float64":
        return None
    u, big = UNIT[dt], MAXIMUM[dt]
    excess, worst = False, None
    for r in recs:
        n = r["n"]
        c = c_pairwise(n)
        mean_bound = (n + 2) * u * r["meanabs"]
        if r["state"] != "finite":
            if not r["sum_over"]:
                return None
            excess = True
            continue
        if r["kind"] == "mean":
            bound, floor = mean_bound, c * u_acc * r["absmean"]
        else:
            dm = r["dm"] if r["dm"] is not None else mean_bound
            if r["dm"] is not None:
                if r["dm"] > mean_bound:
                    return None
                if r["dm"] > c * u_acc * (r["absmean"] + math.sqrt(max(r["var"], 0.0))):
                    excess = True
            bound = (2 * n + 4) * u * r["var"] + 2 * dm ** 2
            floor = c * u_acc * r["var"] + 2 * (r["dm"] or 0.0) ** 2
        if r["err"] > bound:
            return None
        if r["err"] > floor:
            excess = True
        if bound > 0 and (worst is None or r["err"] / bound > worst["err"] / worst["bound"]):
            worst = dict(r, bound=bound)
    if not excess:
        return None
    params = {"dtype": dt, "u": u, "implied": True}
    detail = f"sums accumulated in {dt} (u = {u:.3g}), implied by the outputs"
    if worst is not None:
        what = "mean" if worst["kind"] == "mean" else "variance"
        detail += (f": {what} off by up to {worst['err']:.3g}, within a sequential {dt} sum's bound "
                 f"{worst['bound']:.3g} and beyond a float32 accumulation's")
        params.update({"max_error": worst["err"], "bound": worst["bound"]})
    found = states(recs)
    if found:
        detail += f"; {found}: sums pass {dt}'s largest value {big:.5g}"
    return {"params": params, "text": detail}

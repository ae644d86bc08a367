"""``one_pass_variance``: the variance as E[x^2] - E[x]^2 in the input dtype (or float32)."""
from __future__ import annotations

import math

from ...compare import UNIT
from ..arith import MAXIMUM, one_pass, stat_summary, with_moments
from ..bounds import c_pairwise, states
from ..geometry import STAT_OPS
from ..variant import Variant


def computed(ex) -> list[Variant]:
    """Every computing dtype (the input's, and float32 for 16-bit inputs), summation and clipping."""
    case, dt = ex.case, ex.case.dtype
    out: list[Variant] = []
    if case.op not in STAT_OPS + ("channel_stats",) or (case.op == "batch_norm" and not case.params["training"]):
        return out
    for cd in [dt] + (["float32"] if dt in ("float16", "bfloat16") else []):
        for how in ("pairwise", "sequential"):
            for clip in (False, True):
                if clip and case.op == "channel_stats":
                    continue
                out.append(Variant("one_pass_variance", {"dtype": cd, "sum": how, "clip": clip}, text,
                                   fn=with_moments(one_pass, cd, how, clip)))
    return out


def text(ex, v: Variant) -> str:
    cd = v.params["dtype"]
    head = f"var = E[x^2] - E[x]^2 in {cd} ({v.params['sum']} sums{', clipped at 0' if v.params['clip'] else ''})"
    s = stat_summary(ex, v)
    if s is None:
        return head
    ex2, var, err, bad = s
    out = f"{head}: E[x^2] up to {ex2:.3g}, u = {UNIT[cd]:.3g}"
    if math.isfinite(err):
        out += f", variance off by up to {err:.3g} (true {var:.3g})"
    if bad:
        out += f", NaN/inf variance in {bad} slice(s) (x^2 or E[x^2] overflows {cd}, or the difference goes negative)"
    return out


def implied(recs: list, dt: str, u_acc: float) -> dict | None:
    """Stage 3: no mean output is off (the formula only touches the variance) and no slice of y is
    shifted beyond a sum's rounding of its mean (n + 2) u mean|x| plus the output's; every slice's
    variance error is within c u E[x^2]; some slice's error is beyond what a two-pass computation
    with the observed mean shift can give, c u_acc var + 2 dm^2; NaN only where the difference can
    go negative (var <= c u E[x^2]) or inf - inf (x^2 and E[x]^2 overflow); y = 0 (an infinite
    variance) only where x^2 overflows and E[x]^2 does not. Tried in the input dtype, then in
    float32 for 16-bit inputs."""
    if any(r["kind"] == "mean" for r in recs):
        return None
    for cd in [dt] + (["float32"] if dt in ("float16", "bfloat16") else []):
        found = _check(recs, cd, u_acc)
        if found is not None:
            return found
    return None


def _check(recs, cd: str, u_acc: float) -> dict | None:
    u, big = UNIT[cd], MAXIMUM[cd]
    excess, worst = False, None
    for r in recs:
        c = c_pairwise(r["n"])
        bound = c * u * r["ex2"]
        if r["state"] == "nan":
            if not (r["var"] <= bound or (r["maxsq"] > big and r["meansq"] > big)):
                return None
            excess = True
        elif r["state"] == "inf_var":
            if not (r["maxsq"] > big >= r["meansq"]):
                return None
            excess = True
        else:
            if r["err"] > bound:
                return None
            # E[x^2] - E[x]^2 leaves the mean as a sum computes it: a slice of y shifted beyond a
            # sum's rounding (and the output's own) is another bug, a bias subtracted say
            if r["dm"] is not None and r["dm"] > (r["n"] + 2) * u * r["meanabs"] + (r.get("dm_noise") or 0.0):
                return None
            dm2 = r["dm"] ** 2 if r["dm"] is not None else (c * u_acc * r["absmean"]) ** 2
            if r["err"] > c * u_acc * r["var"] + 2 * dm2:
                excess = True
            if worst is None or r["err"] / bound > worst["err"] / worst["bound"]:
                worst = dict(r, bound=bound, c=c)
    if not excess:
        return None
    params = {"dtype": cd, "u": u, "implied": True}
    detail = f"var = E[x^2] - E[x]^2 in {cd} (u = {u:.3g}), implied by the outputs"
    if worst is not None:
        detail += (f": variance off by up to {worst['err']:.3g} "
                   f"(true {worst['var']:.3g}, E[x^2] = {worst['ex2']:.3g}), "
                 f"within {worst['c']:.0f} u E[x^2] = {worst['bound']:.3g} and beyond a two-pass error")
        params.update({"max_var_error": worst["err"], "var": worst["var"], "E[x^2]": worst["ex2"],
                       "bound": worst["bound"]})
    found = states(recs)
    if found:
        detail += (f"; {found}: E[x^2] up to {max(r['ex2'] for r in recs):.3g}, "
                   f"x^2 up to {max(r['maxsq'] for r in recs):.3g} "
                   f"(largest {cd} {big:.5g}), so the difference goes negative or overflows")
        params.update(nan_slices=sum(r["state"] == "nan" for r in recs),
                      inf_slices=sum(r["state"] == "inf_var" for r in recs))
    return {"params": params, "text": detail}

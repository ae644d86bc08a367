"""``eps_value``: another eps. Fitted from the output, or the case's eps when it is 0 in the input dtype.

rms_norm's eps is fitted the same way (y ~ k x per slice, k = 1/sqrt(mean(x^2) + eps)), and a
framework default is another eps, not a cause of its own: torch's ``eps=None`` is the machine
epsilon of the dtype it computes in (``torch.finfo(dtype).eps``: 1.19e-7 in float32, 9.77e-4 in
float16, 7.81e-3 in bfloat16), which joins the common values for rms_norm and is named in the text,
as is Keras', Flax's, LLaMA's and Gemma's 1e-6; a case's ``eps: null`` is read as that epsilon."""
from __future__ import annotations

import math

import numpy as np

from ... import oracle
from ...cases import MACHINE_EPS, Case, rms_eps
from ...inputs import round_to_dtype
from ..geometry import STAT_OPS, geometry, op_axes, unaffine
from ..rms import mean_square
from ..variant import Variant, distinct, pair

# eps values found in the wild (torch 1e-5, Keras/TF 1e-3, Flax 1e-6, ...): a fitted eps is reported
# as one of these when that one reproduces the output too.
NICE_EPS = (0.0, 1e-12, 1e-10, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
# rms_norm's defaults, named in the text: torch's eps=None is finfo(dtype).eps of the input dtype
# (F.rms_norm) or of float32 (a module computing in x.float()); 1e-6 is the others' default.
RMS_DEFAULTS = {1e-6: "Keras', Flax's, LLaMA's and Gemma's default"}


def discrete(ex) -> list[Variant]:
    case, p = ex.case, ex.case.params
    if case.op in STAT_OPS and p.get("eps", 0) > 0 and float(round_to_dtype(p["eps"], case.dtype)) == 0:
        # eps below the dtype's smallest subnormal (1e-12, 1e-8 in float16) is 0 when added in the
        # input dtype: a zero-variance slice gives 0/0 = NaN. Named first on a tie: an n-1 divisor
        # over one value makes the same NaN, but only the case's own arithmetic is needed for this.
        return [Variant("eps_value", {"eps": 0.0, "given": p["eps"], "dtype": case.dtype}, underflow_text,
                        changes={"eps": 0.0}, extra={"underflow": True})]
    return []


def fitted(ex, case: Case, inputs: dict, base: Variant | None) -> list[Variant]:
    """eps fitted from the output: per slice, y ~ k (x - mean) with k = 1/sqrt(var + eps), so
    eps_s = 1/k^2 - var; the median over slices (and over the best-conditioned quarter, the
    slices of smallest variance) plus the nearby common values are tried. With ``base``, each
    paired with that change (``case`` and ``inputs`` are the base's)."""
    if case.op not in STAT_OPS + ("rms_norm",) or "y" not in ex.actual:
        return []
    eps_s, var_s, slices = _per_slice(ex, case, inputs)
    p = case.params
    common = _common(case)
    ok = np.isfinite(eps_s) & (slices > 0)
    if ok.any():
        eps_s, var_s = eps_s[ok], var_s[ok]
        guesses = {float(np.median(eps_s))}
        calm = var_s <= np.quantile(var_s, 0.25)
        guesses.add(float(np.median(eps_s[calm])))
    else:  # nothing to fit (NaN, zeros): eps = 0 is the one value that makes 0/0
        eps_s, guesses = np.array([np.nan]), {0.0}
    tried = set()
    for g in guesses:
        g = max(g, 0.0)
        tried.add(g)
        near = [e for e in common if (g == 0 and e <= 1e-8) or (g > 0 and e > 0 and abs(math.log10(e / g)) < 0.35)
                or (e == 0 and g < 1e-8)]
        tried.update(near)
    own = rms_eps(p, case.dtype) if case.op == "rms_norm" else p["eps"]
    tried.discard(own)
    out, slices_fitted = [], int(ok.sum())
    for e in sorted(tried):
        fit = float(np.median(eps_s))

        def text(ex, v, e=e, fit=fit, own=own, n=slices_fitted, case=case):
            found, asked = distinct(e, own)
            if case.op == "rms_norm":
                found += _named(e, case.dtype)
                asked = (f"null (finfo({case.dtype}).eps = {asked})" if case.params["eps"] is None
                         else asked + _named(own, case.dtype))
            return f"eps {found} instead of {asked} (fitted {fit:.4g} from {n} slices)"

        v = Variant("eps_value", {"eps": e, "fitted": fit}, text, changes={"eps": e}, tier=1)
        v.extra["odd_eps"] = e not in common
        if base is not None:
            paired = pair(base, v)
            if paired is None:
                continue
            v = paired
        out.append(v)
    return out


def _common(case: Case) -> tuple[float, ...]:
    """The common eps values a fit is rounded to: NICE_EPS, and for rms_norm the machine epsilons
    torch's eps=None gives (of the input dtype, and of float32 where the input is cast to it)."""
    if case.op != "rms_norm":
        return NICE_EPS
    return NICE_EPS + tuple(dict.fromkeys(MACHINE_EPS[d] for d in (case.dtype, "float32")))


def _named(e: float, dtype: str) -> str:
    """What an rms_norm eps is, where it is a default: `` (finfo(float16).eps: torch's eps=None)``."""
    for d in dict.fromkeys((dtype, "float32")):
        if e == MACHINE_EPS[d]:
            return f" (finfo({d}).eps: torch's eps=None{'' if d == dtype else ' on x.float()'})"
    return f" ({RMS_DEFAULTS[e]})" if e in RMS_DEFAULTS else ""


def _per_slice(ex, case: Case, inputs: dict):
    """(eps, variance, slope k) per slice, flat: the eps each slice's fit y ~ k (x - mean) implies
    (rms_norm: y ~ k x, and the mean of the squares in place of the variance)."""
    z = unaffine(case, inputs, ex.actual["y"])
    p, x = case.params, ex.x
    if case.op == "rms_norm":
        ax = tuple(p["axes"])
        dev, var = x, mean_square(x, ax)
    elif case.op == "batch_norm" and (not p["training"] or p["eval_after"]):
        # y normalized with running statistics: the given ones, or (eval_after) those after training
        stats = oracle.running_stats(case, inputs, op_axes(case, x.ndim)) if p["training"] else inputs
        def chan(v):
            return np.asarray(v, dtype=np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))

        dev = x - chan(stats["running_mean"])
        var = chan(stats["running_var"])
        ax = op_axes(case, x.ndim)
    else:
        forward, ax, _ = geometry(case, x)
        _, dev, var = oracle._moments(forward(x), ax, oracle.DDOF[p["variance"]])
        z = forward(z)
    with np.errstate(all="ignore"):
        good = np.isfinite(z)
        zz = np.where(good, z, 0.0)
        dd = np.where(good, dev, 0.0)
        k = (dd * zz).sum(axis=ax, keepdims=True) / (dd * dd).sum(axis=ax, keepdims=True)
        eps_s = (1.0 / (k * k) - var).reshape(-1)
        var_s = np.broadcast_to(var, k.shape).reshape(-1)
    return eps_s, var_s, k.reshape(-1)


def underflow_text(ex, v: Variant) -> str:
    """eps that rounds to 0 in the input dtype: how many slices have a variance of 0 there."""
    case, dt, eps = v.extra.get("case", ex.case), v.params["dtype"], v.params["given"]
    if case.op == "batch_norm" and not case.params["training"]:  # y normalized with the running statistics
        var = np.asarray(ex.inputs["running_var"], dtype=np.float64)
    elif case.op == "batch_norm" and case.params.get("eval_after"):  # ... with those just updated
        var = np.asarray(ex.expected["running_var"], dtype=np.float64)
    else:
        forward, ax, _ = geometry(case, ex.x)
        var = oracle._moments(forward(ex.x), ax, oracle.DDOF[case.params["variance"]])[2]
    zero = int((round_to_dtype(var, dt) == 0).sum())
    tiny = (2.0 ** -24 if dt == "float16" else 2.0 ** -133 if dt == "bfloat16"
            else float(np.finfo(dt).smallest_subnormal))
    head = (f"eps {eps:g} is 0 in {dt} (under half its smallest subnormal, {tiny:.3g}): added to the variance in "
            f"{dt}, eps does not take effect (eps 0)")
    if zero:
        return (f"{head}; var + eps = 0 in {zero} of {var.size} slice(s) of zero variance, "
                "where y = 0/0 = NaN instead of 0")
    return f"{head}; y = (x - mean) / sqrt(var)"

"""When nothing reproduces an output: figures that let a person judge the deviation."""
from __future__ import annotations

import numpy as np

from .. import oracle
from .geometry import STAT_OPS, geometry


def stats(ex) -> dict:
    """Per output: NaN/inf counts, the median ratio actual / oracle and its 10-90% spread, the mean
    offset, the largest difference and the error's correlation with |mean| / std (those that apply)."""
    out = {}
    for n in ex.names:
        e = np.asarray(ex.expected[n], dtype=np.float64)
        a = ex.actual[n]
        both = np.isfinite(e) & np.isfinite(a)
        big = both & (np.abs(e) > 1e-3 * (np.abs(e[both]).max() if both.any() else 0))
        with np.errstate(all="ignore"):
            ratio = a[big] / e[big]
        # counts (int) and figures (float) side by side
        entry: dict[str, float] = {"nan_actual": int(np.isnan(a).sum()), "nan_expected": int(np.isnan(e).sum()),
                                   "inf_actual": int(np.isinf(a).sum())}
        if ratio.size:
            q10, q50, q90 = np.quantile(ratio, [0.1, 0.5, 0.9])
            entry.update(ratio_median=float(q50), ratio_spread=float(q90 - q10))
        if both.any():
            entry["mean_offset"] = float((a[both] - e[both]).mean())
            entry["max_abs"] = float(np.abs(a[both] - e[both]).max())
        corr = slice_correlation(ex, n, e, a)
        if corr is not None:
            entry["corr_error_kappa"] = corr
        out[n] = entry
    return out


def slice_correlation(ex, name, e, a):
    """Pearson correlation, over the normalized slices, of the slice's largest error with its
    |mean| / std (how much a rounding of the mean is amplified)."""
    case, x = ex.case, ex.x
    try:
        if name == "y" and case.op in STAT_OPS and not (case.op == "batch_norm" and not case.params["training"]):
            forward, ax, _ = geometry(case, x)
            mean, _, var = oracle._moments(forward(x), ax, 0)
            with np.errstate(all="ignore"):
                err = np.abs(forward(a) - forward(e)).max(axis=ax).reshape(-1)
        elif e.ndim == 1 and e.shape[0] == x.shape[1]:
            mean, _, var = oracle._moments(x, (0,) + tuple(range(2, x.ndim)), 0)
            err = np.abs(a - e)
        else:
            return None
        with np.errstate(all="ignore"):
            kappa = (np.abs(mean) / np.sqrt(var)).reshape(-1)
        ok = np.isfinite(kappa) & np.isfinite(err)
        if ok.sum() < 3 or np.std(kappa[ok]) == 0 or np.std(err[ok]) == 0:
            return None
        return float(np.corrcoef(err[ok], kappa[ok])[0, 1])
    except Exception:
        return None


def unexplained_text(ex, found: dict) -> str:
    """The detail of an ``unexplained`` result from :func:`stats`' figures of the failing outputs."""
    parts = []
    for n in ex.bad:
        s = found[n]
        bits = []
        if "ratio_median" in s:
            bits.append(f"actual/oracle median {s['ratio_median']:.5g} (10-90% spread {s['ratio_spread']:.3g})")
        if "mean_offset" in s:
            bits.append(f"mean offset {s['mean_offset']:.3g}")
        if "corr_error_kappa" in s:
            bits.append(f"error vs |mean|/std correlation {s['corr_error_kappa']:.2f}")
        if s["nan_actual"] != s["nan_expected"]:
            bits.append(f"NaN {s['nan_actual']} vs {s['nan_expected']} expected")
        parts.append(f"{n}: " + ", ".join(bits))
    return "no single change of convention reproduces it; " + "; ".join(parts + ex.notes)

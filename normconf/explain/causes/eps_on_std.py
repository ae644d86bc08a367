"""``eps_on_std``: y = (x - mean) / (std + eps) instead of (x - mean) / sqrt(var + eps); for
rms_norm, y = x / (sqrt(mean(x^2)) + eps) instead of x / sqrt(mean(x^2) + eps) (eps outside the
square root, as ``x / (x.norm(dim=-1, keepdim=True) * d ** -0.5 + eps)`` writes it)."""
from __future__ import annotations

from ...cases import rms_eps
from ..arith import with_variation
from ..geometry import STAT_OPS
from ..variant import Variant


def computed(ex) -> list[Variant]:
    case = ex.case
    if case.op == "rms_norm":
        eps = rms_eps(case.params, case.dtype)
        return [Variant("eps_on_std", {"eps": eps},
                        f"y = x / (rms + eps): eps = {eps:g} added to the root mean square sqrt(mean(x^2)) instead "
                        f"of inside the square root", fn=with_variation(eps_on_std=True))]
    if case.op not in STAT_OPS:
        return []
    return [Variant("eps_on_std", {"eps": case.params["eps"]},
                    f"y = (x - mean) / (std + eps): eps = {case.params['eps']:g} added to the standard "
                    f"deviation instead of the variance", fn=with_variation(eps_on_std=True))]

"""``eps_on_std``: y = (x - mean) / (std + eps) instead of (x - mean) / sqrt(var + eps)."""
from __future__ import annotations

from ..arith import with_variation
from ..geometry import STAT_OPS
from ..variant import Variant


def computed(ex) -> list[Variant]:
    case = ex.case
    if case.op not in STAT_OPS:
        return []
    return [Variant("eps_on_std", {"eps": case.params["eps"]},
                    f"y = (x - mean) / (std + eps): eps = {case.params['eps']:g} added to the standard "
                    f"deviation instead of the variance", fn=with_variation(eps_on_std=True))]

"""``momentum_convention``: the running statistics blended with momentum on the old value."""
from __future__ import annotations

from ..variant import Variant, distinct


def discrete(ex) -> list[Variant]:
    p = ex.case.params
    if "running_variance" not in p or not p.get("training", True):
        return []
    m = p["momentum"]
    if m is None or m == 0.5:  # a cumulative average has no momentum; at 0.5 the conventions agree
        return []
    old, new = distinct(m, 1 - m)
    return [Variant("momentum_convention", {"momentum": 1 - m},
                    f"running = {old} x old + {new} x new: momentum {old} applied to the old "
                    f"value (Keras/Flax convention) instead of the new", changes={"momentum": 1 - m})]

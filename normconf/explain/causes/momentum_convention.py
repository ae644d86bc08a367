"""``momentum_convention``: the running statistics blended with momentum on the old value."""
from __future__ import annotations

from ..variant import Variant


def discrete(ex) -> list[Variant]:
    p = ex.case.params
    if "running_variance" not in p or not p.get("training", True):
        return []
    m = p["momentum"]
    if m is None or m == 0.5:  # a cumulative average has no momentum; at 0.5 the conventions agree
        return []
    return [Variant("momentum_convention", {"momentum": 1 - m},
                    f"running = {m:g} x old + {1 - m:g} x new: momentum {m:g} applied to the old "
                    f"value (Keras/Flax convention) instead of the new", changes={"momentum": 1 - m})]

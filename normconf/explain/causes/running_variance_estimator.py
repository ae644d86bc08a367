"""``running_variance_estimator``: the running variance updated with the other divisor."""
from __future__ import annotations

from ..geometry import count
from ..variant import Variant

OTHER = {"biased": "unbiased", "unbiased": "biased"}


def discrete(ex) -> list[Variant]:
    p = ex.case.params
    if "running_variance" not in p or not p.get("training", True):
        return []
    other = OTHER[p["running_variance"]]
    n = count(ex.case, ex.x)
    return [Variant("running_variance_estimator", {"running_variance": other, "n": n}, text(p["running_variance"], n),
                    changes={"running_variance": other})]


def text(own: str, n: int) -> str:
    other = OTHER[own]
    if n == 0 and other == "biased":  # an empty batch: the biased variance is 0/0, no factor (n - 1) / n
        return f"running_var from the biased batch variance (divisor 0, n = 0): 0/0 instead of the {own} one"
    factor = n / max(n - 1, 1) if other == "unbiased" else (n - 1) / n
    return (f"running_var from the {other} batch variance (divisor {n - 1 if other == 'unbiased' else n}"
            f", n = {n}): x {factor:.5g} instead of the {own} one")

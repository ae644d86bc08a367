"""``cast_order``: rms_norm's normalized x rounded to the input dtype before the weight multiply,
where one rounding at the end was asked (Gemma), or the reverse (LLaMA).

LLaMA writes ``self._norm(x.float()).type_as(x) * self.weight``: x / rms is rounded to the half
dtype and multiplied by the weight there, two more roundings than Gemma's ``(self._norm(x.float())
* (1 + self.weight.float())).type_as(x)``, which rounds once (huggingface/transformers#29402 is the
change that made the two differ on purpose). The difference is a few units u of a float16 or
bfloat16 y (about 2 u, 3 u where 1 + weight is rounded too), within the default tolerance of 4 u:
it shows only against a tolerance between one rounding and two, which the cases of this cause
(``cases/rms_norm.yaml``, ``cast_order_*``) ask for.
"""
from __future__ import annotations

import numpy as np

from ...compare import UNIT
from ..variant import Variant

OTHER = {"last": "before_weight", "before_weight": "last"}
HALF = ("float16", "bfloat16")


def discrete(ex) -> list[Variant]:
    case, p = ex.case, ex.case.params
    if case.op != "rms_norm" or case.dtype not in HALF or "weight" not in ex.inputs:
        return []  # without a weight both orders round x / rms once
    other = OTHER[p["cast"]]
    return [Variant("cast_order", {"cast": other, "asked": p["cast"], "dtype": case.dtype}, text,
                    changes={"cast": other})]


def text(ex, v: Variant) -> str:
    dt, used = v.params["dtype"], v.params["cast"]
    if used == "before_weight":
        head = (f"x / rms rounded to {dt}, then multiplied by the weight in {dt} (LLaMA's "
                f"_norm(x.float()).type_as(x) * weight) instead of multiplying in float32 and rounding once")
    else:
        head = (f"x / rms multiplied by the weight in float32 and rounded to {dt} once (Gemma's "
                f"(_norm(x.float()) * w.float()).type_as(x)) instead of rounding x / rms to {dt} before the multiply")
    got = (v.outputs or {}).get("y")
    if got is None:
        return head
    e = np.asarray(ex.expected["y"], dtype=np.float64)
    with np.errstate(all="ignore"):
        rel = np.abs(np.asarray(got, dtype=np.float64) - e) / np.abs(e)
    rel = rel[np.isfinite(rel)]
    if not rel.size:
        return head
    return f"{head}: the two orders differ by up to {rel.max() / UNIT[dt]:.3g} u of {dt} (u = {UNIT[dt]:.3g}), relative"

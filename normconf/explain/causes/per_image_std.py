"""``per_image_std``: channel_stats' std as the mean of per-image stds instead of the pooled one, or the reverse."""
from __future__ import annotations

from ..variant import Variant


def discrete(ex) -> list[Variant]:
    case, p = ex.case, ex.case.params
    if case.op != "channel_stats":
        return []
    other = "pooled" if p["method"] == "per_image_mean" else "per_image_mean"
    text = ("std = mean over the images of each image's std (per_image_mean) instead of the pooled std"
            if other == "per_image_mean" else "std pooled over all images instead of the mean of per-image stds")
    return [Variant("per_image_std", {"method": other}, text, changes={"method": other})]

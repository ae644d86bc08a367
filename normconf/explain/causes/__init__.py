"""The cause ids: one table, one module per cause.

:data:`REGISTRY` is the one list of causes an explanation can name and a known discrepancy can
declare (``normconf.known`` validates ``cause:`` against it, the schemas and docs/causes.md follow
it). Each row says what the cause is (``doc``, the line editors and the schema show), which outputs
its change can move (``outputs``; gradients follow the forward output they come from; the
running statistics' causes move y too where an ``eval_after`` batch norm normalizes with them) and where
its variants come in the explainer's search (``search``: lower first, and among variants that
reproduce an output equally well the earlier wins). The variants live in the module of the same
name, ``normconf/explain/causes/<id>.py``, which defines any of these hooks:

- ``discrete(ex) -> [Variant]``: stage 0, the oracle with case parameters changed or inputs
  dropped; they also pair with each other and with the other hooks' variants (stage 2);
- ``computed(ex) -> [Variant]``: stage 0, the oracle under a :class:`normconf.oracle.Variation`
  (another way of computing the statistics, eps placement, axes) or with transformed inputs;
- ``fitted(ex, case, inputs, base) -> [Variant]``: a value fitted from the output (stage 0 when it
  is a common value, else 1), and after each discrete change ``base`` (stage 2);
- ``implied(records, dtype, u_acc) -> {"params", "text"} | None``: stage 3, accepting the
  per-slice statistics the output implies (:mod:`normconf.explain.bounds`) within a bound;
- ``fallback(ex) -> Variant | None``: stage 4, when nothing else reproduces the output.

``ex`` is the explainer (:class:`normconf.explain.core.Explainer`: ``case``, ``inputs``, ``x``,
``expected``, ``actual``, ``tolerance``, ``names``, ``bad``). Adding a cause is a row here and its
module; nothing else changes. This module imports nothing heavy: ``import normconf.known`` reads
the table without NumPy, and a cause's module is imported when the explainer first asks for it.
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

HOOKS = ("discrete", "computed", "fitted", "implied", "fallback")


@dataclass(frozen=True)
class Cause:
    id: str
    doc: str
    outputs: tuple[str, ...]
    search: int

    def module(self) -> ModuleType:
        return importlib.import_module(f"{__name__}.{self.id}")

    def hook(self, name: str):
        """The module's hook ``name`` (one of :data:`HOOKS`), or None where it has none."""
        if name not in HOOKS:
            raise ValueError(f"hook {name!r}: found {name!r}; allowed: {', '.join(HOOKS)}")
        return getattr(self.module(), name, None)


REGISTRY = (
    Cause("variance_divisor", "n-1 instead of n, or n instead of n-1", ("y", "std"), search=1),
    Cause("eps_value", "another eps (the fitted value is reported)", ("y",), search=0),
    Cause("eps_on_std", "eps added to the standard deviation instead of the variance", ("y",), search=6),
    Cause("one_pass_variance", "variance as E[x^2]-E[x]^2 computed in the input dtype",
          ("y", "running_var", "std"), search=7),
    Cause("low_precision_accumulation",
          "sums accumulated in the input dtype (float16/bfloat16, or float32 over many values)",
          ("y", "running_mean", "running_var", "mean", "std"), search=8),
    Cause("reduction_axes", "statistics over other axes (layout misread, unbatched input misread)",
          ("y", "mean", "std"), search=9),
    Cause("momentum_convention", "momentum applied to the old value instead of the new",
          ("running_mean", "running_var", "y"), search=3),
    Cause("running_variance_estimator", "the other divisor in the running variance", ("running_var", "y"), search=2),
    Cause("per_image_std", "mean of per-image stds instead of the pooled std", ("std", "mean"), search=4),
    Cause("affine_default", "a scale or shift the case did not ask for (or a missing one)", ("y",), search=5),
    Cause("training_mode", "batch statistics where running ones were asked for (a forgotten eval()), or the reverse",
          ("y", "running_mean", "running_var"), search=10),
    Cause("group_assignment", "group norm with channel c in group c % G (interleaved) instead of c // (C/G)",
          ("y",), search=11),
    Cause("layout_misread", "a channels_last buffer read as channels_first or the reverse (input, output or both)",
          ("y", "running_mean", "running_var", "mean", "std"), search=12),
    Cause("weight_offset", "rms_norm scaled by weight where (1 + weight) was asked (Gemma's unit offset), or the "
          "reverse", ("y",), search=13),
    Cause("cast_order", "rms_norm's x / rms rounded to the input dtype before the weight multiply (LLaMA), or after it "
          "(Gemma)", ("y",), search=14),
    Cause("mean_subtracted", "a layer norm (mean subtracted) where an RMS norm was asked", ("y",), search=15),
    Cause("attribute_precision", "eps or momentum rounded to a 32-bit float attribute (ONNX) in a float64 case",
          ("y", "running_mean", "running_var"), search=16),
    Cause("compute_precision", "a float64 case computed in float32 (ONNX stash_type=1, OpenVINO's CPU plugin)",
          ("y", "running_mean", "running_var"), search=17),
    Cause("per_group_affine", "group norm's scale and bias per group (GroupNormalization-18) instead of per channel",
          ("y",), search=18),
    Cause("empty_batch_statistics", "the statistics of an empty batch taken as 0 (a reduction's identity) or the "
          "update skipped, instead of 0/0 = NaN", ("running_mean", "running_var", "mean", "std"), search=19),
)

#: The cause ids, in the table's order (the order of docs/causes.md and of the schema's enum).
IDS = tuple(c.id for c in REGISTRY)
BY_ID = {c.id: c for c in REGISTRY}


def in_search_order() -> tuple[Cause, ...]:
    """The causes in the order the explainer tries their variants."""
    return tuple(sorted(REGISTRY, key=lambda c: c.search))


def hooks(name: str) -> tuple[tuple[str, Callable[..., Any]], ...]:
    """``(cause id, hook)`` of every cause that has hook ``name``, in search order."""
    return _hooks(REGISTRY, name)


@functools.lru_cache(maxsize=64)
def _hooks(registry: tuple[Cause, ...], name: str) -> tuple[tuple[str, Callable[..., Any]], ...]:
    # an explanation asks a few dozen times; the table (the key) changes only in tests
    return tuple((c.id, h) for c in sorted(registry, key=lambda c: c.search) if (h := c.hook(name)) is not None)

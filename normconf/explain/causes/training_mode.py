"""``training_mode``: batch statistics where running ones were asked for, or the reverse.

The commonest batch-norm bug after a port: a module left in training mode for inference (a
forgotten ``eval()``: y normalized with the batch's own statistics, and in an ``eval_after`` pass
the running statistics updated once more), or left in inference mode for training (a forgotten
``train()``, Keras' ``training=False``, Flax's ``use_running_average=True``: y normalized with the
given running statistics, which then never move). PyTorch's ``InstanceNorm*d(track_running_stats=
True)`` uses its running statistics in inference too, so the second applies there as well.
"""
from __future__ import annotations

import numpy as np

from ... import oracle
from ..variant import Variant

RUNNING = ("running_mean", "running_var")


def computed(ex) -> list[Variant]:
    case, p = ex.case, ex.case.params
    if ex.x.size == 0:  # an empty batch: no y to show which statistics normalized it
        return []
    if case.op == "batch_norm" and not p["training"]:
        return [Variant("training_mode", {"statistics": "batch", "asked": "running"},
                        "y normalized with the batch's own statistics (training mode: a forgotten eval()) "
                        "where the case asks for inference with running_mean and running_var",
                        fn=batch_statistics(update=False), extra={"reorders": True})]
    if case.op == "batch_norm" and p["eval_after"]:
        return [Variant("training_mode", {"statistics": "batch", "asked": "running", "update": True},
                        "the eval pass run in training mode (a forgotten eval()): y normalized with the batch's "
                        "own statistics, and the running statistics updated once more with it",
                        fn=batch_statistics(update=True), extra={"reorders": True}),
                Variant("training_mode", {"statistics": "batch", "asked": "running", "update": False},
                        "the eval pass normalized with the batch's own statistics instead of the running "
                        "statistics after training", fn=batch_statistics(update=False), extra={"reorders": True})]
    if (case.op == "batch_norm" and p["training"]) or p.get("track_running_stats"):
        return [Variant("training_mode", {"statistics": "running", "asked": "batch"},
                        "y normalized with the given running_mean and running_var, which stay as they were "
                        "(inference mode: a forgotten train()) where the case trains with the batch's statistics",
                        fn=running_statistics, extra={"reorders": True})]
    return []


def batch_statistics(update: bool):
    """Inference asked, the batch's statistics used: a ``training: false`` pass run as a training
    pass, or ``eval_after``'s eval pass run as one more training pass (``update``: its running
    statistics updated with it, as a module left in training mode does)."""
    def fn(case, inputs):
        p = case.params
        if not p["training"]:
            one = case.with_params(training=True, eval_after=False, steps=1)
            out = oracle.reference(one, {**inputs, "x_steps": [inputs["x"]]})
            return {k: v for k, v in out.items() if k not in RUNNING}
        steps = [*inputs["x_steps"], inputs["x"]]
        out = dict(oracle.reference(case.with_params(eval_after=False, steps=len(steps)), {**inputs, "x_steps": steps}))
        if not update:
            out.update({k: v for k, v in oracle.reference(case, inputs).items() if k in RUNNING})
        return out
    return fn


def running_statistics(case, inputs):
    """Training asked, the module in inference: y from the given running statistics, unchanged."""
    frozen = case.with_params(training=False, eval_after=False)
    out = dict(oracle.reference(frozen, inputs) if case.op == "batch_norm" else oracle.batch_norm(frozen, inputs))
    out.update({k: np.asarray(inputs[k], dtype=np.float64) for k in RUNNING})
    return out

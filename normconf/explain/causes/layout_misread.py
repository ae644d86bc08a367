"""``layout_misread``: a buffer in one memory layout read (or written) as the other.

A kernel that takes an [N, H, W, C] (channels_last) buffer for [N, C, H, W] (channels_first), or the
reverse, does not transpose the data: it reshapes the same memory, so channels and positions are
scrambled. The variant reinterprets the buffer exactly that way: for the input (every training
step's too, so running statistics follow), for the output, or for both, and the gradients go
through the same buffers (the backward reads the upstream gradient and writes grad_x the way the
forward read x and wrote y).
"""
from __future__ import annotations

import numpy as np

from ... import oracle
from ..variant import Variant

OTHER_LAYOUT = {"channels_first": "channels_last", "channels_last": "channels_first"}
WHERE = ("input", "output", "both")


def reinterpret(v, memory: str, read_as: str) -> np.ndarray:
    """The canonical [N, C, *spatial] array ``v`` laid out in ``memory`` order, and that buffer read
    as ``read_as``: canonical again, with the elements permuted."""
    v = np.asarray(v)
    buf = np.ascontiguousarray(np.moveaxis(v, 1, -1) if memory == "channels_last" else v).reshape(-1)
    if read_as == "channels_last":
        return np.moveaxis(buf.reshape((v.shape[0],) + v.shape[2:] + (v.shape[1],)), -1, 1)
    return buf.reshape(v.shape)


def plans(shape) -> list[str]:
    """The memory layouts whose misread is a distinct permutation other than the identity (C = 1, a
    single position, or a rank-2 input has none; a square [N, C, C] has one: each misread undoes
    the other)."""
    if len(shape) < 3 or int(np.prod(shape)) == 0:
        return []
    index = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    seen, out = [index.reshape(-1)], []
    for memory in ("channels_last", "channels_first"):
        perm = reinterpret(index, memory, OTHER_LAYOUT[memory]).reshape(-1)
        if not any(np.array_equal(perm, s) for s in seen):
            seen.append(perm)
            out.append(memory)
    return out


def misread(memory: str, where: str):
    """``fn(case, inputs)``: the oracle run by a kernel that takes ``memory`` order for the other
    layout where it reads its input (``input``), writes its output (``output``) or both."""
    read_as = OTHER_LAYOUT[memory]

    def fn(case, inputs):
        ins = dict(inputs)
        if where in ("input", "both"):
            ins["x"] = reinterpret(inputs["x"], memory, read_as)
            if "x_steps" in inputs:
                ins["x_steps"] = [reinterpret(v, memory, read_as) for v in inputs["x_steps"]]
        if where in ("output", "both") and "grad_output" in inputs:
            ins["grad_output"] = reinterpret(inputs["grad_output"], memory, read_as)
        out = dict(oracle.reference(case, ins))
        if where in ("output", "both"):
            out["y"] = reinterpret(out["y"], read_as, memory)
        if where in ("input", "both") and "grad_x" in out:
            out["grad_x"] = reinterpret(out["grad_x"], read_as, memory)
        return out
    return fn


def computed(ex) -> list[Variant]:
    """Each distinct misread of the input's shape, for the input, the output and both (channel_stats:
    the input; its outputs are per channel)."""
    wheres = ("input",) if ex.case.op == "channel_stats" else WHERE
    return [Variant("layout_misread", {"memory": memory, "read_as": OTHER_LAYOUT[memory], "where": where},
                    text(ex.case.shape, memory, where), fn=misread(memory, where), extra={"reorders": True})
            for memory in plans(ex.x.shape) for where in wheres]


def _dims(shape, layout: str) -> str:
    n, c, rest = shape[0], shape[1], ", ".join(str(s) for s in shape[2:])
    return f"[{n}, {rest}, {c}]" if layout == "channels_last" else f"[{n}, {c}, {rest}]"


def text(shape, memory: str, where: str) -> str:
    read_as = OTHER_LAYOUT[memory]
    what = {"input": "the input read", "output": "the output written",
            "both": "the input read and the output written"}[where]
    consequence = {"input": "statistics over scrambled values, y handed back in order",
                   "output": "y computed right, its buffer handed back in the other order",
                   "both": "the data scrambled, not transposed"}[where]
    return (f"{what} as {read_as} from {memory} memory (the {_dims(shape, memory)} buffer taken for "
            f"{_dims(shape, read_as)}): {consequence}")

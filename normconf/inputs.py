"""Seeded inputs: drawn in float64 with NumPy's PCG64, then rounded to the case's dtype.

The arrays handed to the oracle and to every adapter are float64 arrays whose values are exactly
representable in the case's dtype, so all of them see the same numbers.

>>> from normconf.cases import load_text
>>> text = "cases: [{id: a, op: instance_norm, input: {shape: [1, 1, 2], generator: {dist: constant, value: 3}}}]"
>>> case = load_text(text, "d.yaml")[0][0]
>>> generate(case)["x"].tolist()
[[[3.0, 3.0]]]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .cases import Case, CaseError

MANTISSA_BITS = {"float64": 53, "float32": 24, "float16": 11, "bfloat16": 8}


#: Elements rounded at a time: a 2 GiB float64 draw is rounded in place with 4 MB temporaries.
CHUNK = 1 << 19


def round_to_dtype(values, dtype: str, inplace: bool = False) -> np.ndarray:
    """Round float64 values to the nearest value of ``dtype`` (ties to even), kept as float64;
    ``inplace=True`` overwrites ``values`` (a C-contiguous float64 array) instead of copying it."""
    values = np.asarray(values, dtype=np.float64)
    if dtype == "float64":
        return values if inplace else values.copy()
    if inplace and not values.flags.c_contiguous:
        raise ValueError("round_to_dtype(inplace=True) needs a C-contiguous float64 array")
    out = values if inplace else np.empty(values.shape)
    flat_in, flat_out = values.reshape(-1), out.reshape(-1)
    for lo in range(0, flat_in.size, CHUNK):
        flat_out[lo:lo + CHUNK] = _round(flat_in[lo:lo + CHUNK], dtype)
    return out


def _round(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype in ("float64", "float32", "float16"):
        return values.astype(dtype).astype(np.float64)
    if dtype == "bfloat16":
        # NumPy has no bfloat16: round float32 bits to the upper 16, nearest-even (what ml_dtypes,
        # torch and TF do). Rounding float64 -> float32 first can double-round only in ties that
        # float64 -> bfloat16 would break differently; generated values are not such ties.
        f32 = values.astype(np.float32)
        bits = f32.view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        out = rounded.astype(np.uint32).view(np.float32).astype(np.float64)
        return np.where(np.isfinite(f32), out, f32.astype(np.float64))
    raise ValueError(f"unknown dtype {dtype!r}")


#: The largest finite value of each dtype (a value that rounds beyond it becomes inf).
LARGEST = {"float64": float(np.finfo(np.float64).max), "float32": float(np.finfo(np.float32).max),
           "float16": 65504.0, "bfloat16": 3.3895313892515355e38}


def _fits(case: Case, key: str, values, inplace: bool = False) -> np.ndarray:
    """``values`` rounded to the case dtype, or a :class:`CaseError` naming ``key`` when a finite
    value rounds to inf (a float16 generator with mean 1e5, a literal 1.0e+5 in float16): the
    author meant numbers, and an infinite input is written as ``.inf`` in ``input.data``. NaN and
    inf written as such stay. Rounding is monotone, so the largest finite |value| decides."""
    values = np.asarray(values, dtype=np.float64)
    if values.size and case.dtype != "float64":
        if values.size <= CHUNK:
            finite = np.abs(values[np.isfinite(values)])
            big = float(finite.max()) if finite.size else 0.0
        else:  # a large draw (finite by construction): min and max copy nothing
            big = max(-float(values.min()), float(values.max()))
        with np.errstate(over="ignore"):
            overflows = bool(np.isinf(round_to_dtype(np.array([big]), case.dtype)[0]))
        if overflows:
            raise CaseError(case.file, case.id, key,
                            f"values up to {big:.6g} in magnitude, which overflow {case.dtype} (rounded to inf)",
                            f"values within {case.dtype}'s range (|x| <= {LARGEST[case.dtype]:.6g}); "
                            f"an infinite input is written as .inf in input.data")
    return round_to_dtype(values, case.dtype, inplace=inplace)


def draw(generator: dict, shape, seed_offset: int = 0) -> np.ndarray:
    """Draw float64 values from a validated ``generator`` mapping."""
    rng = np.random.Generator(np.random.PCG64(generator["seed"] + seed_offset))
    dist = generator["dist"]
    if dist == "normal":
        return rng.normal(generator["mean"], generator["std"], size=shape)
    if dist == "uniform":
        return rng.uniform(generator["low"], generator["high"], size=shape)
    return np.full(shape, float(generator["value"]))


def generate(case: Case) -> dict[str, Any]:
    """All inputs of a case, keyed ``x`` (and ``x_steps`` where running statistics are kept),
    ``weight``, ``bias``, ``running_mean``, ``running_var``, ``grad_output`` (with ``grad: true``,
    shaped like y); all rounded to the case dtype like ``x``."""
    shape = case.shape
    running = "running_mean" in case.params  # batch_norm, instance_norm with track_running_stats
    if case.data is not None:
        steps = [np.asarray(case.data, dtype=np.float64).reshape(shape)]  # data: [] is an empty batch
    else:
        n_steps = case.params.get("steps", 1) if running else 1
        generator = case.generator
        assert generator is not None  # a loaded case has input.data or input.generator
        steps = [_fits(case, "input.generator", draw(generator, shape, k), inplace=True) for k in range(n_steps)]
    steps = [_fits(case, "input.data", x) if case.data is not None else x for x in steps]
    out: dict[str, Any] = {"x": steps[-1]}  # arrays, and x_steps: the list of every step's x
    if running:
        out["x_steps"] = steps
    c = shape[1]
    per_channel = [shape[a] for a in case.params["axes"]] if case.op in ("layer_norm", "rms_norm") else [c]
    for key in ("weight", "bias", "running_mean", "running_var"):
        if key not in case.params:
            continue
        value = case.params[key]
        if value is None:
            if not running or key not in ("running_mean", "running_var"):
                continue
            value = np.zeros(per_channel) if key == "running_mean" else np.ones(per_channel)
        elif isinstance(value, dict):
            value = draw(value["generator"], per_channel)
        out[key] = _fits(case, f"params.{key}", value)
    if case.params.get("grad"):
        value = case.params["grad_output"]
        value = draw(value["generator"], shape) if isinstance(value, dict) else value
        out["grad_output"] = _fits(case, "params.grad_output", value)
    if case.op == "normalize":
        out["mean"] = np.asarray(case.params["mean"], dtype=np.float64)
        out["std"] = np.asarray(case.params["std"], dtype=np.float64)
    return out

"""How far error / tolerance moves with the order of the additions: the measurement behind the verdict
margin (README, "Tolerances", "How firm a verdict is").

A machine with other vector widths, another library dispatch or another thread count adds the same
numbers in another order. This script emulates that on every shipped case: the statistics of each op
are computed by a *correct* implementation (a two-pass variance, sums in the accumulation dtype of
the case: float32 for float32/float16/bfloat16 inputs, float64 for float64) and by a one-pass
variance E[x^2] - E[x]^2 in the same dtype, each under several summation orders:

    pairwise    NumPy's blocked pairwise sum (what NumPy and many CPU kernels do)
    sequential  one accumulator, first to last
    reversed    one accumulator, last to first
    lanes8      8 accumulators (an AVX2 float32 loop), then a tree over the lanes
    lanes16     16 accumulators (an AVX-512 float32 loop), then a tree
    threads2    two halves summed pairwise (two threads), then added
    shuffled    a seeded random permutation, then pairwise

The outputs are rounded to the case dtype and judged like an adapter's (the case's oracle and
tolerance, ``normconf.engine.context``). Per case and implementation, the spread is the largest
error / tolerance over the orders divided by the smallest.

    .venv/bin/python benchmarks/summation_order.py [--cases cases] [--out /tmp/order.json]

Nothing here runs a framework: it isolates the summation order from everything else.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from normconf import engine, oracle
from normconf.cases import is_case_file, load_file
from normconf.compare import ACCUMULATION, compare
from normconf.inputs import round_to_dtype

ORDERS = ("pairwise", "sequential", "reversed", "lanes8", "lanes16", "threads2", "shuffled")
KINDS = ("two_pass", "one_pass")
STATISTICS_OPS = ("instance_norm", "layer_norm", "group_norm", "batch_norm", "channel_stats")


def ordered_sum(v: np.ndarray, axes, order: str, dtype) -> np.ndarray:
    """The sum of ``v`` over ``axes`` (kept as size-1 dims) in ``dtype``, adding in ``order``."""
    v = np.asarray(v, dtype=dtype)
    axes = tuple(a % v.ndim for a in axes)
    rest = [d for d in range(v.ndim) if d not in axes]
    rows = np.ascontiguousarray(np.transpose(v, rest + list(axes))).reshape(
        int(np.prod([v.shape[d] for d in rest])), int(np.prod([v.shape[d] for d in axes])))
    n = rows.shape[1]
    if n == 0:
        out = np.zeros(rows.shape[0], dtype=dtype)
    elif order == "pairwise":
        out = rows.sum(axis=1, dtype=dtype)
    elif order == "sequential":
        out = np.add.accumulate(rows, axis=1, dtype=dtype)[:, -1]
    elif order == "reversed":
        out = np.add.accumulate(rows[:, ::-1], axis=1, dtype=dtype)[:, -1]
    elif order.startswith("lanes"):
        k = int(order[5:])
        padded = np.zeros((rows.shape[0], -(-n // k) * k), dtype=dtype)
        padded[:, :n] = rows
        lanes = np.add.accumulate(padded.reshape(rows.shape[0], -1, k), axis=1, dtype=dtype)[:, -1, :]
        while lanes.shape[1] > 1:  # the horizontal reduction: a tree over the lanes
            lanes = (lanes[:, : lanes.shape[1] // 2] + lanes[:, lanes.shape[1] // 2:]).astype(dtype)
        out = lanes[:, 0]
    elif order == "threads2":
        half = n // 2
        out = (rows[:, :half].sum(axis=1, dtype=dtype) + rows[:, half:].sum(axis=1, dtype=dtype)).astype(dtype)
    elif order == "shuffled":
        # a[:, index] comes back in Fortran order, where NumPy would sum across rows one by one
        out = np.ascontiguousarray(rows[:, np.random.default_rng(0).permutation(n)]).sum(axis=1, dtype=dtype)
    else:
        raise ValueError(f"order {order!r}: one of {', '.join(ORDERS)}")
    return np.expand_dims(out.reshape([v.shape[d] for d in rest]), axes)


@contextmanager
def statistics(order: str, kind: str, dtype):
    """``oracle._moments`` replaced by statistics in ``dtype`` summed in ``order``, two-pass or one-pass."""
    saved = oracle._moments

    def moments(x, axes, ddof):
        x64 = np.asarray(x, dtype=np.float64)
        axes = tuple(axes)
        n = int(np.prod([x64.shape[a] for a in axes]))
        xs = x64.astype(dtype)
        with np.errstate(all="ignore"):
            mean = (ordered_sum(xs, axes, order, dtype) / dtype(n)).astype(dtype)
            dev = (xs - mean).astype(dtype)
            if kind == "two_pass":
                ss = ordered_sum(dev * dev, axes, order, dtype)
            else:  # E[x^2] - E[x]^2, clipped at 0 (Flax, labml-nn)
                ss = np.maximum(ordered_sum(xs * xs, axes, order, dtype) - dtype(n) * mean * mean, 0)
            var = (ss / dtype(n - ddof)).astype(dtype) if n > ddof else np.full_like(mean, np.nan)
        return mean.astype(np.float64), dev.astype(np.float64), var.astype(np.float64)

    oracle._moments = moments
    try:
        yield
    finally:
        oracle._moments = saved


def measure(case) -> dict | None:
    """error / tolerance of each (kind, order) on ``case``, max over outputs; None if not measurable."""
    if case.op not in STATISTICS_OPS or "large" in case.tags or case.tolerance:
        return None
    if case.op == "batch_norm" and not case.params.get("training"):
        return None
    ctx = engine.context(case)
    arrays = [v for v in ctx.inputs.values() if isinstance(v, np.ndarray)]
    if ctx.problem or ctx.inputs["x"].size == 0 or not all(np.isfinite(v).all() for v in arrays):
        return None
    acc = np.dtype(ACCUMULATION[case.dtype]).type
    out = {}
    for kind in KINDS:
        for order in ORDERS:
            with statistics(order, kind, acc):
                got = oracle.reference(case, ctx.inputs)
            ratios = {}
            for name, value in got.items():
                value = round_to_dtype(value, case.dtype)
                m = compare(ctx.expected[name], value, case.dtype, **ctx.tolerance[name])
                ratios[name] = float(m["ratio"]) if isinstance(m["ratio"], (int, float)) else float("inf")
            out[f"{kind}/{order}"] = max(ratios.values())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=str(ROOT / "cases"), help="case file or folder (default: cases/)")
    ap.add_argument("--out", help="write every case's ratios as JSON here")
    args = ap.parse_args(argv)
    root = Path(args.cases)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*.yaml") if is_case_file(p))
    start = time.perf_counter()
    rows = {}
    for path in files:
        for case in load_file(path)[0]:
            got = measure(case)
            if got is not None:
                rows[case.key] = {"dtype": case.dtype, "op": case.op, "ratios": got}
            engine.forget(case)
    report(rows)
    print(f"{len(rows)} cases in {time.perf_counter() - start:.1f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


def spread(ratios: list[float]) -> float:
    finite = [r for r in ratios if np.isfinite(r)]
    if len(finite) < len(ratios):
        return float("inf") if finite else 1.0
    low, high = min(finite), max(finite)
    return high / low if low > 0 else (1.0 if high == 0 else float("inf"))


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values`` (the nearest rank below), NaN when there are none."""
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def report(rows: dict) -> None:
    """Per kind and dtype: how many cases, the largest ratio seen, the spread (max / min over the
    orders) as median / 95th percentile / max, and the cases whose verdict the order flips."""
    print(f"{'kind':<9} {'dtype':<9} {'cases':>5} {'max ratio':>10} {'spread p50':>10} {'p95':>7} {'max':>7}"
          f"  {'flips':>5}  {'>0.5 and <2':>11}")
    for kind in KINDS:
        for dtype in ("float64", "float32", "float16", "bfloat16"):
            sel = {k: r for k, r in rows.items() if r["dtype"] == dtype}
            if not sel:
                continue
            per = {k: [r["ratios"][f"{kind}/{o}"] for o in ORDERS] for k, r in sel.items()}
            # the spread is measured where the sums matter: a ratio of at least 0.05 under some order
            spreads = sorted(spread(v) for v in per.values() if max(v) >= 0.05)
            flips = [k for k, v in per.items() if min(v) <= 1 < max(v)]
            near = [k for k, v in per.items() if any(0.5 < x < 2 for x in v)]
            high = max(max(v) for v in per.values())
            print(f"{kind:<9} {dtype:<9} {len(sel):>5} {high:>10.3g} {quantile(spreads, 0.5):>10.3g} "
                  f"{quantile(spreads, 0.95):>7.3g} {quantile(spreads, 1.0):>7.3g}  {len(flips):>5}  {len(near):>11}")
            for k in flips[:8]:
                print(f"    flips: {k}: " + ", ".join(f"{o} {x:.3g}" for o, x in zip(ORDERS, per[k], strict=True)))


if __name__ == "__main__":
    sys.exit(main())

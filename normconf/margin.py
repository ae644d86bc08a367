"""How firm a verdict is: the margin between the comparisons a verdict rests on and their tolerance.

The error of a float32 (or float16, or float64) sum depends on the order of its additions, and that
order depends on the machine: the vector width (AVX2 adds 8 float32 lanes, AVX-512 16), the kernel a
library dispatches to, the number of threads that split a reduction. A verdict is *firm* when every
comparison it rests on is at most :data:`FIRM_AGREE` (an output that agrees) or at least
:data:`FIRM_DIFFER` (an output that is off) times its tolerance, and *fragile* otherwise: another
machine could flip it. README, "How firm a verdict is", has the measurement behind the factor 2
(``benchmarks/summation_order.py`` and the same items under other kernel and thread settings).

>>> margin([Condition("y", "agree", 0.3), Condition("running_var", "agree", 0.8)])
{'margin': 0.8, 'margin_output': 'running_var', 'verdict': 'fragile', 'strict': True}
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .records import Explanation, Metrics, Status, as_ratio

FIRM_AGREE = 0.5
FIRM_DIFFER = 2.0
#: Causes whose size itself depends on the order of the additions. An output another cause explains
#: (a divisor, an eps, a momentum: fixed by the math) moves only by its distance to the explanation.
ORDER_DEPENDENT = ("one_pass_variance", "low_precision_accumulation")
NONE = {"margin": None, "margin_output": None, "verdict": None, "strict": None}


@dataclass(frozen=True)
class Condition:
    """One comparison a verdict rests on: ``output`` must keep agreeing (``need="agree"``: error /
    tolerance <= 1) or keep differing (``"differ"``: > 1); it stands at ``ratio``. ``strict``: False
    where either outcome is accepted (a ``platform_dependent`` known discrepancy).

    ``moves``: the part of ``ratio`` another machine can move (default: all of it). Against a literal
    of ``expect.values`` most of the error is the literal's own rounding; an output off by a
    convention (the n-1 divisor) is off by a fixed amount: in both, only the distance to the oracle
    (or to the oracle under the convention) moves."""

    output: str
    need: str
    ratio: float
    strict: bool = True
    moves: float | None = None

    def room(self) -> float:
        """The factor by which the movable error must grow (agree) or shrink (differ) to flip the
        comparison, over the threshold's factor (1 / FIRM_AGREE or FIRM_DIFFER): >= 1 is firm. With
        ``moves == ratio`` this is FIRM_AGREE / ratio or ratio / FIRM_DIFFER.

        >>> round(Condition("y", "agree", 0.4).room(), 9), round(Condition("y", "differ", 3.0).room(), 9)
        (1.25, 1.5)
        """
        moves = self.ratio if self.moves is None else self.moves
        if self.need == "agree":  # flips when ratio + (g - 1) moves > 1
            return math.inf if moves <= 0 else (1 + (1 - self.ratio) / moves) * FIRM_AGREE
        if moves <= self.ratio - 1:  # flips when ratio - (1 - 1/g) moves <= 1: never
            return math.inf
        return 1 / (1 - (self.ratio - 1) / moves) / FIRM_DIFFER


def margin(conditions) -> dict:
    """``{margin, margin_output, verdict, strict}`` from the comparisons a result rests on.

    ``margin`` is the error / tolerance of the comparison closest to flipping (a strict fragile one
    first), ``margin_output`` its output, ``verdict`` ``"firm"`` when every comparison has room and
    ``"fragile"`` otherwise, ``strict`` whether that comparison is enforced (False under a
    ``platform_dependent`` known entry). No comparison (unsupported, unavailable, error): all None.
    ``margin`` is a float (``inf`` for an output infinitely far off).

    >>> margin([Condition("y", "differ", 40.0)])["verdict"]
    'firm'
    """
    conditions = list(conditions)
    if not conditions:
        return dict(NONE)
    worst = min(conditions, key=lambda c: (True, False, c.room()) if c.room() >= 1 else (False, not c.strict, c.room()))
    return {"margin": float(worst.ratio), "margin_output": worst.output,
            "verdict": "firm" if worst.room() >= 1 else "fragile", "strict": worst.strict}


def verdict_margin(status: Status, outputs: dict[str, Metrics], failed: list, excused: list, native_matters: dict,
                   entries: list, explanation: Explanation | None, rounded: frozenset[str] = frozenset()) -> dict:
    """The margin fields of a judged result (see :func:`margin`).

    ``outputs``: each output's metrics; ``failed``: the outputs off and not excused; ``excused``:
    ``(output, "native" | "known", text)`` of those excused; ``native_matters``: per output, whether
    its verdict also rests on the comparison with the oracle under the declared native convention;
    ``entries``: the known entries matching the result, in file order (the first naming an output
    governs it); ``explanation``: the convention change that reproduces the output, if any;
    ``rounded``: the comparisons (``"y"``, ``"y (native)"``) whose output is its reference correctly
    rounded to the dtype with half an ulp inside the tolerance (:func:`correctly_rounded`): another
    machine cannot take them out, so nothing of their ratio moves.

    ``fail`` rests on its failing comparisons staying out (any one is enough: one condition, the one
    with the most room). ``pass``, ``expected`` and ``stale`` rest on every comparison keeping its
    outcome: each that agrees must keep agreeing, the excused outputs must stay out (again any one
    is enough), and where a native convention is in play, the comparison under it too. An output
    governed by a ``platform_dependent`` entry gives non-strict conditions (a pass and the mismatch
    are both accepted); one that agrees in an expected result while an entry names it gives none (if
    it went out, the entry would excuse it and the result would stay expected)."""
    status = Status(status)
    if not status.is_judged:
        return dict(NONE)
    governing = {n: next((e for e in entries if e.covers(n)), None) for n in outputs}
    loose = {n for n, e in governing.items() if e is not None and e.platform_dependent}
    moves = _moves(outputs, explanation)
    moves.update({n: 0.0 for n in rounded if n in outputs})
    if status is Status.FAIL:
        return margin([max((c for n in failed for c in _compared(n, outputs[n], moves.get(n))), key=Condition.room)])
    conditions, out = [], []
    names = {e[0] for e in excused}
    for name, metrics in outputs.items():
        if name in names:
            out += _compared(name, metrics, moves.get(name), strict=name not in loose)
        elif not (status is Status.EXPECTED and governing[name] is not None):
            conditions += _compared(name, metrics, moves.get(name), strict=name not in loose)
        if native_matters.get(name):
            vs = metrics.vs_native
            assert vs is not None  # the engine sets native_matters only where it compared with the native oracle
            conditions.append(Condition(f"{name} (native)", "agree" if vs.ok else "differ", as_ratio(vs.ratio),
                                        strict=name not in loose, moves=0.0 if f"{name} (native)" in rounded else None))
    if out:
        conditions.append(max(out, key=Condition.room))
    return margin(conditions)


def correctly_rounded(metrics: Metrics, dtype: str) -> bool:
    """Whether an output compared with ``metrics`` is its reference correctly rounded to ``dtype``
    (every element within half an ulp, plus the float32 noise of a value computed in float32 and
    rounded to a half dtype) and half an ulp is well inside the tolerance everywhere
    (u = 2^-p <= 0.9 rtol, and half the subnormal spacing <= atol). Such a comparison cannot go out
    on another machine: an order of additions that moves the unrounded value can at most carry an
    element across a rounding midpoint, where its error is still about half an ulp (its float32 or
    float64 noise is orders of magnitude below a half-precision ulp). It matters where a case's
    tolerance is a small multiple of u on purpose (rms_norm's cast-order cases, 1.25 u), where the
    correctly rounded output itself stands at 0.8 of the tolerance.

    >>> import dataclasses
    >>> m = Metrics(1e-3, 1e-3, 0.49, [0], 1.0, 1.0, 0.78, 0, 0, 0, 1e-9, 1.25 * 2.0 ** -8, True)
    >>> correctly_rounded(m, "bfloat16"), correctly_rounded(dataclasses.replace(m, max_ulp=0.51), "bfloat16")
    (True, False)
    """
    from .compare import FORMATS

    p, emin = FORMATS[dtype]
    u, half_subnormal = 2.0 ** -p, 2.0 ** (emin - p)
    # half an ulp, and for a half-precision output the float32 it was rounded from: an element whose
    # exact value is within float32 noise of a rounding midpoint can round either way (4 float32 ulps)
    half = 0.5 + (4 * 2.0 ** (p - 24) if p < 24 else 1e-6)
    return metrics.max_ulp <= half and u <= 0.9 * metrics.rtol and half_subnormal <= 0.9 * metrics.atol


def _moves(outputs: dict[str, Metrics], explanation: Explanation | None) -> dict[str, float]:
    """Per output, how much of its error / tolerance can move with the machine when part of it is
    fixed: with a declared native convention, the distance to the oracle under that convention; with
    an explanation by a convention that no order of additions changes, its residual (the distance to
    the oracle under the explained convention). The smaller of that and the whole error."""
    found: dict[str, float] = {}
    for name, metrics in outputs.items():
        if metrics.vs_native is not None:
            found[name] = as_ratio(metrics.vs_native.ratio)
    if explanation and explanation.cause != "unexplained":
        if not {explanation.cause, *(explanation.causes or ())} & set(ORDER_DEPENDENT):
            for name, residual in (explanation.residual or {}).items():
                if name in outputs:
                    found[name] = min(found.get(name, math.inf), as_ratio(residual))
    return {n: min(v, as_ratio(outputs[n].ratio)) for n, v in found.items()}


def _compared(name: str, metrics: Metrics, moves: float | None, strict: bool = True) -> list[Condition]:
    """An output's comparisons: with the oracle and, where the case gives literal values, with them.
    A literal's distance to the oracle is its own rounding and stays; only the output's distance to
    the oracle moves (in units of the literal's tolerance). An excused or failed output is off in at
    least one comparison: only those that are off are returned then."""
    found = [Condition(name, "agree" if metrics.ok else "differ", as_ratio(metrics.ratio), strict, moves)]
    vs = metrics.vs_values
    if vs is not None:
        # vs_values always has its atol (the literal's tolerance); vs_native, which has none, is not read here
        distance = as_ratio(metrics.max_abs) / vs.atol if vs.atol is not None and vs.atol > 0 else None
        found.append(Condition(f"{name} (expect.values)", "agree" if vs.ok else "differ", as_ratio(vs.ratio),
                               strict, distance))
    if not all(c.need == "agree" for c in found):
        found = [c for c in found if c.need == "differ"]
    return found

"""``explain`` and ``explain_pair``: the entry points (see the package's docstring)."""
from __future__ import annotations

from .. import oracle
from ..cases import Case
from ..compare import GRADIENTS, compare
from .core import Explainer
from .variant import num, tol


def explain(case: Case, inputs: dict, expected: dict, actual: dict, tolerance: dict) -> dict | None:
    """``None`` when every output in both ``expected`` and ``actual`` agrees within ``tolerance``;
    else ``{"cause", "detail", "params", "outputs", "residual", "candidates"}`` (plus ``"stats"``
    when the cause is ``"unexplained"``, ``"causes"`` for a pair)."""
    names = [n for n in expected if n in actual]
    try:
        base = {n: compare(expected[n], actual[n], case.dtype, **tol(tolerance, n)) for n in names}
    except ValueError as exc:
        return {"cause": "unexplained", "detail": f"the outputs cannot be compared: {exc}", "params": {},
                "outputs": names, "residual": {}, "candidates": [], "stats": {}}
    bad = [n for n in names if not base[n]["ok"]]
    if not bad:
        return None
    if any(n not in GRADIENTS for n in bad):  # a gradient off with its forward output shares its cause:
        names = [n for n in names if n not in GRADIENTS]  # explain the forward outputs (the variants
        bad = [n for n in bad if n not in GRADIENTS]  # are forward computations)
    try:
        return Explainer(case, inputs, expected, actual, tolerance, names, bad).run()
    except Exception as exc:  # an explanation must never turn a result into a traceback
        return {"cause": "unexplained", "detail": f"explaining failed: {type(exc).__name__}: {exc}",
                "params": {}, "outputs": bad, "residual": {}, "candidates": [], "stats": {}}


def explain_pair(case: Case, inputs: dict, a: dict, b: dict, tolerance: dict,
                 labels: tuple[str, str] = ("a", "b")) -> dict | None:
    """Why two implementations' outputs differ: each is explained against the oracle.

    ``None`` when ``a`` and ``b`` agree within ``tolerance``. Otherwise the cause of whichever
    disagrees with the oracle (of ``a`` when both do), ``"causes"`` naming both when they differ,
    and a detail such as ``"torch: running_variance_estimator (unbiased); tensorflow: agrees with
    the oracle"``."""
    names = [n for n in a if n in b]
    try:
        if all(compare(a[n], b[n], case.dtype, **tol(tolerance, n))["ok"] for n in names):
            return None
    except ValueError as exc:
        return {"cause": "unexplained", "detail": f"{labels[0]} and {labels[1]} cannot be compared: {exc}",
                "params": {}, "outputs": names, labels[0]: None, labels[1]: None}
    expected = oracle.reference(case, inputs)
    ea = explain(case, inputs, expected, a, tolerance)
    eb = explain(case, inputs, expected, b, tolerance)

    def say(label, e):
        if e is None:
            return f"{label}: agrees with the oracle"
        text = f"{label}: {e['cause']}"
        short = ", ".join(f"{v}" if k in ("variance", "running_variance", "method") else f"{k} {num(v)}"
                          for k, v in e.get("params", {}).items() if not isinstance(v, (dict, list)))
        return f"{text} ({short})" if short else text

    causes = [e["cause"] for e in (ea, eb) if e is not None]
    cause = causes[0] if causes else "unexplained"
    differ = [n for n in names if not compare(a[n], b[n], case.dtype, **tol(tolerance, n))["ok"]]
    out = {"cause": cause, "detail": f"{say(labels[0], ea)}; {say(labels[1], eb)}",
           "params": {}, "outputs": differ, labels[0]: ea, labels[1]: eb}
    if len(set(causes)) > 1:
        out["causes"] = causes
    return out

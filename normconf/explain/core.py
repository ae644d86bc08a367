"""The search: which variant of the oracle reproduces the outputs (stages 0 to 4, see the package)."""
from __future__ import annotations

import math

import numpy as np

from .. import oracle
from . import bounds, causes, diagnostic
from .variant import Variant, clean, pair, ratio, tol

# A reproducing variant ties with the best one when it leaves at most TIE_FACTOR times its share of
# the deviation unexplained, or both leave under TIE_FLOOR of it (each explains 99% of the
# deviation: the data cannot tell them apart, even if rounding favours one).
TIE_FACTOR, TIE_FLOOR = 4.0, 0.01


def simplicity(v: Variant) -> tuple:
    """Simplest first: one change before two, none fitted to the output before a fitted value (an
    eps read off y), then the causes' places in the search (causes.REGISTRY). On a tie the
    explanation's cause is the simplest member."""
    names = v.causes or (v.cause,)
    fitted = v.tier == 1 or "fitted" in v.params
    return (len(names), fitted, sum(causes.BY_ID[c].search if c in causes.BY_ID else len(causes.IDS) for c in names))


class Explainer:
    """One explanation: ``case`` and ``inputs``, the oracle's ``expected`` outputs and the ``actual``
    ones over ``names`` (those compared), of which ``bad`` are off."""

    def __init__(self, case, inputs, expected, actual, tolerance, names, bad):
        self.case, self.inputs, self.expected, self.tolerance = case, inputs, expected, tolerance
        self.actual = {n: np.asarray(actual[n], dtype=np.float64) for n in names}
        self.names, self.bad = names, bad
        self.x = np.asarray(inputs["x"], dtype=np.float64)
        self.evaluated: list[Variant] = []
        self.notes: list[str] = []  # what an unexplained result should also say (a fit not named)

    # ---- evaluation
    def evaluate(self, v: Variant) -> Variant:
        case, inputs = self.changed(v)
        try:
            with np.errstate(all="ignore"):
                v.outputs = (v.fn or oracle.reference)(case, inputs)
        except Exception as exc:  # a variant that cannot be built for this case (shapes) reproduces nothing
            v.outputs, v.extra["error"] = {}, repr(exc)
        v.extra["moments"] = getattr(v.fn, "moments", None)
        v.extra["case"] = case
        v.residual, v.ok = {}, True
        # a variant of another computing dtype (causes/compute_precision.py) is judged at its tolerance
        tolerance = v.extra.get("tolerance") or self.tolerance
        for n in self.names:
            got = v.outputs.get(n)
            if got is None or np.shape(got) != self.actual[n].shape:
                v.residual[n], v.ok = math.inf, False
                continue
            v.residual[n], ok = ratio(got, self.actual[n], **tol(tolerance, n))
            v.ok = v.ok and ok
        v.score = max(v.residual.values()) if v.residual else math.inf
        v.extra["fit"] = self.unexplained_share(v.outputs) if v.ok else math.inf
        self.evaluated.append(v)
        return v

    def changed(self, v: Variant):
        """The case and inputs a variant's changes and dropped inputs make."""
        case = self.case.with_params(**v.changes) if v.changes else self.case
        inputs = {k: val for k, val in self.inputs.items() if k not in v.drop} if v.drop else self.inputs
        return case, inputs

    def unexplained_share(self, outputs: dict) -> float:
        """sum |actual - variant|^2 / sum |actual - oracle|^2 over the failing outputs, each scaled
        by its allowance: the share of the deviation a variant leaves unexplained. Reproducing
        variants are ranked by it: unlike the largest ratio, it is not decided by one element's
        rounding noise when a fault is close to tolerance."""
        num = den = 0.0
        for n in self.bad:
            a, v = self.actual[n], np.asarray(outputs[n], dtype=np.float64)
            e = np.asarray(self.expected[n], dtype=np.float64)
            t = tol(self.tolerance, n)
            with np.errstate(all="ignore"):
                allowed = t["atol"] + t["rtol"] * np.where(np.isfinite(e), np.abs(e), 0.0)
                allowed = np.where(allowed > 0, allowed, 1.0)
                ok = np.isfinite(a) & np.isfinite(v) & np.isfinite(e)
                num += float(np.sum(((a - v) / allowed)[ok] ** 2))
                den += float(np.sum(((a - e) / allowed)[ok] ** 2))
        return num / den if den > 0 else 0.0

    # ---- the search
    def run(self) -> dict:
        discrete = self.variants("discrete")
        computed = self.variants("computed")
        for v in discrete + computed:
            self.evaluate(v)
        for v in self.fitted(self.case, self.inputs, None):
            self.evaluate(v)
        # A fitted eps that is a common value competes with the discrete variants on residual; an
        # eps that is no common value can stand in for another change where there are few slices
        # (one slice: any variance factor is an eps), so it counts only if no pair of plain
        # conventions reproduces the output either.
        hit = self.best((0, 1), odd=False)
        odd = self.best((1,), odd=True) if hit is None else None
        if hit is None:
            self.pairs(discrete, computed)
            hit = self.best((2,), odd=False) or odd or self.best((2,), odd=True)
        if hit is None:
            hit = self.bound_based()
        if hit is None:
            for _, fallback in causes.hooks("fallback"):
                found = fallback(self)
                if found is not None:
                    self.evaluate(found)
            hit = self.best((4,))
        return self.report(hit)

    def variants(self, hook: str) -> list[Variant]:
        """Every cause's variants from ``hook`` (``discrete`` or ``computed``), in search order."""
        return [v for _, make in causes.hooks(hook) for v in make(self)]

    def fitted(self, case, inputs, base: Variant | None) -> list[Variant]:
        return [v for _, fit in causes.hooks("fitted") for v in fit(self, case, inputs, base)]

    def pairs(self, discrete: list[Variant], computed: list[Variant]) -> None:
        """Stage 2: every two discrete changes, and each discrete change with the computed variants
        that came closest alone (a second change rarely rescues a variant that was far off; this
        keeps a pair search to a few dozen evaluations) and with a fitted value."""
        # variants that reorder the data (a layout misread, another mode, other groups) are never
        # close by score and compete among themselves, so that they push no numeric variant out
        numeric = [v for v in computed if not v.extra.get("reorders")]
        reorders = [v for v in computed if v.extra.get("reorders")]
        closest = sorted(numeric, key=lambda v: v.score)[:6] + sorted(reorders, key=lambda v: v.score)[:2]
        for a in discrete:
            for b in discrete + closest:
                if a is not b and (b in closest or discrete.index(b) > discrete.index(a)):
                    pv = pair(a, b)
                    if pv is not None:
                        self.evaluate(pv)
            case = self.case.with_params(**a.changes) if a.changes else self.case
            inputs = {k: val for k, val in self.inputs.items() if k not in a.drop}
            for e in self.fitted(case, inputs, a):
                self.evaluate(e)

    def best(self, tiers, odd=None):
        """The reproducing variant of smallest residual among ``tiers``; ``odd``: only those with
        (True) or without (False) an eps that is no common value."""
        ok = [v for v in self.evaluated if v.ok and v.tier in tiers
              and (odd is None or bool(v.extra.get("odd_eps")) == odd)]
        if not ok:
            return None
        return min(ok, key=lambda v: (v.extra.get("fit", math.inf), v.score, not v.extra.get("underflow")))

    def tied(self, hit: Variant) -> list[Variant]:
        """Variants of other causes that reproduce the outputs about as closely as ``hit`` (see
        TIE_FACTOR), one per set of causes, simplest first. Stages 3 and 4 are reached only when
        nothing else reproduces, and an eps that is no common value can mimic any per-slice factor:
        neither ties."""
        if hit.tier >= 3:
            return []
        size, named = len(hit.causes) or 1, frozenset(hit.causes or (hit.cause,))
        limit = TIE_FACTOR * hit.extra.get("fit", math.inf) + TIE_FLOOR
        out, seen = [], {named}
        for v in sorted(self.evaluated, key=simplicity):
            names = frozenset(v.causes or (v.cause,))
            if (v.ok and v.tier < 3 and (len(v.causes) or 1) == size and not v.extra.get("odd_eps")
                    and names not in seen and v.extra.get("fit", math.inf) <= limit):
                seen.add(names)
                out.append(v)
        return out

    def bound_based(self) -> Variant | None:
        """Stage 3, alone or after one discrete change that accounts for the other failing outputs."""
        checks = causes.hooks("implied")
        for base in [None] + [v for v in self.variants("discrete") if v.fn is None]:
            if base is None:
                case, inputs, todo = self.case, self.inputs, list(self.bad)
                residual: dict[str, float] = {}
            else:
                case = self.case.with_params(**base.changes) if base.changes else self.case
                inputs = {k: val for k, val in self.inputs.items() if k not in base.drop}
                residual, todo = self.residual_after(case, inputs)
                # the change must fix some failing output and leave the bound analysis the rest
                if not todo or len(todo) == len(self.bad) or any(n not in self.bad for n in todo):
                    continue
            for v in bounds.implied(self, case, inputs, todo, checks):
                v.residual = {**{n: r for n, r in residual.items() if n not in todo}, **v.residual}
                v.score = max(v.residual.values(), default=0.0)
                if base is not None:
                    v.params = {**v.params, **base.params}
                    v.text = (lambda ex, w, t=v.text, b=base: f"{t}; and {b.detail(ex)}")
                    v.causes = (v.cause, base.cause)
                self.evaluated.append(v)
                return v
        return None

    def residual_after(self, case, inputs) -> tuple[dict, list]:
        """The oracle of a changed case against the outputs: residual per output, and those still off."""
        ref = oracle.reference(case, inputs)
        residual, todo = {}, []
        for n in self.names:
            residual[n], ok = ratio(ref[n], self.actual[n], **tol(self.tolerance, n)) if n in ref else (math.inf, False)
            if not ok:
                todo.append(n)
        return residual, todo

    # ---- the answer
    def report(self, hit: Variant | None) -> dict:
        if hit is not None:
            # A tie is reported, never resolved silently: the simplest member is the cause, the
            # others' causes are ``also`` and named in the detail, and their evidence leads the
            # candidates.
            group = sorted([hit, *self.tied(hit)], key=simplicity)
            hit = group[0]
            detail = hit.detail(self) + "".join(
                f"; tie: {' + '.join(v.causes or (v.cause,))} reproduce{'' if v.causes else 's'} it as well"
                for v in group[1:])
            candidates = self.candidates(hit, first=group[1:])
            out = {"cause": hit.cause, "detail": detail, "params": clean(hit.params),
                   "outputs": list(self.bad), "residual": clean(hit.residual), "candidates": candidates}
            if hit.causes:
                out["causes"] = list(hit.causes)
            named = set(hit.causes or (hit.cause,))
            also = [c for c in dict.fromkeys(c for v in group[1:] for c in (v.causes or (v.cause,))) if c not in named]
            if also:
                out["also"] = also
            return out
        candidates = self.candidates(hit)
        # Nothing reproduces every output: the variant that reproduces the most failing ones, if any.
        partial = [v for v in self.evaluated if any(v.residual.get(n, math.inf) <= 1 for n in self.bad)
                   and all(v.residual.get(n, math.inf) <= 1 for n in self.names if n not in self.bad)]
        stats = diagnostic.stats(self)
        if partial:
            return self.partial(min(partial, key=lambda v: (-sum(v.residual[n] <= 1 for n in self.bad), v.tier,
                                                            v.score)),
                                candidates, stats)
        return {"cause": "unexplained", "detail": diagnostic.unexplained_text(self, stats), "params": {},
                "outputs": list(self.bad), "residual": {}, "candidates": candidates, "stats": stats}

    def candidates(self, hit: Variant | None, first: tuple[Variant, ...] | list[Variant] = ()) -> list[dict]:
        """The five closest other variants: ``first`` (those tied with ``hit``), then the
        reproducing ones, then the rest."""
        ranked = [*first, *sorted((v for v in self.evaluated if not any(v is f for f in first)),
                                  key=lambda v: (not v.ok, v.tier if v.ok else 0, v.score))]
        out: list[dict] = []
        for v in ranked:
            if len(out) == 5:
                break
            if hit is not None and v is hit:
                continue
            out.append({"cause": v.cause, "detail": v.detail(self), "params": clean(v.params),
                        "residual": clean(v.residual)})
        return out

    def partial(self, v: Variant, candidates: list, stats: dict) -> dict:
        """A variant that reproduces some failing outputs, the others named unexplained."""
        got = [n for n in self.bad if v.residual[n] <= 1]
        rest = [n for n in self.bad if n not in got]
        out = {"cause": v.cause,
               "detail": f"{v.detail(self)} (explains {', '.join(got)}; {', '.join(rest)} unexplained)",
               "params": clean(v.params), "outputs": got, "unexplained_outputs": rest,
               "residual": clean(v.residual), "candidates": [c for c in candidates if c["cause"] != v.cause or
                                                            c["params"] != clean(v.params)][:5],
               "stats": {n: stats[n] for n in rest}}
        if v.causes:
            out["causes"] = list(v.causes)
        return out

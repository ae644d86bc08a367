"""Running one (case, adapter) pair and judging it: the heart of every pytest item.

>>> from normconf.cases import load_text
>>> from adapters.numpy_adapter import NumpyAdapter
>>> case = load_text("cases: [{id: a, op: instance_norm, input: {shape: [2, 3, 4]}}]", "d.yaml")[0][0]
>>> evaluate(case, NumpyAdapter()).status
<Status.PASS: 'pass'>
"""
from __future__ import annotations

import copy
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import oracle
from .adapter import Adapter, Unsupported
from .cases import Case, CaseError
from .compare import compare, decimals, default_tolerance, fmt
from .explain import explain
from .inputs import generate
from .known import Known
from .margin import correctly_rounded, verdict_margin
from .records import Explanation, Metrics, Result, Status, as_ratio


@dataclass
class CaseContext:
    """Everything computed once per case, shared by all its adapters."""

    case: Case
    inputs: dict
    expected: dict
    condition: float
    tolerance: dict
    problem: str | None = None  # the oracle disagrees with the case's expect.values
    _variants: dict = field(default_factory=dict)
    nbytes: int = 0  # of the arrays held: inputs, expected, variants (the cache's budget)

    def variant(self, changes: dict) -> dict:
        """Oracle outputs with some parameters changed (a native convention), cached unless large
        (a 1 GiB case's variant is 2 GiB: recomputed for each adapter that needs it, in seconds,
        rather than held for the rest of the case)."""
        key = tuple(sorted((k, repr(v)) for k, v in changes.items()))
        if key in self._variants:
            return self._variants[key]
        outputs = oracle.reference(self.case.with_params(**changes), self.inputs)
        size = _nbytes(outputs)
        if size <= VARIANT_CACHE_BYTES:
            self._variants[key] = outputs
            self.nbytes += size
            if _CONTEXTS.get((self.case.file, self.case.id)) is self:
                _HELD[0] += size
        return outputs


#: Oracle variants larger than this are not kept (see :meth:`CaseContext.variant`).
VARIANT_CACHE_BYTES = 64 << 20
_CONTEXTS: dict[tuple[str, str], CaseContext] = {}  # oldest first
_HELD = [0]  # bytes of the contexts in _CONTEXTS, counted as they come and go, not summed at every item
#: Bytes of arrays the context cache may hold; beyond it the least recently used contexts are dropped
#: (never the one in use). A case's items run one after the other (serially, and within an xdist
#: group), so this costs no recomputation, and 1 GiB inputs do not pile up case after case.
CONTEXT_BUDGET = 1 << 30


def _nbytes(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


def _evict(keep: tuple[str, str] | None, incoming: int = 0) -> None:
    """Drop the least recently used contexts (never ``keep``) until the cache and ``incoming``
    bytes fit in the budget."""
    if _HELD[0] + incoming <= CONTEXT_BUDGET:
        return
    for k in list(_CONTEXTS):
        if _HELD[0] + incoming <= CONTEXT_BUDGET:
            break
        if k != keep:
            _HELD[0] -= _CONTEXTS.pop(k).nbytes


def _drop(key: tuple[str, str]) -> CaseContext | None:
    ctx = _CONTEXTS.pop(key, None)
    if ctx is not None:
        _HELD[0] -= ctx.nbytes
    return ctx


def context(case: Case) -> CaseContext:
    """Inputs, oracle outputs and tolerances of ``case``, computed once per process (while they fit
    in :data:`CONTEXT_BUDGET`)."""
    key = (case.file, case.id)
    ctx = _CONTEXTS.pop(key, None)
    if ctx is not None:
        _CONTEXTS[key] = ctx  # most recently used last
    if ctx is None or ctx.case is not case and ctx.case.raw != case.raw:
        _drop(key)
        # x (and its steps) and y in float64: make room before drawing, not after
        _evict(keep=None, incoming=8 * int(np.prod(case.shape)) * (2 + case.params.get("steps", 1)))
        try:
            inputs = generate(case)
        except CaseError as exc:  # found only when drawing (values that overflow the dtype): every
            ctx = _CONTEXTS[key] = CaseContext(case, {}, {}, 1.0, {}, problem=str(exc))  # item says so
            return ctx  # (it holds no array)
        expected = oracle.reference(case, inputs)
        kappa = oracle.condition(case, inputs)
        tolerance = {name: dict(case.tolerance) if case.tolerance else default_tolerance(case.dtype, kappa, name)
                     for name in expected}
        for name in tolerance:
            tolerance[name].setdefault("atol", 0.0)
            tolerance[name].setdefault("rtol", 0.0)
        ctx = CaseContext(case, inputs, expected, kappa, tolerance)
        ctx.nbytes = _nbytes([inputs, expected])
        ctx.problem = _check_values(case, expected, tolerance)
        _CONTEXTS[key] = ctx
        _HELD[0] += ctx.nbytes
    _evict(keep=key)
    return ctx


class _DefaultsView:
    """A case context seen through an adapter's framework defaults: the oracle with those parameters."""

    def __init__(self, ctx: CaseContext, defaults: dict):
        self._ctx, self._defaults = ctx, defaults
        self.inputs, self.tolerance, self.problem = ctx.inputs, ctx.tolerance, ctx.problem
        self.expected = ctx.variant(defaults)

    def variant(self, changes: dict) -> dict:
        return self._ctx.variant({**self._defaults, **changes})


def forget(case: Case) -> None:
    _drop((case.file, case.id))


def values_tolerance(case: Case, name: str, tolerance: dict) -> dict:
    """Literal expected values are checked to the precision they are written in."""
    quantum = 0.5 * 10.0 ** -decimals(case.expect_values[name])
    return {"atol": max(tolerance["atol"], quantum), "rtol": tolerance["rtol"]}


def _check_values(case: Case, expected: dict, tolerance: dict) -> str | None:
    for name in case.expect_values:
        want = np.asarray(case.expect_values[name], dtype=np.float64)
        tol = values_tolerance(case, name, tolerance[name])
        try:
            m = compare(want, expected[name], "float64", **tol)
        except ValueError as exc:
            return f"expect.values.{name}: {exc}"
        if not m.ok:
            return (f"the oracle disagrees with expect.values.{name}: max |diff| {m.max_abs:.3g} at "
                    f"{m.worst_index} (oracle {m.actual_at_worst!r}, literal {m.expected_at_worst!r})")
    return None


def record(case: Case, adapter: str, **fields) -> Result:
    """The :class:`~normconf.records.Result` of ``case`` on ``adapter`` before it is judged (``fields``
    set some of it: ``status=Status.ERROR, reason=...`` for an item that could not run)."""
    return Result(case=case.key, adapter=adapter, op=case.op, dtype=case.dtype, layout=case.layout,
                  shape=list(case.shape), tags=list(case.tags), **fields)


def evaluate(case: Case, adapter: Adapter, known: Sequence[Known] = ()) -> Result:
    """Run ``adapter`` on ``case`` and judge it. Returns its :class:`~normconf.records.Result`, with
    ``arrays`` (the adapter's outputs, canonical order), which is not serialized."""
    result = record(case, adapter.name)
    try:  # an adapter's hooks are its code too: an exception there is this item's error, nothing more
        reason = adapter.available()
        if reason:
            return result.judged(Status.UNAVAILABLE, reason)
        reason = adapter.unsupported(case)
    except Exception as exc:
        return _hook_error(result, adapter, exc)
    if reason:
        return result.judged(Status.UNSUPPORTED, reason)
    base = context(case)
    if base.problem:
        return result.judged(Status.ERROR, f"case error: {base.problem}")
    # framework_defaults: the adapter runs with its framework's default arguments, judged against the
    # oracle with those (a porting view: the differences between frameworks show pairwise)
    defaults = adapter.defaults_for(case)
    ctx: CaseContext | _DefaultsView = base
    if defaults:
        result.defaults = defaults
        ctx = _DefaultsView(base, defaults)
        case = case.with_params(**defaults)
    start = time.perf_counter()
    try:
        actual = adapter.run(case, {k: _readonly(v) for k, v in ctx.inputs.items()})
    except Unsupported as exc:  # the framework refused the case on seeing it (its message says why)
        result.seconds = time.perf_counter() - start
        return result.judged(Status.UNSUPPORTED, str(exc) or f"{adapter.name} refused the case")
    except Exception as exc:
        result.seconds = time.perf_counter() - start
        result.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3))
        return result.judged(Status.ERROR, f"{adapter.name} raised {type(exc).__name__}: {exc}")
    result.seconds = time.perf_counter() - start

    try:
        missing = adapter.unsupported_outputs(case)
    except Exception as exc:
        return _hook_error(result, adapter, exc)
    wanted = [name for name in case.outputs if name not in missing]
    result.unsupported_outputs = {k: v for k, v in missing.items() if k in case.outputs}
    if not wanted:
        return result.judged(Status.UNSUPPORTED, "; ".join(f"{k}: {v}" for k, v in missing.items()))
    for name in wanted:
        if name not in actual:
            return result.judged(Status.ERROR, f"{adapter.name} returned no {name!r} (got {sorted(actual)})")
        result.arrays[name] = np.asarray(actual[name])

    native = {k: v for k, v in adapter.native_for(case).items() if case.params.get(k) != v}
    variant = ctx.variant(native) if native else None
    entries = [k for k in known if k.matches(case.key, adapter.name, case.dtype)]
    result.native = native
    failed, excused, stale = [], [], []
    native_matters: dict[str, bool] = {}  # per output: whether its verdict rests on the native comparison
    rounded: set[str] = set()  # comparisons whose output is its reference correctly rounded (margin.correctly_rounded)
    for name in wanted:
        got = result.arrays[name]
        try:
            metrics = compare(ctx.expected[name], got, case.dtype, **ctx.tolerance[name])
        except ValueError as exc:
            return result.judged(Status.ERROR, f"output {name!r}: {exc}")
        ok = metrics.ok
        if correctly_rounded(metrics, case.dtype):
            rounded.add(name)
        if name in case.expect_values:
            vs = compare(np.asarray(case.expect_values[name]), got, case.dtype,
                         **values_tolerance(case, name, ctx.tolerance[name]))
            metrics.vs_values = vs.against_values()
            ok = ok and vs.ok
        if variant is not None:
            as_native = compare(variant[name], got, case.dtype, **ctx.tolerance[name])
            native_differs = not compare(variant[name], ctx.expected[name], case.dtype, **ctx.tolerance[name]).ok
            metrics.vs_native = as_native.against_native()
            if correctly_rounded(as_native, case.dtype):
                rounded.add(f"{name} (native)")
            # off and excused by the convention, or agreeing where the convention would not: either
            # way the verdict also rests on the comparison with the oracle under the convention
            native_matters[name] = (not ok and as_native.ok) or (ok and native_differs)
            if not ok and as_native.ok:
                excused.append((name, "native", _native_text(adapter, native)))
            elif ok and native_differs and not as_native.ok:
                stale.append((name, f"{adapter.name} declares native {native} but its {name!r} matches the "
                                    f"case's own convention"))
        result.outputs[name] = metrics
        if ok or any(e[0] == name for e in excused):
            continue
        entry = next((k for k in entries if k.covers(name)), None)
        if entry is not None:
            excused.append((name, "known", f"{entry.label()}: {entry.reason} [{entry.cause}] {entry.link}"))
            result.known = _known_record(entry, "mismatch")
        else:
            failed.append(name)
    for entry in entries:
        covered = [n for n in wanted if entry.covers(n)]
        if covered and not any(e[0] in covered and e[1] == "known" for e in excused) and not failed:
            if entry.platform_dependent:  # a pass is accepted too: it says which one happened here
                result.known = result.known or _known_record(entry, "agrees")
                continue
            stale.append((",".join(covered), f"{entry.label()} expects a mismatch in {covered}, "
                                             f"but they agree: the entry is stale"))
            result.known = _known_record(entry, "agrees")
    if failed or excused:
        # why: the single change of convention that makes the oracle reproduce the output
        start = time.perf_counter()
        result.explanation = _explain(case, ctx, result.arrays, result.outputs)
        result.explain_seconds = time.perf_counter() - start
    if failed:
        result.judged(Status.FAIL, _fail_text(failed, result.outputs))
    elif stale:
        result.judged(Status.STALE, "; ".join(s[1] for s in stale))
    elif excused:
        reason = "; ".join(dict.fromkeys(f"{e[0]}: {e[2]}" for e in excused))
        declared = {NATIVE_CAUSE.get(k, k) for k in native} | {k.cause for k in entries}
        found = result.explanation.named_causes() if result.explanation else set()
        if declared and not found & declared:
            result.explanation_mismatch = {"declared": sorted(declared), "found": sorted(found) or ["unexplained"]}
            reason += (f" [the explanation finds {', '.join(sorted(found)) or 'no cause'}, "
                       f"not the declared {', '.join(sorted(declared))}]")
        result.judged(Status.EXPECTED, reason)
    else:
        result.judged(Status.PASS)
        if result.known:
            k = result.known
            result.reason = (f"agrees here; {k['file']} #{k['index']} is platform_dependent: "
                             f"its mismatch ([{k['cause']}]) is seen on other machines and accepted too")
    assert result.status is not None  # every branch above judged it
    margin = verdict_margin(result.status, result.outputs, failed, excused, native_matters, entries,
                            result.explanation, frozenset(rounded))
    result.margin, result.margin_output = margin["margin"], margin["margin_output"]
    result.verdict, result.strict = margin["verdict"], margin["strict"]
    return result


def _known_record(entry: Known, observed: str) -> dict:
    """The ``known`` field of a result: the entry, whether it is platform dependent, and whether the
    mismatch it describes was seen here (``observed``: "mismatch" or "agrees")."""
    return {"index": entry.index, "file": entry.file, "cause": entry.cause, "reason": entry.reason, "link": entry.link,
            "platform_dependent": entry.platform_dependent, "observed": observed}


def _hook_error(result: Result, adapter: Adapter, exc: Exception) -> Result:
    """The error record of an item whose adapter raised outside ``run`` (in ``available``,
    ``unsupported`` or ``unsupported_outputs``), with the last frames, like an exception in ``run``."""
    result.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3))
    frames = traceback.extract_tb(exc.__traceback__)  # [0] is evaluate(), [1] the hook it called
    hook = frames[1].name if len(frames) > 1 else "a hook"
    return result.judged(Status.ERROR, f"{adapter.name} raised {type(exc).__name__} in {hook}(): {exc}")


#: Inputs larger than this are explained on a slice (see :func:`_explain`).
EXPLAIN_ELEMENTS = 1 << 20


def _explain(case: Case, ctx, arrays: dict, metrics: dict[str, Metrics]) -> Explanation | None:
    """:func:`normconf.explain.explain` of the mismatch. A large case is explained on a slice along
    an axis its statistics do not reduce over (about ``EXPLAIN_ELEMENTS`` elements: a few images
    for instance/group/layer norm, a few channels for batch norm), starting at the worst element of
    the output furthest out of tolerance: the same math on the same values, at a thousandth of the
    cost of fitting conventions to 1 GiB. The explanation says which slice it was found on.

    The explainer answers with a mapping (numbers possibly as JSON strings): it becomes an
    :class:`~normconf.records.Explanation` here."""
    x = ctx.inputs["x"]
    axis = oracle.independent_axis(case)
    if x.size <= EXPLAIN_ELEMENTS or axis is None:
        return _explanation(explain(case, ctx.inputs, ctx.expected, arrays, ctx.tolerance))
    k = max(1, EXPLAIN_ELEMENTS * x.shape[axis] // x.size)
    start = 0
    worst = max(metrics.values(), key=lambda m: as_ratio(m.ratio), default=None)
    if worst is not None and worst.worst_index:
        index = worst.worst_index
        at = index[axis] if len(index) == x.ndim else index[0] if axis == 1 else 0
        start = max(0, min(at, x.shape[axis] - k))  # from the worst element on
    part = slice(start, start + k)

    def cut(outputs):
        return {n: oracle.cut_along(v, axis, part) if v.ndim == x.ndim else (v[part] if axis == 1 else v)
                for n, v in outputs.items()}

    sliced = copy.copy(case)
    sliced.shape = tuple(k if d == axis else s for d, s in enumerate(case.shape))
    found = _explanation(explain(sliced, oracle.sliced_inputs(ctx.inputs, axis, part, x.ndim), cut(ctx.expected),
                                 cut(arrays), ctx.tolerance))
    if found:
        found.slice = {"axis": axis, "indices": [start, start + k], "of": int(x.shape[axis])}
        found.detail = (f"{found.detail} (found on indices {start}..{start + k - 1} of axis {axis}, "
                        f"of {x.shape[axis]}, from the worst element on)")
    return found


def _explanation(found) -> Explanation | None:
    """The explainer's answer as a record (it may already be one)."""
    if found is None or isinstance(found, Explanation):
        return found
    return Explanation.from_json(found)


# The cause id a declared native convention amounts to (docs/adapters.md, "Native conventions and their causes").
NATIVE_CAUSE = {"variance": "variance_divisor", "running_variance": "running_variance_estimator",
                "eps": "eps_value", "momentum": "momentum_convention", "method": "per_image_std",
                "weight_offset": "weight_offset", "cast": "cast_order"}


def _native_text(adapter: Adapter, native: dict) -> str:
    wanted = ", ".join(f"{k}={v!r}" for k, v in native.items())
    return f"{adapter.name} fixes {wanted} (declared native convention; the oracle with it agrees)"


def _fail_text(names, outputs: dict[str, Metrics]) -> str:
    parts = []
    for name in names:
        m = outputs[name]
        parts.append(f"{name}: max |diff| {fmt(m.max_abs)} > tolerance at {m.worst_index} "
                     f"({m.bad} element(s) out, {m.nan_actual} NaN)")
    return "; ".join(parts)


def _readonly(value):
    if isinstance(value, np.ndarray):
        value = value.view()
        value.flags.writeable = False
    elif isinstance(value, list):
        value = [_readonly(v) for v in value]
    return value

"""Typed records of a run: a result's status, its per-output metrics, its explanation, the result.

The engine computes with floats (``inf`` and ``nan`` included) and builds these records; JSON, which
has no such numbers, gets them as the strings ``"inf"``, ``"-inf"`` and ``"nan"``, written by
:meth:`Result.to_json` (the edge) and read back by :meth:`Result.from_json` (the report, merge and
HTML readers). ``Result.from_json(r.to_json()).to_json() == r.to_json()`` for every record.

>>> m = Metrics(max_abs=math.inf, max_rel=math.inf, max_ulp=math.inf, worst_index=[1],
...             expected_at_worst=1.0, actual_at_worst=math.nan, ratio=math.inf, bad=1,
...             nan_expected=0, nan_actual=1, atol=1e-6, rtol=1e-6, ok=False)
>>> m.to_json()["max_abs"], m.to_json()["actual_at_worst"], Metrics.from_json(m.to_json()).ratio
('inf', 'nan', inf)
>>> Status.EXPECTED.outcome, Status("stale").is_failure
('xfailed', True)

Records read like the JSON record they become, too (``result["status"]``, ``metrics["ratio"]``,
``result.get("explanation")``), with the typed values: code written against the dict records keeps
working; attribute access is the typed way.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from enum import Enum
from typing import Any, ClassVar, overload

# ----------------------------------------------------------------------------- numbers in JSON

#: How JSON stores the floats it has no literal for (the strings Python's ``str(float)`` writes).
NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode_number(value):
    """A float for JSON: non-finite values as ``"inf"``, ``"-inf"`` or ``"nan"``; NumPy scalars as
    Python numbers; anything else (ints, None, text) as it is.

    >>> encode_number(float("inf")), encode_number(float("nan")), encode_number(0.5), encode_number(None)
    ('inf', 'nan', 0.5, None)
    """
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):  # a NumPy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    return value


def decode_number(value):
    """The inverse of :func:`encode_number`: ``"inf"``, ``"-inf"``, ``"nan"`` as floats, everything
    else as it is.

    >>> decode_number("inf"), decode_number("-inf"), decode_number(2), decode_number("unbiased")
    (inf, -inf, 2, 'unbiased')
    """
    if isinstance(value, str) and value in NONFINITE:
        return NONFINITE[value]
    return value


def as_ratio(value) -> float:
    """A distance (error / tolerance, max |diff|) as a float to rank by: NaN, where a number was due,
    is infinitely far; the JSON strings are decoded; None (no comparison) is -1, below any distance.

    >>> as_ratio(0.5), as_ratio("nan"), as_ratio(float("nan")), as_ratio(None)
    (0.5, inf, inf, -1.0)
    """
    value = decode_number(value)
    if value is None:
        return -1.0
    value = float(value)
    return math.inf if value != value else value


def encode_tree(value):
    """``value`` (mappings, lists, records, NumPy values) with every number as :func:`encode_number`
    writes it: what JSON can store."""
    if isinstance(value, _Record):
        return value.to_json()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict) or _is_mapping(value):
        return {k: encode_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_tree(v) for v in value]
    if hasattr(value, "tolist") and hasattr(value, "ndim") and value.ndim > 0:  # a NumPy array
        return encode_tree(value.tolist())
    return encode_number(value)


def _is_mapping(value) -> bool:
    from collections.abc import Mapping

    return isinstance(value, Mapping)


@overload
def _decode_values(mapping: None) -> None: ...
@overload
def _decode_values(mapping: Mapping) -> dict: ...
def _decode_values(mapping: Mapping | None) -> dict | None:
    """A mapping of numbers as JSON stores them (residuals, parameters): the strings decoded."""
    return None if mapping is None else {k: decode_number(v) for k, v in mapping.items()}


# ----------------------------------------------------------------------------- status

class Status(str, Enum):
    """The verdict of one (case, adapter) item; the member is its JSON string (``Status.PASS ==
    "pass"``). :attr:`outcome` is the pytest outcome it is reported as."""

    PASS = "pass"  # every output within tolerance of the oracle (and of expect.values)
    FAIL = "fail"  # an output is off and nothing declared explains it
    EXPECTED = "expected"  # off, and excused by a native convention or a known discrepancy
    STALE = "stale"  # agrees where a native convention or a known discrepancy says it should not
    UNSUPPORTED = "unsupported"  # the framework has no way to run the case
    UNAVAILABLE = "unavailable"  # the adapter cannot run here (framework missing, no GPU)
    ERROR = "error"  # the adapter raised, or the case could not be drawn

    def __str__(self) -> str:  # the JSON string in f-strings and str(), on every Python version
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __hash__(self) -> int:  # Enum hashes the member's name: a member must find its string's dict entry
        return hash(self.value)

    @property
    def outcome(self) -> str:
        """The pytest outcome: ``passed``, ``failed``, ``xfailed`` (strict: an agreeing output is
        ``stale``, which fails) or ``skipped``."""
        return _OUTCOMES[self]

    @property
    def is_judged(self) -> bool:
        """Compared with the oracle: a verdict with a margin (pass, fail, expected, stale)."""
        return self in (Status.PASS, Status.FAIL, Status.EXPECTED, Status.STALE)

    @property
    def is_failure(self) -> bool:
        """Fails the run (fail, stale, error): the item's outcome is ``failed``."""
        return _OUTCOMES[self] == "failed"

    @property
    def is_strict(self) -> bool:
        """A strict expectation of a mismatch (expected, an xfail whose agreeing output would be
        ``stale``): the status that a known entry or a native convention turns a mismatch into."""
        return self is Status.EXPECTED

    @property
    def is_off(self) -> bool:
        """An output disagrees with the case's own convention (fail, expected, stale): a
        discrepancy worth an explanation and a line among the largest ones."""
        return self in (Status.FAIL, Status.EXPECTED, Status.STALE)

    @property
    def ran(self) -> bool:
        """The adapter was asked to run (not unsupported or unavailable): the case's inputs exist."""
        return self not in (Status.UNSUPPORTED, Status.UNAVAILABLE)


_OUTCOMES = {Status.PASS: "passed", Status.FAIL: "failed", Status.EXPECTED: "xfailed", Status.STALE: "failed",
             Status.UNSUPPORTED: "skipped", Status.UNAVAILABLE: "skipped", Status.ERROR: "failed"}
#: Every status, in report order (``conformance.json``'s ``status`` values).
STATUSES = tuple(s.value for s in Status)


# ----------------------------------------------------------------------------- records

class _Record:
    """What the records share: JSON in field order (optional fields only when set), and read
    access by JSON key (``record["ratio"]``) for code written against the dict records."""

    __slots__ = ()
    # What @dataclass gives every subclass; declared so that the type checker knows a record is one.
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    #: Fields always written to JSON (None included); the others only when not None.
    ALWAYS: ClassVar[tuple[str, ...]] = ()
    #: Fields never written (arrays that stay in memory).
    HIDDEN: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict:
        """The JSON form: the fields in order, numbers encoded (:func:`encode_number`)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in self.HIDDEN or (value is None and f.name not in self.ALWAYS):
                continue
            out[f.name] = encode_tree(value)
        return out

    @classmethod
    def _check_keys(cls, data, what: str) -> None:
        if not isinstance(data, dict):
            raise ValueError(f"{what}: found {type(data).__name__}; allowed: a JSON object")
        known = [f.name for f in fields(cls) if f.name not in cls.HIDDEN]
        unknown = [k for k in data if k not in known]
        if unknown:
            raise ValueError(f"{what}: key {unknown[0]!r} found; allowed: {', '.join(known)}")
        missing = [k for k in cls.ALWAYS if k not in data]
        if missing:
            raise ValueError(f"{what}: key {missing[0]!r} missing; required: {', '.join(cls.ALWAYS)}")

    def __eq__(self, other) -> bool:
        """Equal when they write the same JSON: a NaN metric equals a NaN metric (``arrays`` aside)."""
        if type(other) is not type(self):
            return NotImplemented
        return self.to_json() == other.to_json()

    # mutable: unhashable, the data model's way, which mypy takes for a wrong override of object.__hash__
    __hash__ = None  # type: ignore[assignment]

    def __getitem__(self, key: str):
        if key in self:
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default=None):
        return getattr(self, key) if key in self else default

    def __contains__(self, key) -> bool:
        """Whether the JSON record has ``key`` (an optional field that is not set has not)."""
        if not isinstance(key, str) or key not in self.__dataclass_fields__:
            return False
        return key in self.ALWAYS or key in self.HIDDEN or getattr(self, key) is not None


@dataclass(slots=True, eq=False)
class Comparison(_Record):
    """An output compared with a second reference: the case's literal ``expect.values``
    (``vs_values``, with ``worst_index`` and ``atol``) or the oracle under a declared native
    convention (``vs_native``)."""

    max_abs: float
    worst_index: list[int] | None = None
    atol: float | None = None
    ratio: float = 0.0
    ok: bool = True

    ALWAYS: ClassVar[tuple[str, ...]] = ("max_abs", "ratio", "ok")

    @classmethod
    def from_json(cls, data: dict) -> Comparison:
        cls._check_keys(data, "comparison")
        return cls(max_abs=decode_number(data["max_abs"]), worst_index=data.get("worst_index"),
                   atol=data.get("atol"), ratio=decode_number(data["ratio"]), ok=data["ok"])


@dataclass(slots=True, eq=False)
class Metrics(_Record):
    """One output of an adapter against the oracle (:func:`normconf.compare.compare`).

    ``max_abs``, ``max_rel``, ``max_ulp``: the largest differences; ``ratio``: the largest error /
    tolerance (> 1 is out); ``worst_index``: the element furthest out of tolerance, with
    ``expected_at_worst`` and ``actual_at_worst`` (None for an empty output); ``bad``: how many
    elements are out; ``atol``/``rtol``: the tolerance in the output's units; ``ok``: no element
    out. Non-finite values are floats here and strings in JSON."""

    max_abs: float
    max_rel: float
    max_ulp: float
    worst_index: list[int]
    expected_at_worst: float | None
    actual_at_worst: float | None
    ratio: float
    bad: int
    nan_expected: int
    nan_actual: int
    atol: float
    rtol: float
    ok: bool
    vs_values: Comparison | None = None
    vs_native: Comparison | None = None

    ALWAYS: ClassVar[tuple[str, ...]] = ("max_abs", "max_rel", "max_ulp", "worst_index", "expected_at_worst",
                                         "actual_at_worst", "ratio", "bad", "nan_expected", "nan_actual",
                                         "atol", "rtol", "ok")

    def against_values(self) -> Comparison:
        """These metrics as the ``vs_values`` of an output compared with ``expect.values``."""
        return Comparison(self.max_abs, self.worst_index, self.atol, self.ratio, self.ok)

    def against_native(self) -> Comparison:
        """These metrics as the ``vs_native`` of an output compared with the oracle under a native convention."""
        return Comparison(self.max_abs, ratio=self.ratio, ok=self.ok)

    @classmethod
    def from_json(cls, data: dict) -> Metrics:
        cls._check_keys(data, "metrics")
        kw = {k: decode_number(data[k]) for k in cls.ALWAYS}
        for k in ("vs_values", "vs_native"):
            kw[k] = Comparison.from_json(data[k]) if data.get(k) is not None else None
        return cls(**kw)


@dataclass(slots=True, eq=False)
class Explanation(_Record):
    """Why an adapter's outputs differ from the oracle: the single change of convention that
    reproduces them (``cause``, docs/causes.md), in words (``detail``) and numbers (``params``);
    ``residual``: per output, its error / tolerance against the oracle with that change;
    ``candidates``: the next best changes (Explanations of their own); ``causes``: the parts of a
    pair; ``also``: other single causes that reproduce the outputs as well; ``stats`` (when nothing
    does); ``slice``: where a large case was explained."""

    cause: str
    detail: str
    params: dict | None = None
    outputs: list[str] | None = None
    unexplained_outputs: list[str] | None = None
    residual: dict[str, float] | None = None
    candidates: list[Explanation] | None = None
    stats: dict[str, dict] | None = None
    causes: list[str] | None = None
    also: list[str] | None = None
    slice: dict | None = None

    ALWAYS: ClassVar[tuple[str, ...]] = ("cause", "detail")

    def named_causes(self) -> set[str]:
        """Every cause this explanation names: the main one, a pair's parts, the equally good
        alternatives (``"unexplained"`` is none)."""
        found = {self.cause, *(self.causes or ()), *(self.also or ())}
        return {c for c in found if c and c != "unexplained"}

    @classmethod
    def from_json(cls, data: dict) -> Explanation:
        """From the JSON form, or from the explainer's mapping (the same keys)."""
        cls._check_keys(data, "explanation")
        stats = data.get("stats")
        candidates = data.get("candidates")
        return cls(cause=data["cause"], detail=data["detail"], params=_decode_values(data.get("params")),
                   outputs=_list(data.get("outputs")), unexplained_outputs=_list(data.get("unexplained_outputs")),
                   residual=_decode_values(data.get("residual")),
                   candidates=None if candidates is None else [cls.from_json(c) for c in candidates],
                   stats=None if stats is None else {n: _decode_values(s) for n, s in stats.items()},
                   causes=_list(data.get("causes")), also=_list(data.get("also")), slice=data.get("slice"))


def _list(value):
    return None if value is None else list(value)


@dataclass(slots=True, eq=False)
class Result(_Record):
    """One (case, adapter) item: the record of ``conformance.json``'s ``results``, plus ``arrays``
    (the adapter's outputs, canonical order), which stays in memory.

    The fields up to ``strict`` are always in the JSON; the others only when set: ``defaults`` (a
    ``framework_defaults`` case: the defaults it ran with), ``traceback`` (an adapter's exception),
    ``unsupported_outputs``, ``explain_seconds``, ``explanation_mismatch`` (the declared cause is
    not the one found), ``has_arrays`` (the outputs were stored for the matrices), ``beyond_range``
    (fuzzing: exact values beyond the dtype's range), ``source`` (the file a merged record came
    from)."""

    case: str
    adapter: str
    op: str
    dtype: str
    layout: str
    shape: list[int]
    tags: list[str]
    status: Status | None = None
    reason: str | None = None
    outputs: dict[str, Metrics] = field(default_factory=dict)
    explanation: Explanation | None = None
    seconds: float = 0.0
    native: dict = field(default_factory=dict)
    known: dict | None = None
    margin: float | None = None
    margin_output: str | None = None
    verdict: str | None = None
    strict: bool | None = None
    defaults: dict | None = None
    traceback: str | None = None
    unsupported_outputs: dict[str, str] | None = None
    explain_seconds: float | None = None
    explanation_mismatch: dict | None = None
    has_arrays: bool | None = None
    beyond_range: bool | None = None
    source: str | None = None
    arrays: dict = field(default_factory=dict, repr=False, compare=False)

    ALWAYS: ClassVar[tuple[str, ...]] = ("case", "adapter", "op", "dtype", "layout", "shape", "tags", "status",
                                         "reason", "outputs", "explanation", "seconds", "native", "known",
                                         "margin", "margin_output", "verdict", "strict")
    HIDDEN: ClassVar[tuple[str, ...]] = ("arrays",)

    def __post_init__(self):
        if self.status is not None and not isinstance(self.status, Status):
            self.status = Status(self.status)

    @property
    def label(self) -> str:
        """``<case key>[<adapter>]``: the pytest item's name."""
        return f"{self.case}[{self.adapter}]"

    def judged(self, status: Status, reason: str | None = None) -> Result:
        """This result with its verdict set (returns itself, for ``return result.judged(...)``)."""
        self.status, self.reason = Status(status), reason
        return self

    def worst_ratio(self) -> float:
        """The largest error / tolerance over the outputs (NaN counts as infinitely far; 0 without outputs)."""
        return max((as_ratio(m.ratio) for m in self.outputs.values()), default=0.0)

    @classmethod
    def from_json(cls, data: dict) -> Result:
        """A result record as ``conformance.json`` (or a pytest item's user property) stores it; a
        key the schema does not know, or a missing one, is a ValueError naming it."""
        where = (f"result {data.get('case')}[{data.get('adapter')}]" if isinstance(data, dict)
                 else "result")
        cls._check_keys(data, where)
        try:
            status = None if data["status"] is None else Status(data["status"])
        except ValueError:
            raise ValueError(f"{where}: key 'status' found {data['status']!r}; allowed: "
                             f"{', '.join(STATUSES)}") from None
        kw = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        kw.update(status=status, margin=decode_number(data["margin"]))
        if not isinstance(data["outputs"], dict):
            raise ValueError(f"{where}: key 'outputs' found {type(data['outputs']).__name__}; "
                             f"allowed: a JSON object {{output name: metrics}}")
        kw["outputs"] = {}
        for name, value in data["outputs"].items():
            try:
                kw["outputs"][name] = Metrics.from_json(value)
            except ValueError as exc:
                raise ValueError(f"{where}: outputs.{name}: {exc}") from None
        try:
            kw["explanation"] = None if data["explanation"] is None else Explanation.from_json(data["explanation"])
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        return cls(**kw)

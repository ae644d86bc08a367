"""Case files: load, validate, merge ``defaults:``, expand ``matrix:``.

A case file is YAML read with ``yaml.safe_load`` only::

    defaults: {input: {dtype: float32}}
    cases:
      - id: small
        op: instance_norm
        input: {shape: [2, 3, 5, 5], generator: {dist: normal, mean: 0, std: 1, seed: 0}}
        params: {eps: 1.0e-5}

>>> cases, errors = load_text("cases: [{id: a, op: layer_norm, input: {shape: [2, 4]}}]", "demo.yaml")
>>> cases[0].key, cases[0].params["axes"], errors
('demo/a', [1], [])

Every problem is a :class:`CaseError` naming the file, the case, the key, what was found and
what is allowed; one bad case never stops the others from loading.
"""
from __future__ import annotations

import copy
import functools
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .yamlload import UNIQUE_KEYS, DuplicateKeyError, UniqueKeyLoader, check_unique_keys, duplicate_key_path, reset

OPS = ("instance_norm", "batch_norm", "layer_norm", "group_norm", "normalize", "channel_stats", "rms_norm")
DTYPES = ("float64", "float32", "float16", "bfloat16")
LAYOUTS = ("channels_first", "channels_last")
ID_RE = re.compile(r"^[a-z0-9_.-]+$")
CASE_KEYS = ("id", "description", "source", "op", "input", "params", "expect", "matrix", "tags")
INPUT_KEYS = ("shape", "layout", "dtype", "data", "generator")
GENERATOR_KEYS = {"normal": ("dist", "mean", "std", "seed"), "uniform": ("dist", "low", "high", "seed"),
                  "constant": ("dist", "value", "seed")}
DIVISORS = ("biased", "unbiased")
METHODS = ("pooled", "per_image_mean")
# rms_norm's rounding points in a half dtype: ``last`` normalizes and multiplies by the weight in
# float32 and casts once (Gemma, torch's F.rms_norm, Keras, Flax); ``before_weight`` casts the
# normalized x to the input dtype, then multiplies by the weight in that dtype (LLaMA).
CASTS = ("last", "before_weight")
# rms_norm's eps: null is the machine epsilon of the input dtype (torch.finfo(dtype).eps, what
# torch's F.rms_norm documents for eps=None).
MACHINE_EPS = {"float64": 2.0 ** -52, "float32": 2.0 ** -23, "float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
GENERATOR_DEFAULTS = {"normal": {"mean": 0.0, "std": 1.0}, "uniform": {"low": 0.0, "high": 1.0},
                      "constant": {"value": 0.0}}
INPUT_DEFAULTS = {"layout": "channels_first", "dtype": "float32", "generator": {"dist": "normal"}}

# Which parameters each op takes, and their canonical defaults (docs/case-format.md). ``REQUIRED`` has no default.
REQUIRED = object()
# grad: also the gradients of sum(y * grad_output) (every op but channel_stats); grad_output: the
# upstream gradient, shaped like y, {generator: ...} or literal (None: normal(0, 1) with seed 1000).
_GRAD = {"grad": False, "grad_output": None}
_AFFINE = {"eps": 1.0e-5, "variance": "biased", "weight": None, "bias": None, "framework_defaults": False, **_GRAD}
_RUNNING = {"momentum": 0.1, "running_mean": None, "running_var": None, "running_variance": "biased", "steps": 1}
PARAMS: dict[str, dict[str, Any]] = {
    # track_running_stats: PyTorch's InstanceNorm*d(track_running_stats=True) in training mode; the
    # _RUNNING keys exist only then (they are dropped from a case that does not track).
    "instance_norm": dict(_AFFINE, track_running_stats=False, **_RUNNING),
    "layer_norm": dict(_AFFINE, axes=None),
    "group_norm": dict(_AFFINE, groups=REQUIRED),
    # eval_after: train `steps` steps, then y is one eval pass over the last input with the updated statistics
    "batch_norm": dict(_AFFINE, training=True, eval_after=False, **_RUNNING),
    "normalize": {"mean": REQUIRED, "std": REQUIRED, **_GRAD},
    "channel_stats": {"variance": "biased", "method": "pooled", "framework_defaults": False},
    # y = x / sqrt(mean(x^2 over axes) + eps) * (weight_offset + weight); no mean, no bias
    "rms_norm": {"axes": None, "eps": 1.0e-6, "weight": None, "weight_offset": 0.0, "cast": "last",
                 "framework_defaults": False, **_GRAD},
}
# Parameters whose null is a value of its own rather than "take the default": (op, parameter).
NULL_VALUES = {(op, "momentum") for op in PARAMS if "momentum" in PARAMS[op]} | {("rms_norm", "eps")}
# The kinds of the parameters that are not plain numbers: the validator checks them from these
# tables, and normconf/schema.py writes the same ones into the JSON Schema.
ENUM_PARAMS = {"variance": DIVISORS, "running_variance": DIVISORS, "method": METHODS, "cast": CASTS}
BOOL_PARAMS = ("training", "eval_after", "track_running_stats", "grad", "framework_defaults")
ARRAY_PARAMS = ("weight", "bias", "running_mean", "running_var", "grad_output")  # literal or {generator: ...}
OUTPUTS = {"instance_norm": ("y",), "layer_norm": ("y",), "group_norm": ("y",), "normalize": ("y",),
           "batch_norm": ("y", "running_mean", "running_var"), "channel_stats": ("mean", "std"), "rms_norm": ("y",)}
GRADIENTS = ("grad_x", "grad_weight", "grad_bias")
DEFAULT_GRAD_OUTPUT = {"generator": {"dist": "normal", "mean": 0.0, "std": 1.0, "seed": 1000}}

# What every key means: editors show it on hover (normconf/schema.py puts it into the JSON Schema; a
# key without an entry here stops the schema from being generated).
DOCS = {
    "defaults": "Keys merged into every case of the file (deep merge: a case's own value wins).",
    "cases": "The cases of the file.",
    "id": "Unique in its file, [a-z0-9_.-]+. The pytest id is <file stem>/<id>[<adapter>].",
    "description": "What the case checks.",
    "source": "Where the case comes from: a doc, an issue, a paper (a link).",
    "op": ("instance_norm: per (image, channel) over the spatial dims; batch_norm: per channel over batch "
           "and spatial dims; layer_norm: per sample over `axes`; group_norm: per (sample, group); "
           "normalize: (x - mean) / std with constants; channel_stats: per-channel mean and std of a dataset; "
           "rms_norm: x / sqrt(mean(x^2) + eps) * (weight_offset + weight) per sample over `axes`."),
    "input": "The input tensor: its shape and either literal data or a generator.",
    "input.shape": ("Canonical order [N, C, *spatial]: 0 to 3 spatial dims (instance_norm at least 1, layer_norm "
                    "and rms_norm any rank >= 2). N may be 0 (an empty batch); every other dim is >= 1."),
    "input.layout": "How the tensor is handed to the framework; results are compared in canonical order.",
    "input.dtype": "The dtype the input is rounded to and the framework computes in.",
    "input.data": ("A literal nested list of numbers in canonical order, shaped like input.shape (.nan, .inf "
                   "allowed; [] is an empty batch). Exclusive with input.generator."),
    "input.generator": ("Values drawn in float64 with NumPy's PCG64, then rounded to the dtype. Default "
                        "{dist: normal, mean: 0, std: 1, seed: 0}."),
    "generator.dist": "normal (mean, std), uniform (low, high) or constant (value); each with seed.",
    "generator.mean": "Mean of the normal distribution (finite).",
    "generator.std": "Standard deviation of the normal distribution (finite, >= 0).",
    "generator.low": "Lower bound of the uniform distribution (finite).",
    "generator.high": "Upper bound of the uniform distribution (finite, >= low).",
    "generator.value": "The value of every element (finite).",
    "generator.seed": "Seed of NumPy's PCG64 generator.",
    "params": "Parameters of the op; every one but groups (group_norm) and mean, std (normalize) has a default.",
    "params.eps": ("Added to the variance inside the square root (rms_norm: to the mean of the squares; null there "
                   "is the machine epsilon of the input dtype, torch's eps=None)."),
    "params.variance": "Divisor of the statistics used to normalize: biased = n, unbiased = n-1.",
    "params.weight": ("Per-channel scale (layer_norm, rms_norm: shaped like the normalized dims), a literal list or "
                      "{generator: ...}; rounded to the case dtype. Absent: no affine."),
    "params.bias": ("Per-channel shift (layer_norm: shaped like the normalized dims), a literal list or "
                    "{generator: ...}; rounded to the case dtype. Absent: no affine."),
    "params.framework_defaults": ("Porting view: run each adapter with its framework's default constructor "
                                  "arguments instead of this case's eps, momentum and divisor."),
    "params.grad": "Also compute grad_x (and grad_weight, grad_bias with an affine) of sum(y * grad_output).",
    "params.grad_output": ("The upstream gradient, shaped like y: a literal or {generator: ...} (default normal(0, 1), "
                           "seed 1000). Only with grad: true."),
    "params.track_running_stats": ("PyTorch's InstanceNorm*d(track_running_stats=True) in training mode: also "
                                   "running_mean and running_var. momentum, running_mean, running_var, "
                                   "running_variance and steps only with it."),
    "params.momentum": ("Weight of the NEW batch statistic in the running statistics (PyTorch's convention); "
                        "null = cumulative average."),
    "params.running_mean": "Initial running mean per channel (default zeros), a literal list or {generator: ...}.",
    "params.running_var": ("Initial running variance per channel (default ones, values >= 0), a literal list or "
                           "{generator: ...}."),
    "params.running_variance": ("Estimator written into the running variance: biased = n (ONNX's population "
                                "variance), unbiased = n-1 (PyTorch)."),
    "params.steps": "Training forward passes; step k draws its input with the generator's seed + k.",
    "params.axes": ("Canonical dims normalized over (layer_norm, rms_norm; default: every dim but the batch), in "
                    "[-rank, rank), distinct."),
    "params.weight_offset": ("rms_norm: y = x / rms * (weight_offset + weight); 0 as LLaMA and torch, 1 as Gemma's "
                             "(1 + weight). A finite number; non-zero only with a weight."),
    "params.cast": ("rms_norm's rounding points in a half dtype: last = normalize and multiply by the weight in "
                    "float32, cast to the input dtype last (Gemma, torch, Keras, Flax); before_weight = normalize in "
                    "float32, cast to the input dtype, then multiply by the weight in the input dtype (LLaMA)."),
    "params.groups": "Number of channel groups: a divisor of C. Required.",
    "params.training": ("true: batch statistics and a running-statistics update; false: normalize with "
                        "running_mean/running_var."),
    "params.eval_after": ("Train `steps` steps, then y is one eval pass over the last input with the updated "
                          "statistics."),
    "params.mean": "Per-channel constant subtracted: a number or a list of C numbers. Required.",
    "params.std": "Per-channel constant divided by: a number or a list of C finite, non-zero numbers. Required.",
    "params.method": ("pooled: std over all N*spatial values per channel; per_image_mean: mean over images of each "
                      "image's std."),
    "expect": "Optional literal expected outputs and a tolerance override.",
    "expect.values": ("Literal expected outputs by name ({y: [...]}), checked against the oracle and every adapter "
                      "to the precision they are written in."),
    "expect.tolerance": "Override of the per-dtype default tolerance: |actual - expected| <= atol + rtol |expected|.",
    "expect.tolerance.atol": "Absolute tolerance (>= 0).",
    "expect.tolerance.rtol": "Relative tolerance (>= 0).",
    "matrix": ("{dotted.key: [values, ...]} under input., params. or expect.: the cartesian product expands into "
               "cases whose ids get a suffix such as @dtype=float16,layout=channels_last."),
    "tags": "Words for selection (seed, stability, edge, ...).",
}


class CaseError(Exception):
    """A malformed case: where it is, which key, what was found, what is allowed."""

    def __init__(self, file: str, case_id: str | None, key: str | None, found: Any, allowed: str):
        self.file, self.case_id, self.key, self.found, self.allowed = file, case_id, key, found, allowed
        where = f"{file}: case {case_id!r}" if case_id is not None else f"{file}"
        what = f"key {key!r}: " if key else ""
        hint = ""
        if isinstance(found, str) and _looks_numeric(found):
            hint = (f" (YAML 1.1, as yaml.safe_load reads it, takes {found!r} as text: write it with a dot and a "
                    "signed exponent, e.g. 1.0e-5)")
        super().__init__(f"{where}: {what}found {_short(found)}; allowed: {allowed}{hint}")


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


class Params(Mapping):
    """A case's validated parameters: a read-only mapping, read by key or by attribute.

    >>> p = Params({"eps": 1e-5, "variance": "biased"})
    >>> p.eps, p["variance"], p.get("groups")
    (1e-05, 'biased', None)
    >>> p.replace(eps=1e-3).eps, p.eps  # a new one; this one is unchanged
    (0.001, 1e-05)

    The annotations below are every parameter of :data:`PARAMS` with its validated type; a case has
    those of its op only (``case.params.groups`` of an instance norm is an AttributeError naming the
    parameters it has). Per-channel arrays stay as validated: a nested list, or ``{generator: ...}``.
    """

    __slots__ = ("_values",)

    eps: float  # rms_norm: float | None (None: the machine epsilon of the input dtype, see rms_eps)
    variance: str  # one of DIVISORS
    weight: list | dict | None
    bias: list | dict | None
    framework_defaults: bool
    grad: bool
    grad_output: list | dict | None  # shaped like y; set (the default generator) whenever grad is
    track_running_stats: bool
    momentum: float | None  # None: a cumulative average
    running_mean: list | dict | None
    running_var: list | dict | None
    running_variance: str  # one of DIVISORS
    steps: int
    axes: list[int]  # layer_norm: sorted, non-negative
    groups: int
    training: bool
    eval_after: bool
    mean: list[float]  # normalize: one per channel
    std: list[float]
    method: str  # one of METHODS
    weight_offset: float  # rms_norm
    cast: str  # rms_norm: one of CASTS

    def __init__(self, values: Mapping | None = None):
        object.__setattr__(self, "_values", dict(values or {}))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name == "_values" or name.startswith("__"):  # not set yet, or a protocol probe (copy, pickle)
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"this case has no parameter {name!r} (it has: {', '.join(self._values)})") from None

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"case parameters are read-only (setting {name!r}): use Case.with_params")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"case parameters are read-only (deleting {name!r})")

    def replace(self, **changes) -> Params:
        """New parameters: these with ``changes`` (a key may be new: an oracle variant's convention)."""
        return Params({**self._values, **changes})

    def __repr__(self) -> str:
        return f"Params({self._values!r})"

    def __reduce__(self):
        return Params, (self._values,)


@dataclass
class Case:
    """One validated case after ``defaults:`` merging and ``matrix:`` expansion. ``params`` is a
    :class:`Params` (a mapping given here becomes one)."""

    file: str
    id: str
    op: str
    shape: tuple[int, ...]
    layout: str
    dtype: str
    data: Any | None
    generator: dict | None
    params: Params
    expect_values: dict = field(default_factory=dict)
    tolerance: dict | None = None
    tags: tuple[str, ...] = ()
    description: str = ""
    source: str = ""
    raw: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.params, Params):
            self.params = Params(self.params)

    @property
    def stem(self) -> str:
        return _stem(self.file)

    @property
    def key(self) -> str:
        """``<file stem>/<case id>``: the name used in pytest ids, JSON and known discrepancies."""
        return f"{self.stem}/{self.id}"

    @property
    def outputs(self) -> tuple[str, ...]:
        return outputs_of(self.op, self.params)

    @property
    def gradients(self) -> tuple[str, ...]:
        """The gradient outputs this case asks for (``grad_x``, and ``grad_weight``/``grad_bias`` with affine)."""
        return tuple(n for n in self.outputs if n in GRADIENTS)

    def with_params(self, **changes) -> Case:
        """The same case with some parameters changed (used for native conventions); this one is unchanged."""
        clone = copy.copy(self)
        clone.params = self.params.replace(**changes)
        return clone


def outputs_of(op: str, params: Mapping) -> tuple[str, ...]:
    """The output names of a case of ``op`` with validated ``params`` (docs/case-format.md, "Outputs").

    >>> outputs_of("batch_norm", {"training": False, "grad": True, "weight": [1.0], "bias": None})
    ('y', 'grad_x', 'grad_weight')
    """
    names: tuple[str, ...]
    if op == "batch_norm" and not params["training"]:
        names = ("y",)
    elif op == "instance_norm" and params.get("track_running_stats"):
        names = ("y", "running_mean", "running_var")
    else:
        names = OUTPUTS[op]
    if params.get("grad"):
        names += ("grad_x",) + tuple(f"grad_{k}" for k in ("weight", "bias") if params.get(k) is not None)
    return names


def load_file(path: str | Path) -> tuple[list[Case], list[CaseError]]:
    """Load one case file. Returns the valid cases and one error per invalid one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return [], [CaseError(str(path), None, None, exc.strerror, "a readable YAML file")]
    return load_text(text, str(path))


def load_text(text: str, file: str) -> tuple[list[Case], list[CaseError]]:
    try:
        doc, case_nodes = _safe_load(text)
    except _FileDuplicate as dup:
        return [], [CaseError(file, None, dup.path, _Text(str(dup.error)), UNIQUE_KEYS)]
    except yaml.YAMLError as exc:
        return [], [CaseError(file, None, None, _yaml_problem(exc), "plain YAML (safe_load: no !!python tags)")]
    if not isinstance(doc, dict):
        return [], [CaseError(file, None, None, type(doc).__name__,
                              "a mapping with 'cases:' (and optional 'defaults:')")]
    unknown = set(doc) - {"defaults", "cases"}
    if unknown:
        return [], [CaseError(file, None, sorted(unknown)[0], sorted(unknown), "top-level keys: defaults, cases")]
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        return [], [CaseError(file, None, "defaults", defaults, "a mapping merged into every case")]
    if case_nodes is None:
        return [], [CaseError(file, None, "cases", doc.get("cases"), "a list of cases")]
    cases, errors, seen = [], [], set()
    for index, (node, entry) in enumerate(case_nodes):
        label = _node_id(node) or f"#{index + 1}"
        try:
            if isinstance(entry, DuplicateKeyError):
                raise CaseError(file, label, duplicate_key_path(entry, node), _Text(str(entry)), UNIQUE_KEYS)
            if isinstance(entry, yaml.YAMLError):
                raise CaseError(file, label, None, _yaml_problem(entry), "plain YAML (safe_load: no !!python tags)")
            if not isinstance(entry, dict):
                raise CaseError(file, label, None, entry, "a mapping with id, op, input, ...")
            merged = _merge(defaults, entry)
            for expanded, from_matrix in _expand(merged, file, label):
                case = _validate(expanded, file, label, from_matrix)
                if case.id in seen:
                    raise CaseError(file, case.id, "id", case.id, "ids unique within their file")
                seen.add(case.id)
                cases.append(case)
        except CaseError as exc:
            errors.append(exc)
    return cases, errors


def _safe_load(text: str):
    """``yaml.safe_load`` of the file, except that each entry of ``cases:`` is constructed on its
    own, so that one refused tag (``!!python/object``...) or duplicated key costs only its own case.
    Returns the document (``cases`` left out) and ``[(node, value or YAMLError)]`` for the cases.
    A key written twice outside ``cases:`` (``defaults:`` twice, or inside it) is a file error."""
    loader = UniqueKeyLoader(text)
    try:
        root = loader.get_single_node()
        if root is None or not isinstance(root, yaml.MappingNode):
            return (loader.construct_document(root) if root is not None else None), None
        try:
            check_unique_keys(loader, root)
        except DuplicateKeyError as exc:
            raise _FileDuplicate(duplicate_key_path(exc, root), exc) from None
        doc, case_nodes = {}, None
        for key_node, value_node in root.value:
            key = loader.construct_object(key_node, deep=True)
            if key == "cases" and isinstance(value_node, yaml.SequenceNode):
                case_nodes = []
                for item in value_node.value:
                    try:
                        case_nodes.append((item, loader.construct_object(item, deep=True)))
                    except yaml.YAMLError as exc:
                        reset(loader)
                        case_nodes.append((item, exc))
            else:
                try:
                    doc[key] = loader.construct_object(value_node, deep=True)
                except DuplicateKeyError as exc:
                    raise _FileDuplicate(duplicate_key_path(exc, value_node, str(key)), exc) from None
        if case_nodes is None and "cases" not in doc:
            case_nodes = []
        return doc, case_nodes
    finally:
        loader.dispose()



class _FileDuplicate(Exception):
    """A duplicated key outside the cases (top level, ``defaults:``): the whole file is in doubt."""

    def __init__(self, path: str, error: DuplicateKeyError):
        super().__init__(str(error))
        self.path, self.error = path, error


class _Text(str):
    """Text shown as it is in a :class:`CaseError` (no quotes around a sentence)."""

    def __repr__(self) -> str:
        return str(self)


def _node_id(node) -> str | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if (isinstance(key, yaml.ScalarNode) and key.value == "id" and isinstance(value, yaml.ScalarNode)
                    and value.tag == "tag:yaml.org,2002:str"):
                return value.value
    return None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"YAML that does not parse{where}: {problem}"


def load_paths(paths) -> tuple[list[Case], list[CaseError]]:
    """Load every case file among ``paths`` (files or folders, searched for ``*.yaml``)."""
    cases, errors = [], []
    for path in case_files(paths):
        got, bad = load_file(path)
        cases += got
        errors += bad
    return cases, errors


def case_files(paths) -> list[Path]:
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.y*ml") if is_case_file(p))
        else:
            files.append(path)
    return files


def is_case_file(path: Path) -> bool:
    return path.suffix in (".yaml", ".yml") and path.name not in ("known_discrepancies.yaml",)


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        # input.data and input.generator are alternatives: a case's own choice replaces the default's
        for a, b in (("data", "generator"), ("generator", "data")):
            if a in over and b in out and a not in base:
                del out[b]
        for key, value in over.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    return copy.deepcopy(over)


def _expand(entry: dict, file: str, label: str):
    matrix = entry.get("matrix")
    if matrix is None:
        yield entry, False
        return
    if not isinstance(entry.get("id"), str) or not ID_RE.match(entry["id"]):
        raise CaseError(file, label, "id", entry.get("id"), "a string of [a-z0-9_.-]+")
    if not isinstance(matrix, dict) or not matrix:
        raise CaseError(file, label, "matrix", matrix, "a mapping {dotted.key: [values, ...]}")
    keys = list(matrix)
    for key in keys:
        if not isinstance(key, str) or key.split(".")[0] not in ("input", "params", "expect"):
            raise CaseError(file, label, "matrix", key, "dotted keys under input., params. or expect.")
        if not isinstance(matrix[key], list) or not matrix[key]:
            raise CaseError(file, label, f"matrix.{key}", matrix[key], "a non-empty list of values")
    for combo in itertools.product(*(matrix[k] for k in keys)):
        case = copy.deepcopy({k: v for k, v in entry.items() if k != "matrix"})
        suffix = []
        for key, value in zip(keys, combo, strict=True):
            node = case
            *parents, last = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise CaseError(file, label, f"matrix.{key}", node, "a path through mappings")
            node[last] = value
            suffix.append(f"{last}={_fmt(value)}")
        case["id"] = f"{entry.get('id')}@{','.join(suffix)}"
        yield case, True


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "x".join(map(_fmt, value))
    return str(value).lower()


# ----------------------------------------------------------------------------- validation

def _validate(entry: dict, file: str, label: str, from_matrix: bool = False) -> Case:
    cid = entry.get("id")
    base_id = cid.split("@")[0] if isinstance(cid, str) and from_matrix else cid
    if not isinstance(cid, str) or not ID_RE.match(base_id if isinstance(base_id, str) else ""):
        raise CaseError(file, cid if isinstance(cid, str) else label, "id", cid, "a string of [a-z0-9_.-]+")

    def err(key, found, allowed):
        return CaseError(file, cid, key, found, allowed)

    for key in entry:
        if key not in CASE_KEYS:
            raise err(key, key, ", ".join(CASE_KEYS))
    op = entry.get("op")
    if op not in OPS:
        raise err("op", op, ", ".join(OPS))
    for key in ("description", "source"):
        if key in entry and not isinstance(entry[key], str):
            raise err(key, entry[key], "text")
    tags = entry.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise err("tags", tags, "a list of words")

    inp = entry.get("input")
    if not isinstance(inp, dict):
        raise err("input", inp, "a mapping with shape and data or generator")
    for key in inp:
        if key not in INPUT_KEYS:
            raise err(f"input.{key}", key, ", ".join(INPUT_KEYS))
    shape = inp.get("shape")
    # N = 0 (an empty batch) is a valid run-time input; every other dim holds at least one value
    if not (isinstance(shape, list) and shape and all(_is_int(d) and d >= (0 if i == 0 else 1)
                                                      for i, d in enumerate(shape))):
        raise err("input.shape", shape, "a list of positive integers [N, C, *spatial] (N may be 0: an empty batch)")
    rank = len(shape)
    if op in ("layer_norm", "rms_norm"):
        if rank < 2:
            raise err("input.shape", shape, f"{op}: rank 2 or more")
    elif not 2 <= rank <= 5:
        raise err("input.shape", shape, f"{op}: [N, C] plus 0 to 3 spatial dims (rank 2 to 5)")
    if op == "instance_norm" and rank < 3:
        raise err("input.shape", shape, "instance_norm: at least one spatial dim, [N, C, L] or more")
    layout = inp.get("layout", INPUT_DEFAULTS["layout"])
    if layout not in LAYOUTS:
        raise err("input.layout", layout, ", ".join(LAYOUTS))
    dtype = inp.get("dtype", INPUT_DEFAULTS["dtype"])
    if dtype not in DTYPES:
        raise err("input.dtype", dtype, ", ".join(DTYPES))
    data, generator = inp.get("data"), inp.get("generator")
    if data is not None and generator is not None:
        raise err("input", "both data and generator", "one of input.data or input.generator")
    if data is not None:
        found = _nested_shape(data) if data != [] else [0] + list(shape[1:])  # [] is the empty batch
        if found != list(shape):
            raise err("input.data", f"nested list of shape {found}",
                      f"a nested list of shape {list(shape)} (input.shape)")
    else:
        if generator is None:
            generator = INPUT_DEFAULTS["generator"]
        generator = _generator(generator, err, "input.generator")

    params = _params(op, _or_empty(entry.get("params")), shape, err)
    if params.get("steps", 1) > 1 and data is not None:
        raise err("params.steps", params["steps"], "1 with literal input.data (later steps need input.generator)")
    if op == "batch_norm" and params["steps"] > 1 and not params["training"]:
        raise err("params.steps", params["steps"], "1 when training is false")

    expect = _or_empty(entry.get("expect"))
    if not isinstance(expect, dict):
        raise err("expect", expect, "a mapping with values and/or tolerance")
    for key in expect:
        if key not in ("values", "tolerance"):
            raise err(f"expect.{key}", key, "values, tolerance")
    values = _or_empty(expect.get("values"))
    if not isinstance(values, dict):
        raise err("expect.values", values, "a mapping {output name: nested list}")
    outputs = outputs_of(op, params)
    for name, value in values.items():
        if name not in outputs:
            raise err(f"expect.values.{name}", name, f"outputs of {op}: {', '.join(outputs)}")
        if _nested_shape(value) is None:
            raise err(f"expect.values.{name}", value, "a nested list of numbers")
    tolerance = expect.get("tolerance")
    if tolerance is not None:
        if not isinstance(tolerance, dict) or set(tolerance) - {"atol", "rtol"} or not tolerance:
            raise err("expect.tolerance", tolerance, "{atol: number >= 0, rtol: number >= 0}")
        for key, value in tolerance.items():
            if not _is_num(value) or not math.isfinite(value) or value < 0:  # inf passes all, nan fails all
                raise err(f"expect.tolerance.{key}", value, "a finite number >= 0")

    return Case(file=file, id=cid, op=op, shape=tuple(shape), layout=layout, dtype=dtype, data=data,
                generator=generator, params=Params(params), expect_values=values, tolerance=tolerance,
                tags=tuple(tags), description=entry.get("description", ""), source=entry.get("source", ""),
                raw=entry)


def _params(op: str, given: Any, shape: list[int], err) -> dict:
    if not isinstance(given, dict):
        raise err("params", given, "a mapping of parameters")
    spec = PARAMS[op]
    for key in given:
        if key not in spec:
            raise err(f"params.{key}", key, f"parameters of {op}: {', '.join(spec)}")
    params = {}
    for key, default in spec.items():
        if key not in given or (given[key] is None and (op, key) not in NULL_VALUES):
            if default is REQUIRED:
                raise err(f"params.{key}", "nothing", f"{key} is required for {op}")
            params[key] = default
        else:
            params[key] = given[key]
    c, rank = shape[1], len(shape)
    if "eps" in params and not (params["eps"] is None and (op, "eps") in NULL_VALUES):
        eps = params["eps"]
        if not _is_num(eps) or not math.isfinite(eps) or eps < 0:
            raise err("params.eps", eps, "a finite number >= 0" + (", or null (the machine epsilon of the input "
                                                                    "dtype)" if (op, "eps") in NULL_VALUES else ""))
        params["eps"] = float(eps)
    for key, allowed in ENUM_PARAMS.items():
        if key in params and params[key] not in allowed:
            raise err(f"params.{key}", params[key], ", ".join(allowed))
    if op == "group_norm":
        groups = params["groups"]
        if not _is_int(groups) or groups < 1:
            raise err("params.groups", groups, "a positive integer")
        if c % groups:
            raise err("params.groups", groups, f"a divisor of C = {c}")
    if op in ("layer_norm", "rms_norm"):
        axes = params["axes"]
        if axes is None:
            axes = list(range(1, rank))
        if not isinstance(axes, list) or not axes or not all(_is_int(a) and -rank <= a < rank for a in axes):
            raise err("params.axes", axes, f"a non-empty list of dims in [-{rank}, {rank})")
        norm = sorted(a % rank for a in axes)
        if len(set(norm)) != len(norm):
            raise err("params.axes", axes, "distinct dims")
        params["axes"] = norm
    for key in BOOL_PARAMS:
        if key in params and not isinstance(params[key], bool):
            raise err(f"params.{key}", params[key], "true, false")
    if "weight_offset" in params:
        offset = params["weight_offset"]
        if not _is_num(offset) or not math.isfinite(offset):
            raise err("params.weight_offset", offset, "a finite number")
        if offset != 0 and params["weight"] is None:  # (offset + weight) without a weight would scale by offset alone
            raise err("params.weight_offset", offset, "0 without a weight (weight_offset shifts the weight)")
        params["weight_offset"] = float(offset)
    if op == "instance_norm" and not params["track_running_stats"]:
        for key in _RUNNING:  # running statistics exist only where they are tracked
            if key in given and (given[key] is not None or key == "momentum"):
                raise err(f"params.{key}", given[key], f"{key} only with track_running_stats: true")
            del params[key]
    if op == "batch_norm" and params["eval_after"] and not params["training"]:
        raise err("params.eval_after", True, "eval_after only with training: true (train, then one eval pass)")
    if "momentum" in params:
        momentum = params["momentum"]
        if momentum is not None and (not _is_num(momentum) or not 0 <= momentum <= 1):
            raise err("params.momentum", momentum, "a number in [0, 1], or null for a cumulative average")
        if not _is_int(params["steps"]) or params["steps"] < 1:
            raise err("params.steps", params["steps"], "an integer >= 1")
    if "grad" in params:
        if params["grad_output"] is not None and not params["grad"]:
            raise err("params.grad_output", params["grad_output"], "grad_output only with grad: true")
        if params["grad"]:  # the upstream gradient has the shape of y
            given_output = params["grad_output"] if params["grad_output"] is not None else DEFAULT_GRAD_OUTPUT
            params["grad_output"] = _array_param(copy.deepcopy(given_output), list(shape), "params.grad_output", err)
    if op == "normalize":
        for key in ("mean", "std"):
            value = params[key]
            if _is_num(value):
                value = [value] * c
            if not (isinstance(value, list) and len(value) == c and all(_is_num(v) for v in value)):
                raise err(f"params.{key}", value, f"a number or a list of C = {c} numbers")
            if key == "std" and any(v == 0 or not math.isfinite(v) for v in value):
                raise err("params.std", value, "finite, non-zero numbers")
            params[key] = [float(v) for v in value]
    # Per-channel arrays: literal or {generator: ...}.
    for key in ARRAY_PARAMS:
        if key == "grad_output" or key not in params or params[key] is None:  # grad_output: shaped like y, above
            continue
        want = [c] if op not in ("layer_norm", "rms_norm") else [shape[a] for a in params["axes"]]
        params[key] = _array_param(params[key], want, f"params.{key}", err)
        if key == "running_var" and isinstance(params[key], list) and any(v < 0 for v in _flat(params[key])):
            raise err("params.running_var", params[key], "values >= 0")
    return params


def rms_eps(params: Mapping, dtype: str) -> float:
    """rms_norm's eps as a number: the case's, or the machine epsilon of ``dtype`` where it is null.

    >>> rms_eps({"eps": None}, "bfloat16"), rms_eps({"eps": 1e-6}, "bfloat16")
    (0.0078125, 1e-06)
    """
    return MACHINE_EPS[dtype] if params["eps"] is None else params["eps"]


def _array_param(value: Any, want: list[int], key: str, err):
    if isinstance(value, dict):
        if set(value) != {"generator"}:
            raise err(key, value, "a literal list or {generator: {dist: ..., seed: ...}}")
        return {"generator": _generator(value["generator"], err, f"{key}.generator")}
    found = _nested_shape(value)
    if found != want:
        raise err(key, f"shape {found}" if found is not None else value, f"a list of shape {want}")
    return value


def _generator(gen: Any, err, key: str) -> dict:
    if not isinstance(gen, dict) or not isinstance(gen.get("dist"), str) or gen["dist"] not in GENERATOR_KEYS:
        raise err(key, gen, "{dist: normal|uniform|constant, ...}")
    dist = gen["dist"]
    for name in gen:
        if name not in GENERATOR_KEYS[dist]:
            raise err(f"{key}.{name}", name, f"keys of {dist}: {', '.join(GENERATOR_KEYS[dist])}")
    out = {"dist": dist, **GENERATOR_DEFAULTS[dist], "seed": 0}
    for name, value in gen.items():
        if name == "dist":
            continue
        if name == "seed":
            if not _is_int(value) or value < 0:
                raise err(f"{key}.seed", value, "an integer >= 0")
        elif not _is_num(value) or not math.isfinite(value):
            raise err(f"{key}.{name}", value, "a finite number")
        out[name] = value
    if dist == "normal" and out["std"] < 0:
        raise err(f"{key}.std", out["std"], "a number >= 0")
    if dist == "uniform" and out["high"] < out["low"]:
        raise err(f"{key}.high", out["high"], f"a number >= low ({out['low']})")
    return out


def _or_empty(value: Any) -> Any:
    """``key:`` with nothing after it (null) is an empty mapping; anything else must be a mapping itself."""
    return {} if value is None else value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _nested_shape(value: Any) -> list[int] | None:
    """Shape of a rectangular nested list of numbers, or None when it is not one."""
    if _is_num(value):
        return []
    if not isinstance(value, list) or not value:
        return None
    shapes = [_nested_shape(v) for v in value]
    first = shapes[0]
    if first is None or any(s != first for s in shapes):  # a None among them differs from first
        return None
    return [len(value)] + first


def _flat(value):
    if isinstance(value, list):
        for v in value:
            yield from _flat(v)
    else:
        yield value


@functools.cache
def _stem(file: str) -> str:
    """``Path(file).stem``, once per file: every result record and item name asks for it."""
    return Path(file).stem

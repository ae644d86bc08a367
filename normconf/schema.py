"""JSON Schemas (draft 2020-12) of case files and of ``known_discrepancies.yaml``, for editors.

They are generated from the validator's own tables (``normconf.cases``: keys, ops, parameters per
op with their defaults, enums, kinds and descriptions; ``normconf.known``: keys and causes) and
shipped in ``normconf/schemas/``; ``tests/test_schema.py`` checks that the shipped files are what
this module writes, so the two cannot drift::

    python -m normconf schema                 # rewrite normconf/schemas/*.json
    python -m normconf schema --check         # exit 1 if they differ from the tables
    python -m normconf schema --out DIR       # write them elsewhere

Each case file's first line points an editor (VS Code's YAML extension, any yaml-language-server
client) at the schema, relative to the file::

    # yaml-language-server: $schema=../normconf/schemas/case-file.schema.json

The schema checks what one mapping shows by itself: key names, types, enums, ranges, which
parameters an op takes. The validator stays the authority: the rules in :data:`CROSS_FIELD` need
several places of the file at once (``defaults:`` merged into a case, ``matrix:`` expansion, C taken
from ``input.shape``...) and are checked only by the loader, with its usual message (file, case,
key, found, allowed).
"""
from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import cases as C
from . import known as K

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
CASE_SCHEMA = "case-file.schema.json"
KNOWN_SCHEMA = "known-discrepancies.schema.json"


@dataclass(frozen=True)
class CrossField:
    """A rule the loader checks and the schema cannot: an error whose key matches ``key`` (fnmatch)
    and whose ``allowed`` text contains ``allowed`` is this rule's."""

    key: str
    allowed: str
    why: str


CROSS_FIELD = (
    CrossField("id", "unique within their file", "ids are compared across the cases of the file"),
    CrossField("*", "each key once per mapping", "a parsed mapping no longer shows a key written twice"),
    CrossField("input.data", "a nested list of shape", "the literal's shape is compared with input.shape"),
    CrossField("input.shape", "rank", "the op may come from defaults: while the shape is in the case, or the reverse"),
    CrossField("input.shape", "spatial dim",
               "the op may come from defaults: while the shape is in the case, or the reverse"),
    CrossField("input", "a mapping with shape", "input may come from defaults: or matrix:"),
    CrossField("input.shape", "positive integers", "input.shape may come from defaults: or matrix:"),
    CrossField("input", "one of input.data or input.generator",
               "a case's data or generator replaces the default's, so both may be in one merged input"),
    CrossField("*generator*", "{dist: normal|uniform|constant", "a generator's dist may come from defaults:"),
    CrossField("*generator.*", "keys of ", "defaults: and the case each give a generator, merged into one"),
    CrossField("*generator.high", ">= low", "low and high are compared, and may come from defaults:"),
    CrossField("params.*", "is required for", "a required parameter may come from defaults: or matrix:"),
    CrossField("params.*", "parameters of ",
               "the op may come from defaults: while params are in the case, or the reverse"),
    CrossField("params.groups", "a divisor of C", "C is input.shape[1]"),
    CrossField("params.axes", "dims in [-", "the rank is len(input.shape)"),
    CrossField("params.axes", "distinct dims", "-1 and rank-1 are the same dim"),
    CrossField("params.*", "a list of shape", "per-channel arrays are shaped by input.shape (and axes)"),
    CrossField("params.mean", "a list of C", "C is input.shape[1]"),
    CrossField("params.std", "a list of C", "C is input.shape[1]"),
    CrossField("params.steps", "1 with literal input.data", "later steps need a generator"),
    CrossField("params.steps", "1 when training is false", "steps need training"),
    CrossField("params.eval_after", "only with training", "eval_after needs training"),
    CrossField("params.*", "only with track_running_stats", "running statistics of instance_norm need tracking"),
    CrossField("params.grad_output", "only with grad", "grad_output needs grad"),
    CrossField("params.weight_offset", "0 without a weight", "weight_offset shifts a weight, which may come from "
               "defaults: or matrix:"),
    CrossField("expect.values.*", "outputs of ", "the outputs depend on the op and on training, grad, weight, bias"),
    CrossField("expect.values.*", "a nested list of numbers", "a ragged nested list is not a rectangular array"),
    CrossField("matrix*", "a path through mappings", "a dotted key must lead through mappings of the merged case"),
    CrossField("*", "finite", "JSON has no NaN or infinity: YAML's .nan, .inf are numbers to the schema"),
    CrossField("*", "integer", "JSON Schema counts 1.0 as an integer; the loader wants 1"),
)


def cross_field_rule(error: C.CaseError) -> CrossField | None:
    """The rule of :data:`CROSS_FIELD` a loader error belongs to, or None when the schema should
    have caught it itself."""
    if isinstance(error.found, float) and not math.isfinite(error.found):
        return next(r for r in CROSS_FIELD if r.allowed == "finite")
    for rule in CROSS_FIELD:
        if fnmatch.fnmatchcase(error.key or "", rule.key) and rule.allowed in error.allowed:
            if rule.allowed == "integer" and not isinstance(error.found, float):
                continue
            return rule
    return None


# ----------------------------------------------------------------------------- building blocks

def _doc(key: str) -> str:
    try:
        return C.DOCS[key]
    except KeyError:
        raise KeyError(f"normconf.cases.DOCS has no description of {key!r}: add one") from None


def _nullable(schema: dict) -> dict:
    """``schema`` or null (a parameter given as null takes its default). Written as a type list, an
    enum with null, or one more branch of an anyOf rather than a new anyOf around it: editors then
    report the real problem, not also "Expected null"."""
    schema = dict(schema)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        schema["type"] = types + ["null"]  # minimum, items, properties... do not apply to null
    elif "enum" in schema:
        schema["enum"] = schema["enum"] + [None]
    elif "anyOf" in schema:
        schema["anyOf"] = schema["anyOf"] + [{"type": "null"}]
    else:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


#: A JSON Schema (or a part of one), as json.dumps writes it.
Schema = dict[str, Any]

NUMBER: Schema = {"type": "number"}
NON_NEGATIVE: Schema = {"type": "number", "minimum": 0}
NESTED = "#/$defs/nested_numbers"
NESTED_NON_NEGATIVE = "#/$defs/nested_non_negative"
GENERATOR = "#/$defs/generator"
ARRAY_PARAM = "#/$defs/array_param"
GENERATED = "#/$defs/generated_param"


def _defs() -> dict:
    union = list(dict.fromkeys(k for keys in C.GENERATOR_KEYS.values() for k in keys if k != "dist"))
    generator_props: Schema = {"dist": {"enum": list(C.GENERATOR_KEYS), "description": _doc("generator.dist")}}
    for key in union:
        schema: Schema = {"type": "integer", "minimum": 0, "default": 0} if key == "seed" else dict(NUMBER)
        if key == "std":
            schema["minimum"] = 0
        for defaults in C.GENERATOR_DEFAULTS.values():
            if key in defaults:
                schema["default"] = defaults[key]
        generator_props[key] = {**schema, "description": _doc(f"generator.{key}")}
    return {
        "nested_numbers": {
            "description": "A number or a non-empty nested list of numbers (rectangular; .nan and .inf allowed).",
            "anyOf": [NUMBER, {"type": "array", "minItems": 1, "items": {"$ref": NESTED}}]},
        "nested_non_negative": {
            "description": "A number >= 0 or a non-empty nested list of them.",
            "anyOf": [NON_NEGATIVE, {"type": "array", "minItems": 1, "items": {"$ref": NESTED_NON_NEGATIVE}}]},
        # no "type" in the shared definitions: each use says object, or object or null
        "generator": {
            "description": _doc("input.generator"),
            "properties": generator_props,
            "additionalProperties": False,
            "allOf": [{"if": {"properties": {"dist": {"const": dist}}, "required": ["dist"]},
                       "then": {"propertyNames": {"enum": list(keys)}}}
                      for dist, keys in C.GENERATOR_KEYS.items()],
        },
        "array_param": {
            "description": "A literal nested list, or {generator: {dist: ..., seed: ...}}.",
            "anyOf": [{"type": "array", "minItems": 1, "items": {"$ref": NESTED}}, {"$ref": GENERATED}],
        },
        "generated_param": {
            "description": "Values drawn like the input's, rounded to the case dtype.",
            "type": "object", "properties": {"generator": {"type": "object", "$ref": GENERATOR}},
            "required": ["generator"], "additionalProperties": False,
        },
    }


def _param(name: str) -> dict:
    """The schema of one parameter's value, from the validator's tables and its checks."""
    defaults = {op: spec[name] for op, spec in C.PARAMS.items() if name in spec}
    required = any(d is C.REQUIRED for d in defaults.values())
    schema: Schema
    if name in C.ENUM_PARAMS:
        schema = {"enum": list(C.ENUM_PARAMS[name])}
    elif name in C.BOOL_PARAMS:
        schema = {"type": "boolean"}
    elif name in C.ARRAY_PARAMS:
        schema = {"$ref": ARRAY_PARAM}
        if name == "running_var":  # literal values >= 0 (NaN allowed); a generator may draw anything
            schema = {"anyOf": [{"type": "array", "minItems": 1, "items": {"$ref": NESTED_NON_NEGATIVE}},
                                {"$ref": GENERATED}]}
    elif name == "eps":  # null: the default, or rms_norm's machine epsilon (a value the default does not name)
        schema = dict(NON_NEGATIVE)
    elif name == "weight_offset":
        schema = dict(NUMBER)
    elif name == "momentum":
        schema = {"type": "number", "minimum": 0, "maximum": 1}
    elif name in ("steps", "groups"):
        schema = {"type": "integer", "minimum": 1}
    elif name == "axes":
        schema = {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "integer"}}
    elif name == "mean":
        schema = {"anyOf": [NUMBER, {"type": "array", "minItems": 1, "items": NUMBER}]}
    elif name == "std":
        non_zero = {"type": "number", "not": {"const": 0}}
        schema = {"anyOf": [non_zero, {"type": "array", "minItems": 1, "items": non_zero}]}
    else:
        raise KeyError(f"normconf.schema has no schema for the parameter {name!r} of normconf.cases.PARAMS: add one")
    schema = schema if required else _nullable(schema)
    schema["description"] = _doc(f"params.{name}")
    given = {json.dumps(d) for d in defaults.values() if d is not None and d is not C.REQUIRED}
    if not required and len(given) == 1:  # one default across the ops that take it
        schema["default"] = json.loads(given.pop())
    return schema


def _input() -> dict:
    props: dict[str, Schema] = {
        # N may be 0 (an empty batch); every other dim holds at least one value
        "shape": {"type": "array", "minItems": 2,
                  "prefixItems": [{"type": "integer", "minimum": 0}], "items": {"type": "integer", "minimum": 1}},
        "layout": {"enum": list(C.LAYOUTS), "default": C.INPUT_DEFAULTS["layout"]},
        "dtype": {"enum": list(C.DTYPES), "default": C.INPUT_DEFAULTS["dtype"]},
        # [] is the empty batch; otherwise a non-empty nested list
        "data": {"type": ["array", "null"], "items": {"$ref": NESTED}},
        "generator": {"type": ["object", "null"], "$ref": GENERATOR},
    }
    assert set(props) == set(C.INPUT_KEYS), "normconf.cases.INPUT_KEYS changed: update normconf.schema._input"
    for key in C.INPUT_KEYS:
        props[key]["description"] = _doc(f"input.{key}")
    return {"type": "object", "description": _doc("input"), "properties": {k: props[k] for k in C.INPUT_KEYS},
            "additionalProperties": False,
            # both given in one mapping (a case's own choice replaces the default's when merging)
            "not": {"required": ["data", "generator"],
                    "properties": {"data": {"type": "array"}, "generator": {"type": "object"}}}}


def _all_params() -> list[str]:
    seen = []
    for spec in C.PARAMS.values():
        seen += [k for k in spec if k not in seen]
    return seen


def _outputs(op: str) -> list[str]:
    """Every output a case of ``op`` may have (with training, tracking, gradients and an affine)."""
    spec = C.PARAMS[op]
    most = {"training": True, "track_running_stats": True, "grad": "grad" in spec,
            "weight": [1.0] if "weight" in spec else None, "bias": [0.0] if "bias" in spec else None}
    return list(C.outputs_of(op, most))


def _case_properties(params: dict) -> dict:
    tolerance = {k: {**NON_NEGATIVE, "description": _doc(f"expect.tolerance.{k}")} for k in ("atol", "rtol")}
    all_outputs = []
    for op in C.OPS:
        all_outputs += [o for o in _outputs(op) if o not in all_outputs]
    props: dict[str, Schema] = {
        "id": {"type": "string", "pattern": C.ID_RE.pattern},
        "description": {"type": "string"},
        "source": {"type": "string"},
        "op": {"enum": list(C.OPS)},
        "input": {"$ref": "#/$defs/input"},
        "params": {"type": ["object", "null"], "$ref": "#/$defs/params"},
        "expect": {
            "type": ["object", "null"], "additionalProperties": False,
            "properties": {
                "values": {
                    "type": ["object", "null"], "description": _doc("expect.values"),
                    "propertyNames": {"enum": all_outputs},
                    "additionalProperties": {"$ref": NESTED}},
                "tolerance": {
                    "type": ["object", "null"], "description": _doc("expect.tolerance"), "minProperties": 1,
                    "properties": tolerance, "additionalProperties": False},
            }},
        "matrix": {"type": ["object", "null"], **_matrix(params)},
        "tags": {"type": "array", "items": {"type": "string"}},
    }
    assert set(props) == set(C.CASE_KEYS), "normconf.cases.CASE_KEYS changed: update normconf.schema._case_properties"
    for key in C.CASE_KEYS:
        props[key]["description"] = _doc(key)
    return {k: props[k] for k in C.CASE_KEYS}


def _matrix(params: dict) -> dict:
    """``{dotted.key: [values]}``: each value of a key the schema knows is checked like the key itself."""
    known = {f"input.{k}": {"$ref": f"#/$defs/input/properties/{k}"} for k in C.INPUT_KEYS}
    known.update({f"params.{k}": {"$ref": f"#/$defs/params/properties/{k}"} for k in params})
    return {"minProperties": 1,
            "propertyNames": {"pattern": r"^(input|params|expect)(\.[^.]+)*$"},
            "properties": {k: {"type": "array", "minItems": 1, "items": v} for k, v in known.items()},
            "additionalProperties": {"type": "array", "minItems": 1}}


def _op_dependent(name: str) -> bool:
    """Whether the ops that take parameter ``name`` give it different defaults."""
    defaults = {json.dumps(spec[name]) for spec in C.PARAMS.values() if name in spec and spec[name] is not C.REQUIRED}
    return len(defaults) > 1


def _op_rules(op: str) -> dict:
    """What a case of ``op`` adds: which parameters, which outputs, which ranks."""
    shape: dict[str, Any] = {}
    if op not in ("layer_norm", "rms_norm"):
        shape["maxItems"] = 5
    if op == "instance_norm":
        shape["minItems"] = 3
    params: dict[str, Any] = {"propertyNames": {"enum": list(C.PARAMS[op])}}
    # a parameter whose default differs between ops (eps: 1e-5, rms_norm's 1e-6) has it here, per op
    own = {k: v for k, v in C.PARAMS[op].items() if v is not C.REQUIRED and v is not None and _op_dependent(k)}
    if own:
        params["properties"] = {k: {"default": v} for k, v in own.items()}
    rules = {
        # propertyNames and properties say nothing about a null: no anyOf with null needed
        "params": params,
        "expect": {"properties": {"values": {"propertyNames": {"enum": _outputs(op)}}}},
    }
    if shape:
        rules["input"] = {"properties": {"shape": shape}}
    return {"properties": rules}


def case_file_schema() -> dict:
    """The JSON Schema of a case file."""
    params = {name: _param(name) for name in _all_params()}
    case_props = _case_properties(params)
    per_op = [{"if": {"properties": {"op": {"const": op}}, "required": ["op"]}, "then": {"$ref": f"#/$defs/op_{op}"}}
              for op in C.OPS]
    case = {"type": "object", "$ref": "#/$defs/case_keys", "required": ["id"], "allOf": per_op}
    # a case without its own op takes the op of defaults: (and then needs one there)
    from_defaults = [{"if": {"properties": {"defaults": {"properties": {"op": {"const": op}}, "required": ["op"]}},
                             "required": ["defaults"]},
                      "then": {"properties": {"cases": {"items": {"if": {"not": {"required": ["op"]}},
                                                                  "then": {"$ref": f"#/$defs/op_{op}"}}}}}}
                     for op in C.OPS]
    needs_op = {"if": {"not": {"properties": {"defaults": {"type": "object", "required": ["op"]}},
                               "required": ["defaults"]}},
                "then": {"properties": {"cases": {"items": {"required": ["op"]}}}}}
    rules = "\n".join(f"- {r.key} ({r.allowed.strip()}): {r.why}" for r in CROSS_FIELD)
    return {
        "$schema": DIALECT,
        "title": "normconf case file",
        "description": ("Cases for the normconf conformance suite (README, 'Adding a case'). Generated by "
                        "`python -m normconf schema` from normconf/cases.py; the loader also checks what "
                        "needs several places of the file at once:\n" + rules),
        "type": "object",
        "properties": {
            "defaults": {"description": _doc("defaults"), "type": ["object", "null"], "$ref": "#/$defs/case_keys"},
            "cases": {"description": _doc("cases"), "type": "array", "items": {"$ref": "#/$defs/case"}},
        },
        "additionalProperties": False,
        "allOf": [needs_op, *from_defaults],
        "$defs": {"case": case,
                  "case_keys": {"properties": case_props, "additionalProperties": False},
                  **{f"op_{op}": _op_rules(op) for op in C.OPS},
                  "input": _input(),
                  "params": {"description": _doc("params"), "properties": params,
                             "additionalProperties": False},
                  **_defs()},
    }


def known_schema() -> dict:
    """The JSON Schema of ``known_discrepancies.yaml``."""
    text = {"type": "string", "minLength": 1, "pattern": r"\S"}
    props: dict[str, Schema] = {
        "adapter": dict(text), "case": dict(text), "reason": dict(text),
        "link": {"type": "string", "pattern": "^https://"},
        "cause": {"enum": list(K.CAUSES)},
        "outputs": {"type": ["array", "null"], "items": {"enum": list(K.OUTPUT_NAMES)}},
        "dtypes": {"type": ["array", "null"], "items": {"enum": list(C.DTYPES)}},
        "platform_dependent": {"type": "boolean", "default": False},
    }
    assert set(props) == set(K.KEYS), "normconf.known.KEYS changed: update normconf.schema.known_schema"
    for key in K.KEYS:
        props[key]["description"] = K.DOCS[key]
    props["cause"]["description"] += " " + "; ".join(f"{c}: {K.CAUSE_DOCS[c]}" for c in K.CAUSES) + "."
    return {
        "$schema": DIALECT,
        "title": "normconf known discrepancies",
        "description": ("cases/known_discrepancies.yaml: mismatches seen, explained and linked. Generated by "
                        "`python -m normconf schema` from normconf/known.py."),
        "type": "object",
        "properties": {"entries": {"type": "array", "description": K.DOCS["entries"], "items": {
            "type": "object", "properties": {k: props[k] for k in K.KEYS}, "required": list(K.REQUIRED),
            "additionalProperties": False}}},
        "additionalProperties": False,
    }


def schemas() -> dict[str, dict]:
    """File name -> schema, as shipped in ``normconf/schemas/``."""
    return {CASE_SCHEMA: case_file_schema(), KNOWN_SCHEMA: known_schema()}


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write(out: str | Path = SCHEMA_DIR) -> list[Path]:
    """Write both schemas into ``out`` (created); returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in schemas().items():
        (out / name).write_text(render(schema), encoding="utf-8")
        paths.append(out / name)
    return paths


def stale(folder: str | Path = SCHEMA_DIR) -> list[str]:
    """The schema files in ``folder`` that differ from what the tables give (or are missing)."""
    folder = Path(folder)
    return [name for name, schema in schemas().items()
            if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != render(schema)]

"""The JSON Schemas editors use (normconf/schema.py) against the loader they stand for.

The shipped schemas are what the validator's tables generate; every shipped file validates; each
case file points at its schema; and on mutated copies of the shipped cases the schema and the
loader agree, except for the cross-field rules the schema documents (schema.CROSS_FIELD).
"""
import copy
import json
import os
import random
from pathlib import Path

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")

from normconf import cases as C  # noqa: E402
from normconf import known as K  # noqa: E402
from normconf import schema  # noqa: E402
from normconf.cli import main  # noqa: E402
from normconf.yamlload import load as load_yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "cases"
KNOWN_FILE = CASES / "known_discrepancies.yaml"
CASE_VALIDATOR = jsonschema.Draft202012Validator(schema.case_file_schema())
KNOWN_VALIDATOR = jsonschema.Draft202012Validator(schema.known_schema())
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def case_files():
    return sorted(p for p in CASES.rglob("*.y*ml") if C.is_case_file(p))


def schema_errors(doc, validator=CASE_VALIDATOR):
    return sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))


# ----------------------------------------------------------------------------- generated, shipped, valid

def test_shipped_schemas_are_the_generated_ones():
    assert schema.stale() == [], "normconf/schemas/ is stale: run `python -m normconf schema`"
    for name, generated in schema.schemas().items():
        shipped = json.loads((schema.SCHEMA_DIR / name).read_text(encoding="utf-8"))
        assert shipped == generated
        jsonschema.Draft202012Validator.check_schema(shipped)
        assert shipped["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_command_writes_and_checks(tmp_path, capsys):
    assert main(["schema", "--check"]) == 0
    assert main(["schema", "--out", str(tmp_path)]) == 0
    for name in (schema.CASE_SCHEMA, schema.KNOWN_SCHEMA):
        assert (tmp_path / name).read_text() == (schema.SCHEMA_DIR / name).read_text()
    (tmp_path / schema.KNOWN_SCHEMA).write_text("{}\n")
    assert main(["schema", "--check", "--out", str(tmp_path)]) == 1
    assert schema.KNOWN_SCHEMA in capsys.readouterr().err


def test_the_schema_follows_the_tables():
    """Every op, dtype, cause, parameter and its default come from the validator's tables."""
    s = schema.case_file_schema()
    assert s["$defs"]["case_keys"]["properties"]["op"]["enum"] == list(C.OPS)
    assert s["$defs"]["input"]["properties"]["dtype"]["enum"] == list(C.DTYPES)
    params = s["$defs"]["params"]["properties"]
    assert set(params) == {k for spec in C.PARAMS.values() for k in spec}
    assert params["momentum"]["default"] == 0.1
    # eps's default depends on the op: given per op, not once for all
    assert "default" not in params["eps"]
    for op in ("instance_norm", "batch_norm", "layer_norm", "group_norm", "rms_norm"):
        assert s["$defs"][f"op_{op}"]["properties"]["params"]["properties"]["eps"]["default"] == C.PARAMS[op]["eps"]
    assert s["$defs"]["op_rms_norm"]["properties"]["params"]["properties"]["eps"]["default"] == 1.0e-6
    assert "default" not in params["groups"]  # required: no default
    for op, spec in C.PARAMS.items():
        rules = s["$defs"][f"op_{op}"]["properties"]["params"]
        assert rules["propertyNames"]["enum"] == list(spec)
    for key in C.CASE_KEYS:
        assert s["$defs"]["case_keys"]["properties"][key]["description"] == C.DOCS[key]
    k = schema.known_schema()["properties"]["entries"]["items"]
    assert list(k["properties"]) == list(K.KEYS) and k["properties"]["cause"]["enum"] == list(K.CAUSES)
    assert k["properties"]["platform_dependent"] == {"type": "boolean", "default": False,
                                                      "description": K.DOCS["platform_dependent"]}


def test_every_shipped_file_validates():
    files = case_files()
    assert len(files) >= 10
    for path in files:
        errors = schema_errors(load_yaml(path.read_text(encoding="utf-8")))
        assert not errors, f"{path}: " + "; ".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors)
    errors = schema_errors(load_yaml(KNOWN_FILE.read_text(encoding="utf-8")), KNOWN_VALIDATOR)
    assert not errors, [e.message for e in errors]


def test_every_case_file_points_at_its_schema():
    """First line: yaml-language-server's modeline, a path relative to the YAML file."""
    for path in case_files() + [KNOWN_FILE]:
        target = schema.KNOWN_SCHEMA if path == KNOWN_FILE else schema.CASE_SCHEMA
        first = path.read_text(encoding="utf-8").splitlines()[0]
        prefix = "# yaml-language-server: $schema="
        assert first.startswith(prefix), f"{path}: first line is {first!r}, not the schema modeline"
        ref = first[len(prefix):]
        assert (path.parent / ref).resolve() == (schema.SCHEMA_DIR / target).resolve(), f"{path}: {ref}"
        assert ref == Path(os.path.relpath(schema.SCHEMA_DIR / target, path.parent)).as_posix()


# ----------------------------------------------------------------------------- both refuse malformed cases

MALFORMED = [
    "{id: a, op: instance_nrom, input: {shape: [1, 2, 3]}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {epsilon: 1.0e-3}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {eps: 1e-5}}",  # YAML 1.1: a string
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {eps: -1.0}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {groups: 2}}",  # not an instance_norm param
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3], dtype: float8}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3], layout: nhwc}}",
    "{id: a, op: instance_norm, input: {shape: [1, 0, 3]}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2]}}",
    "{id: a, op: batch_norm, input: {shape: [1, 2, 3, 4, 5, 6]}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3], generator: {dist: normal, sigma: 2}}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3], generator: {dist: gamma}}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3], generator: {seed: -1}}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3], data: [[[1, 2, 3]], [[4, 5, 6]]], generator: {seed: 1}}}",
    "{id: a, op: batch_norm, input: {shape: [2, 2, 3]}, params: {training: 'yes'}}",
    "{id: a, op: batch_norm, input: {shape: [2, 2, 3]}, params: {momentum: 1.5}}",
    "{id: a, op: batch_norm, input: {shape: [2, 2, 3]}, params: {steps: 0}}",
    "{id: a, op: batch_norm, input: {shape: [2, 2, 3]}, params: {running_var: [1.0, -1.0]}}",
    "{id: a, op: batch_norm, input: {shape: [2, 2, 3]}, params: {weight: {generator: {dist: normal}, seed: 1}}}",
    "{id: a, op: channel_stats, input: {shape: [2, 2, 3]}, params: {method: mean_of_stds}}",
    "{id: a, op: normalize, input: {shape: [2, 2, 3]}, params: {mean: 0.5, std: 0}}",
    "{id: a, op: layer_norm, input: {shape: [2, 4]}, params: {axes: []}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, expect: {values: {mean: [1, 1]}}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, expect: {tolerance: {atol: -1.0}}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, expect: {tolerance: {}}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, expect: {tol: {atol: 1.0}}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, matrix: {foo.bar: [1]}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, matrix: {input.dtype: [float32, float8]}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, matrix: {params.eps: []}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, tags: stability}",
    "{id: Bad Id, op: instance_norm, input: {shape: [1, 2, 3]}}",
    "{id: a, input: {shape: [1, 2, 3]}}",  # no op, and none in defaults
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, parms: {eps: 1.0e-3}}",
    "{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: [eps]}",
]


@pytest.mark.parametrize("entry", MALFORMED)
def test_a_malformed_case_is_refused_by_both(entry):
    text = f"cases:\n  - {entry}\n"
    _, errors = C.load_text(text, "demo.yaml")
    assert errors, "the loader accepted it"
    assert schema_errors(yaml.safe_load(text)), f"the schema accepted what the loader refuses: {errors[0]}"


@pytest.mark.parametrize("text", [
    "defaults: {op: group_norm}\ncases:\n  - {id: a, input: {shape: [1, 4, 3]}, params: {groups: 2, eps: 'small'}}\n",
    "defaults: {op: group_norm}\ncases:\n  - {id: a, input: {shape: [1, 4, 3]}, params: {groups: 2, training: false}}\n",
    "defaults: {op: layer_norm}\ncases:\n  - {id: a, input: {shape: [1, 2, 3, 4, 5, 6, 7]}, params: {groups: 2}}\n",
    "defaults: {op: instance_norm, paramz: {}}\ncases:\n  - {id: a, input: {shape: [1, 4, 3]}}\n",
    "defaults: {op: instance_norm}\nextra: 1\ncases:\n  - {id: a, input: {shape: [1, 4, 3]}}\n",
])
def test_the_op_of_defaults_decides_a_case_s_parameters(text):
    cases, errors = C.load_text(text, "demo.yaml")
    assert cases == [] and errors
    assert schema_errors(yaml.safe_load(text))


def test_valid_cases_the_schema_must_not_flag():
    """Things the loader accepts that a too strict schema would underline in an editor."""
    text = """
defaults:
  op: group_norm
  input: {generator: {dist: uniform, low: -1.0, high: 1.0}}
cases:
  - {id: own_seed, input: {shape: [1, 4, 3], generator: {seed: 7}}, params: {groups: 2}}
  - {id: literal, input: {shape: [1, 4, 1], data: [[[1.0], [.nan], [.inf], [-2]]]}, params: {groups: 4}}
  - {id: empty_batch, input: {shape: [0, 4, 3], data: []}, params: {groups: 1, weight: {generator: {dist: normal}}}}
  - {id: other_op, op: batch_norm, input: {shape: [2, 3]}, params: {momentum: null, weight: null,
     running_var: [1.0, .nan, 0.0]}, expect: {values: {running_var: [1, 1, 1]}, tolerance: {atol: 0.5}}}
  - {id: m, input: {shape: [1, 4, 2]}, matrix: {params.groups: [1, 2, 4], input.dtype: [float16, bfloat16]}}
  - {id: stats, op: channel_stats, input: {shape: [2, 3]}, params: {method: per_image_mean, variance: null}}
  - {id: norm, op: normalize, input: {shape: [2, 2]}, params: {mean: [0.5, 1], std: 2, grad: true,
     grad_output: {generator: {dist: constant, value: 1.0}}}, expect: {values: {grad_x: [[0.5, 0.5], [0.5, 0.5]]}}}
"""
    cases, errors = C.load_text(text, "demo.yaml")
    assert errors == [], [str(e) for e in errors]
    assert not schema_errors(yaml.safe_load(text)), [e.message for e in schema_errors(yaml.safe_load(text))]


# ----------------------------------------------------------------------------- mutated shipped cases

KEY_POOL = sorted({*C.CASE_KEYS, *C.INPUT_KEYS, *(k for spec in C.PARAMS.values() for k in spec),
                   *(k for keys in C.GENERATOR_KEYS.values() for k in keys), "values", "tolerance", "atol",
                   "rtol", "y", "running_var", "epsilon", "bogus"})
VALUE_POOL = ["text", "1e-5", -1, 0, 1, 3, 2.5, 1.0, -0.5, 1.0e6, True, False, None, [], [1, 2], [[1.0, 2.0]],
              [0, 1], [-1], {}, {"dist": "normal"}, {"generator": {"dist": "uniform"}}, {"atol": 1.0},
              float("nan"), float("inf"), *C.OPS, *C.DTYPES, *C.LAYOUTS, *C.DIVISORS, *C.METHODS, "normal"]


def _paths(value, prefix=()):
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list) and len(value) <= 8:  # not into literal data
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _mutate(entry: dict, rng: random.Random) -> tuple[dict, str, str]:
    """One random change: (mutant, what was done, the dotted key it touched)."""
    entry = copy.deepcopy(entry)
    paths = [p for p, _ in _paths(entry)]
    kind = rng.choice(["replace", "replace", "delete", "add"])
    if kind == "add":
        dicts = [(p, v) for p, v in _paths(entry) if isinstance(v, dict)]
        path, target = rng.choice(dicts)
        key, value = rng.choice(KEY_POOL), rng.choice(VALUE_POOL)
        target[key] = copy.deepcopy(value)
        dotted = ".".join(map(str, path + (key,)))
        return entry, f"add {dotted} = {value!r}", dotted
    path = rng.choice([p for p in paths if p])
    parent = entry
    for part in path[:-1]:
        parent = parent[part]
    if kind == "delete":
        del parent[path[-1]]
        dotted = ".".join(map(str, path))
        return entry, f"delete {dotted}", dotted
    value = rng.choice(VALUE_POOL)
    parent[path[-1]] = copy.deepcopy(value)
    dotted = ".".join(map(str, path))
    return entry, f"set {dotted} = {value!r}", dotted


def _overridden(dotted: str, *mappings) -> bool:
    """Whether a matrix: of the case or of defaults: replaces the value at ``dotted`` in every expanded case
    (the loader never reads it; the schema still checks it, as an editor should)."""
    for mapping in mappings:
        matrix = (mapping or {}).get("matrix")
        if isinstance(matrix, dict) and any(dotted == k or dotted.startswith(f"{k}.") for k in map(str, matrix)):
            return True
    return False


def test_mutated_cases_schema_and_loader_agree():
    """On mutated copies of every shipped case: the loader accepts => the schema accepts (editors never
    underline a valid case), and the schema accepts but the loader refuses => one of CROSS_FIELD."""
    rng = random.Random(20261130)
    counts = {"both_accept": 0, "both_refuse": 0, "cross_field": 0, "overridden": 0}
    too_strict, missed = [], []
    for path in case_files():
        doc = load_yaml(path.read_text(encoding="utf-8"))
        entries = doc.get("cases") or []
        for entry in rng.sample(entries, min(len(entries), 25)):
            for _ in range(8):
                mutant, what, dotted = _mutate(entry, rng)
                out = {"defaults": doc["defaults"]} if doc.get("defaults") is not None else {}
                mutant_doc = {**out, "cases": [mutant]}
                text = yaml.dump(mutant_doc, Dumper=DUMPER, sort_keys=False)
                _, errors = C.load_text(text, "mutant.yaml")
                flagged = schema_errors(mutant_doc)  # plain types: the dict is what the text reads back as
                if not errors and flagged and _overridden(dotted, mutant, doc.get("defaults")):
                    counts["overridden"] += 1
                elif not errors and flagged:
                    too_strict.append(f"{path.name}: {what}: {flagged[0].message[:160]}")
                elif errors and not flagged:
                    rule = schema.cross_field_rule(errors[0])
                    if rule is None:
                        missed.append(f"{path.name}: {what}: {errors[0]}")
                    counts["cross_field"] += 1
                else:
                    counts["both_refuse" if errors else "both_accept"] += 1
    assert not too_strict, "the schema refuses cases the loader accepts:\n" + "\n".join(too_strict[:20])
    assert not missed, "the schema accepts, undocumented, what the loader refuses:\n" + "\n".join(missed[:20])
    total = sum(counts.values())
    assert total >= 1000, counts
    # the schema is not a formality: it catches most of what the loader refuses
    assert counts["both_refuse"] >= 3 * counts["cross_field"], counts
    assert counts["both_accept"] >= total // 10, counts


KNOWN_VALUE_POOL = ["", " ", "torch", "http://example.org", "https://example.org", None, True, "true", 1, [],
                    ["y"], ["yy"], ["float16"], ["float8"], "eps_value", "eps_valeu", {}, [1]]
KNOWN_KEY_POOL = [*K.KEYS, "causes", "note"]


def test_mutated_known_entries_schema_and_loader_agree(tmp_path):
    """known_discrepancies.yaml has no cross-field rule: the schema and the loader accept the same entries."""
    rng = random.Random(7)
    entries = load_yaml(KNOWN_FILE.read_text(encoding="utf-8"))["entries"]
    disagree, refused = [], 0
    for i in range(400):
        entry = copy.deepcopy(rng.choice(entries))
        kind = rng.choice(["set", "delete", "add"])
        key = rng.choice(list(entry) if kind != "add" else KNOWN_KEY_POOL)
        if kind == "delete":
            del entry[key]
        else:
            entry[key] = copy.deepcopy(rng.choice(KNOWN_VALUE_POOL))
        path = tmp_path / f"k{i}.yaml"
        path.write_text(yaml.safe_dump({"entries": [entry]}, sort_keys=False))
        try:
            K.load(path)
            loader_ok = True
        except K.KnownError:
            loader_ok, refused = False, refused + 1
        schema_ok = not schema_errors(yaml.safe_load(path.read_text()), KNOWN_VALIDATOR)
        if loader_ok != schema_ok:
            disagree.append(f"{kind} {key}: loader {'accepts' if loader_ok else 'refuses'}, "
                            f"schema {'accepts' if schema_ok else 'refuses'}: {entry}")
    assert not disagree, "\n".join(disagree[:10])
    assert 100 <= refused <= 350, refused


def test_cross_field_rules_name_real_loader_messages():
    """Each documented rule is matched by a loader error it stands for (no dead rule)."""
    texts = {
        "unique within their file": "cases:\n  - {id: a, op: layer_norm, input: {shape: [2, 3]}}\n"
                                    "  - {id: a, op: layer_norm, input: {shape: [2, 3]}}\n",
        "a divisor of C": "cases:\n  - {id: a, op: group_norm, input: {shape: [1, 4, 3]}, params: {groups: 3}}\n",
        "is required for": "cases:\n  - {id: a, op: group_norm, input: {shape: [1, 4, 3]}}\n",
        "a list of shape": "cases:\n  - {id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {weight: [1.0]}}\n",
        "finite": "cases:\n  - {id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {eps: .inf}}\n",
        "integer": "cases:\n  - {id: a, op: group_norm, input: {shape: [1, 4, 3]}, params: {groups: 2.0}}\n",
        ">= low": "cases:\n  - {id: a, op: layer_norm, input: {shape: [2, 3], generator: {dist: uniform, low: 1, high: 0}}}\n",
        "only with grad": "cases:\n  - {id: a, op: layer_norm, input: {shape: [2, 3]}, params: {grad_output: {generator: {dist: normal}}}}\n",
        "dims in [-": "cases:\n  - {id: a, op: layer_norm, input: {shape: [2, 3]}, params: {axes: [5]}}\n",
        "a nested list of shape": "cases:\n  - {id: a, op: layer_norm, input: {shape: [2, 3], data: [[1, 2]]}}\n",
    }
    for allowed, text in texts.items():
        _, errors = C.load_text(text, "demo.yaml")
        assert errors and not schema_errors(yaml.safe_load(text)), allowed
        rule = schema.cross_field_rule(errors[-1])
        assert rule is not None and rule.allowed == allowed, (allowed, str(errors[-1]))

"""The case loader: every malformed case is one clear CaseError, and the other cases still load."""
import itertools
import re
from pathlib import Path

import pytest
import yaml

from normconf.cases import DTYPES, LAYOUTS, OPS, CaseError, load_file, load_paths, load_text

ROOT = Path(__file__).resolve().parents[1]
FILE = "suite/demo.yaml"
# Two valid cases around the bad one: neither may be lost because of it.
BEFORE = "  - {id: first, op: instance_norm, input: {shape: [1, 2, 3]}}\n"
AFTER = "  - {id: last, op: layer_norm, input: {shape: [2, 4]}}\n"


def load_with_neighbours(bad: str):
    """Load a file holding ``bad`` (one YAML list entry) between two good cases; return its one error."""
    cases, errors = load_text("cases:\n" + BEFORE + bad + AFTER, FILE)
    assert [c.id for c in cases] == ["first", "last"], "a malformed case stopped its neighbours from loading"
    assert len(errors) == 1, errors
    assert isinstance(errors[0], CaseError)
    return errors[0]


def assert_names(err: CaseError, case_id: str, key: str, found: str, allowed: list[str]):
    """The message names the file, the case, the key, what was found and what is allowed."""
    text = str(err)
    assert FILE in text and err.file == FILE
    assert repr(case_id) in text and err.case_id == case_id
    assert repr(key) in text and err.key == key
    assert f"found {found}" in text, text
    assert "allowed:" in text
    tail = text.split("allowed:", 1)[1]
    for word in allowed:
        assert word in tail, f"{word!r} missing from what is allowed: {text}"


# ----------------------------------------------------------------------------- one error per bad case

def test_unknown_op():
    err = load_with_neighbours("  - {id: a, op: instance_nrom, input: {shape: [1, 2, 3]}}\n")
    assert_names(err, "a", "op", "'instance_nrom'", list(OPS))


def test_typo_in_params_key():
    err = load_with_neighbours("  - {id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {epsilon: 1.0e-3}}\n")
    assert_names(err, "a", "params.epsilon", "'epsilon'", ["eps", "variance", "weight", "bias"])


def test_unknown_top_level_case_key():
    err = load_with_neighbours("  - {id: a, op: instance_norm, input: {shape: [1, 2, 3]}, parms: {eps: 1.0e-3}}\n")
    assert_names(err, "a", "parms", "'parms'", ["id", "op", "input", "params", "expect", "matrix", "tags"])


def test_unknown_input_key():
    err = load_with_neighbours("  - {id: a, op: instance_norm, input: {shape: [1, 2, 3], dtyp: float16}}\n")
    assert_names(err, "a", "input.dtyp", "'dtyp'", ["shape", "layout", "dtype", "data", "generator"])


def test_group_norm_without_groups():
    err = load_with_neighbours("  - {id: a, op: group_norm, input: {shape: [1, 4, 3]}}\n")
    assert_names(err, "a", "params.groups", "'nothing'", ["groups is required for group_norm"])


def test_groups_must_divide_channels():
    err = load_with_neighbours("  - {id: a, op: group_norm, input: {shape: [1, 4, 3]}, params: {groups: 3}}\n")
    assert_names(err, "a", "params.groups", "3", ["a divisor of C = 4"])


@pytest.mark.parametrize("entry, key, found, allowed", [
    ("{id: a, op: instance_norm, input: {shape: '1, 2, 3'}}", "input.shape", "'1, 2, 3'", ["list of positive integers"]),
    ("{id: a, op: instance_norm, input: {shape: [1, 0, 3]}}", "input.shape", "[1, 0, 3]", ["positive integers"]),
    ("{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {eps: small}}", "params.eps", "'small'", ["a finite number >= 0"]),
    ("{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {eps: true}}", "params.eps", "True", ["a finite number >= 0"]),
    ("{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {weight: [1, 2, 3]}}", "params.weight", "'shape [3]'", ["a list of shape [2]"]),
    ("{id: a, op: layer_norm, input: {shape: [2, 3, 4]}, params: {axes: [2], bias: [1, 2, 3]}}", "params.bias", "'shape [3]'", ["a list of shape [4]"]),
    ("{id: a, op: batch_norm, input: {shape: [2, 2, 3]}, params: {training: 'yes'}}", "params.training", "'yes'", ["true, false"]),
    ("{id: a, op: batch_norm, input: {shape: [2, 2, 3]}, params: {training: 1}}", "params.training", "1", ["true, false"]),
    ("{id: a, op: batch_norm, input: {shape: [2, 2, 3]}, params: {momentum: 1.5}}", "params.momentum", "1.5", ["[0, 1]", "null"]),
    ("{id: a, op: batch_norm, input: {shape: [2, 2, 3]}, params: {momentum: -0.1}}", "params.momentum", "-0.1", ["[0, 1]"]),
    ("{id: a, op: batch_norm, input: {shape: [2, 2, 3]}, params: {running_var: [1.0, -1.0]}}", "params.running_var", "[1.0, -1.0]", [">= 0"]),
    ("{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {variance: n-1}}", "params.variance", "'n-1'", ["biased, unbiased"]),
])
def test_wrong_types_and_ranges(entry, key, found, allowed):
    err = load_with_neighbours(f"  - {entry}\n")
    assert_names(err, "a", key, found, allowed)


def test_negative_eps():
    err = load_with_neighbours("  - {id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {eps: -1.0e-5}}\n")
    assert_names(err, "a", "params.eps", "-1e-05", [">= 0"])


def test_eps_that_yaml_reads_as_text_gets_a_hint():
    # YAML 1.1 (safe_load) reads 1e-5 as the string '1e-5': the message must say why it is refused.
    err = load_with_neighbours("  - {id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {eps: 1e-5}}\n")
    assert_names(err, "a", "params.eps", "'1e-5'", ["a finite number >= 0"])
    assert "1.0e-5" in str(err)


def test_duplicate_ids():
    text = "cases:\n" + BEFORE + "  - {id: first, op: layer_norm, input: {shape: [2, 4]}}\n" + AFTER
    cases, errors = load_text(text, FILE)
    assert [c.id for c in cases] == ["first", "last"]
    assert cases[0].op == "instance_norm"  # the first one wins, the second is the error
    assert len(errors) == 1
    assert_names(errors[0], "first", "id", "'first'", ["unique"])


def test_bad_id():
    err = load_with_neighbours("  - {id: Bad Id, op: instance_norm, input: {shape: [1, 2, 3]}}\n")
    assert_names(err, "Bad Id", "id", "'Bad Id'", ["[a-z0-9_.-]+"])


def test_literal_data_shape_disagrees_with_input_shape():
    err = load_with_neighbours("  - {id: a, op: instance_norm, input: {shape: [1, 2, 2], data: [[[1, 2, 3], [4, 5, 6]]]}}\n")
    assert_names(err, "a", "input.data", "'nested list of shape [1, 2, 3]'", ["shape [1, 2, 2]"])


def test_ragged_literal_data():
    err = load_with_neighbours("  - {id: a, op: instance_norm, input: {shape: [1, 2, 2], data: [[[1, 2], [3]]]}}\n")
    assert_names(err, "a", "input.data", "'nested list of shape None'", ["shape [1, 2, 2]"])


def test_unknown_dtype():
    err = load_with_neighbours("  - {id: a, op: instance_norm, input: {shape: [1, 2, 3], dtype: float8}}\n")
    assert_names(err, "a", "input.dtype", "'float8'", list(DTYPES))


def test_unknown_layout():
    err = load_with_neighbours("  - {id: a, op: instance_norm, input: {shape: [1, 2, 3], layout: nhwc}}\n")
    assert_names(err, "a", "input.layout", "'nhwc'", list(LAYOUTS))


@pytest.mark.parametrize("generator, key, found, allowed", [
    ("{dist: normal, sigma: 2}", "input.generator.sigma", "'sigma'", ["dist, mean, std, seed"]),
    ("{dist: uniform, low: 0, high: 1, mean: 0}", "input.generator.mean", "'mean'", ["dist, low, high, seed"]),
    ("{dist: gamma}", "input.generator", "{'dist': 'gamma'}", ["normal|uniform|constant"]),
    ("{dist: normal, seed: -1}", "input.generator.seed", "-1", ["an integer >= 0"]),
    ("{dist: normal, std: -1.0}", "input.generator.std", "-1.0", [">= 0"]),
    ("{dist: uniform, low: 2, high: 1}", "input.generator.high", "1", [">= low"]),
])
def test_bad_generator(generator, key, found, allowed):
    err = load_with_neighbours(f"  - {{id: a, op: instance_norm, input: {{shape: [1, 2, 3], generator: {generator}}}}}\n")
    assert_names(err, "a", key, found, allowed)


def test_bad_generator_of_a_parameter():
    err = load_with_neighbours("  - {id: a, op: instance_norm, input: {shape: [1, 2, 3]}, "
                               "params: {weight: {generator: {dist: normal, scale: 2}}}}\n")
    assert_names(err, "a", "params.weight.generator.scale", "'scale'", ["dist, mean, std, seed"])


def test_expect_values_of_an_output_the_op_lacks():
    err = load_with_neighbours("  - {id: a, op: instance_norm, input: {shape: [1, 2, 3]}, expect: {values: {running_var: [1, 1]}}}\n")
    assert_names(err, "a", "expect.values.running_var", "'running_var'", ["outputs of instance_norm: y"])


def test_error_of_a_case_without_id_names_its_position():
    # with no usable id, the case can only be named by its position: two such errors must differ
    text = ("cases:\n" + BEFORE + "  - {op: instance_norm, input: {shape: [1, 2, 3]}}\n"
            "  - {id: 5, op: layer_norm, input: {shape: [2, 3]}}\n" + AFTER)
    cases, errors = load_text(text, FILE)
    assert [c.id for c in cases] == ["first", "last"]
    assert len(errors) == 2 and all(e.key == "id" and FILE in str(e) for e in errors)
    assert "found None" in str(errors[0]) and "found 5" in str(errors[1])
    for error in errors:
        assert re.search(r"#\d", str(error)), f"the case is not named by its position: {error}"
    assert errors[0].case_id != errors[1].case_id


# ----------------------------------------------------------------------------- unsafe YAML

def test_python_tags_are_refused_and_run_no_code(tmp_path):
    marker = tmp_path / "pwned"
    text = ("cases:\n" + BEFORE +
            f"  - !!python/object/apply:os.system ['touch {marker}']\n"
            "  - {id: b, op: instance_norm, input: !!python/object:os.system {shape: [1, 2, 3]}}\n" + AFTER)
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)  # the loader's own guarantee, checked: safe_load refuses the tag
    cases, errors = load_text(text, FILE)
    assert not marker.exists(), "a !!python tag ran code"
    assert errors and all(isinstance(e, CaseError) for e in errors)
    assert FILE in str(errors[0])
    assert "safe_load" in str(errors[0])


def test_python_tag_error_names_the_tag_case_and_spares_the_other_cases():
    # docs/case-format.md: a malformed case names file, case id, key, what was found; the other cases still run.
    text = ("cases:\n" + BEFORE +
            "  - {id: b, op: instance_norm, input: {shape: [1, 2, 3], generator: !!python/object:os.system {}}}\n" + AFTER)
    cases, errors = load_text(text, FILE)
    assert len(errors) == 1
    message = str(errors[0])
    assert "python/object:os.system" in message, f"the refused tag is not named: {message}"
    assert "'b'" in message, f"the case is not named: {message}"
    assert [c.id for c in cases] == ["first", "last"], "one bad tag dropped every case of the file"


def test_file_level_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases:\n  - {id: a, op: instance_norm, input: {shape: [1, 2, 3]}}\nextras: 1\n")
    good = tmp_path / "good.yaml"
    good.write_text("cases:\n" + BEFORE)
    cases, errors = load_paths([tmp_path])
    assert [c.key for c in cases] == ["good/first"]  # the other file still loads
    assert len(errors) == 1 and str(bad) in str(errors[0]) and "'extras'" in str(errors[0])
    assert "defaults, cases" in str(errors[0])


@pytest.mark.parametrize("text, found", [
    ("- just a list\n", "'list'"),
    ("cases: {id: a}\n", "{'id': 'a'}"),
    ("cases:\n  - [1, 2\n", "YAML that does not parse"),
])
def test_file_that_is_not_a_case_file(tmp_path, text, found):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    cases, errors = load_file(path)
    assert cases == [] and len(errors) == 1
    assert str(path) in str(errors[0]) and found in str(errors[0]) and "allowed:" in str(errors[0])


def test_missing_file_is_an_error_not_an_exception(tmp_path):
    cases, errors = load_file(tmp_path / "nope.yaml")
    assert cases == [] and len(errors) == 1 and "nope.yaml" in str(errors[0])


# ----------------------------------------------------------------------------- defaults and matrix

def test_defaults_are_deep_merged_and_cases_override_them():
    text = """
defaults:
  input: {dtype: float64, generator: {dist: uniform, low: -1, high: 1, seed: 3}}
  params: {eps: 1.0e-3, variance: unbiased}
  tags: [base]
cases:
  - id: a
    op: instance_norm
    input: {shape: [1, 2, 3], generator: {seed: 7}}
    params: {eps: 0.5}
  - id: b
    op: batch_norm
    input: {shape: [2, 2, 3], dtype: float16}
    tags: [own]
"""
    cases, errors = load_text(text, FILE)
    assert errors == []
    a, b = cases
    # deep: the case's generator keeps the default's dist/low/high, overrides only the seed
    assert a.generator == {"dist": "uniform", "low": -1, "high": 1, "seed": 7}
    assert a.dtype == "float64"
    assert a.params["eps"] == 0.5 and a.params["variance"] == "unbiased"
    assert a.tags == ("base",)
    assert b.dtype == "float16" and b.generator["seed"] == 3
    assert b.params["eps"] == 1.0e-3 and b.params["variance"] == "unbiased"
    assert b.tags == ("own",)
    # the defaults are not shared mutable state between cases
    assert a.raw["input"] is not b.raw["input"]


def test_case_data_overrides_default_generator():
    # "case overrides default": a case that gives literal data replaces the file's default generator.
    text = """
defaults:
  input: {generator: {dist: normal, seed: 1}}
cases:
  - {id: gen, op: instance_norm, input: {shape: [1, 1, 2]}}
  - {id: lit, op: instance_norm, input: {shape: [1, 1, 2], data: [[[1, 2]]]}}
"""
    cases, errors = load_text(text, FILE)
    assert errors == [], [str(e) for e in errors]
    assert [c.id for c in cases] == ["gen", "lit"]
    assert cases[1].data == [[[1, 2]]]


def test_defaults_must_be_a_mapping():
    cases, errors = load_text("defaults: [1]\ncases:\n" + BEFORE, FILE)
    assert cases == [] and len(errors) == 1 and errors[0].key == "defaults"


def test_matrix_expands_to_the_cartesian_product():
    text = """
cases:
  - id: m
    op: instance_norm
    input: {shape: [1, 2, 3]}
    params: {eps: 0.5}
    matrix:
      input.dtype: [float32, float16]
      input.layout: [channels_first, channels_last]
      params.variance: [biased, unbiased]
  - id: plain
    op: instance_norm
    input: {shape: [1, 2, 3]}
"""
    cases, errors = load_text(text, FILE)
    assert errors == []
    assert len(cases) == 2 * 2 * 2 + 1
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids)
    assert "m@dtype=float16,layout=channels_last,variance=unbiased" in ids
    assert ids[-1] == "plain"
    seen = set()
    for case in cases[:-1]:
        assert case.key == f"demo/{case.id}"
        assert case.params["eps"] == 0.5  # untouched keys are kept
        assert "matrix" not in case.raw
        suffix = dict(part.split("=") for part in case.id.split("@")[1].split(","))
        # the values are applied at the dotted key, and the suffix says which
        assert suffix == {"dtype": case.dtype, "layout": case.layout, "variance": case.params["variance"]}
        seen.add((case.dtype, case.layout, case.params["variance"]))
    assert seen == set(itertools.product(["float32", "float16"], ["channels_first", "channels_last"],
                                         ["biased", "unbiased"]))


def test_matrix_suffix_formats_numbers_and_lists():
    text = """
cases:
  - id: m
    op: layer_norm
    input: {shape: [2, 4]}
    matrix: {params.eps: [1.0e-5, 0.25], input.shape: [[2, 4], [3, 4]]}
"""
    cases, errors = load_text(text, FILE)
    assert errors == []
    assert [c.id for c in cases] == ["m@eps=1e-05,shape=2x4", "m@eps=1e-05,shape=3x4",
                                     "m@eps=0.25,shape=2x4", "m@eps=0.25,shape=3x4"]
    assert [c.shape for c in cases] == [(2, 4), (3, 4), (2, 4), (3, 4)]
    assert [c.params["eps"] for c in cases] == [1e-5, 1e-5, 0.25, 0.25]


def test_matrix_value_creates_missing_parents():
    cases, errors = load_text("cases:\n  - {id: m, op: group_norm, input: {shape: [1, 4, 2]}, "
                              "matrix: {params.groups: [1, 2, 4]}}\n", FILE)
    assert errors == []
    assert [c.params["groups"] for c in cases] == [1, 2, 4]


def test_one_bad_matrix_value_spares_the_others():
    cases, errors = load_text("cases:\n  - {id: m, op: instance_norm, input: {shape: [1, 2, 3]}, "
                              "matrix: {params.eps: [1.0e-5, -1.0]}}\n" + AFTER, FILE)
    assert [c.id for c in cases] == ["m@eps=1e-05", "last"]
    assert len(errors) == 1
    assert errors[0].case_id == "m@eps=-1" and errors[0].key == "params.eps"


@pytest.mark.parametrize("matrix, key, found, allowed", [
    ("{foo.bar: [1]}", "matrix", "'foo.bar'", ["input.", "params."]),
    ("{params.eps: []}", "matrix.params.eps", "[]", ["a non-empty list"]),
    ("{params.eps: 0.1}", "matrix.params.eps", "0.1", ["a non-empty list"]),
    ("[params.eps]", "matrix", "['params.eps']", ["{dotted.key: [values, ...]}"]),
])
def test_bad_matrix(matrix, key, found, allowed):
    err = load_with_neighbours(f"  - {{id: a, op: instance_norm, input: {{shape: [1, 2, 3]}}, matrix: {matrix}}}\n")
    assert_names(err, "a", key, found, allowed)


# ----------------------------------------------------------------------------- the shipped cases

def test_every_shipped_case_file_loads():
    files = sorted(p for p in (ROOT / "cases").rglob("*.yaml") if p.name != "known_discrepancies.yaml")
    assert files, "no case files under cases/"
    cases, errors = load_paths([ROOT / "cases"])
    assert errors == [], "\n".join(map(str, errors))
    keys = [c.key for c in cases]
    assert len(keys) == len(set(keys)), "duplicate <file stem>/<id>"
    assert {Path(c.file).name for c in cases} == {p.name for p in files}  # every file contributes
    assert {c.op for c in cases} == set(OPS)
    for path in files:  # and each file alone, with unique ids
        got, bad = load_file(path)
        assert bad == [] and got and len({c.id for c in got}) == len(got)


def test_known_discrepancies_is_not_a_case_file():
    cases, errors = load_paths([ROOT / "cases"])
    assert not any(Path(c.file).name == "known_discrepancies.yaml" for c in cases)
    assert errors == []


def test_doc_defaults_of_a_minimal_case():
    cases, errors = load_text("cases:\n  - {id: a, op: batch_norm, input: {shape: [2, 3]}}\n", FILE)
    assert errors == []
    (case,) = cases
    assert (case.layout, case.dtype) == ("channels_first", "float32")
    assert case.generator == {"dist": "normal", "mean": 0.0, "std": 1.0, "seed": 0}
    design = {"eps": 1.0e-5, "variance": "biased", "weight": None, "bias": None, "training": True,
              "momentum": 0.1, "running_mean": None, "running_var": None, "running_variance": "biased", "steps": 1}
    assert {k: case.params[k] for k in design} == design  # the canonical defaults of docs/case-format.md
    # keys beyond the original table are this project's extensions (README), all off by default
    assert all(not case.params[k] for k in set(case.params) - set(design))
    assert case.outputs == ("y", "running_mean", "running_var")


# ----------------------------------------------------------------------------- a key written twice

DUPLICATE = "each key once per mapping"


def test_duplicate_top_level_key_is_a_file_error():
    text = "cases:\n" + BEFORE + "defaults: {op: layer_norm}\ncases:\n" + AFTER
    cases, errors = load_text(text, FILE)
    assert cases == [] and len(errors) == 1  # which cases: list is meant? neither runs
    err = errors[0]
    assert err.file == FILE and err.case_id is None and err.key == "cases"
    assert str(err) == (f"{FILE}: key 'cases': found key 'cases' appears twice in one mapping (lines 1 and 4); "
                        f"allowed: {DUPLICATE} (PyYAML would silently keep the last value)")


def test_duplicate_key_in_defaults_is_a_file_error():
    text = "defaults:\n  params: {eps: 1.0e-5, eps: 1.0e-3}\ncases:\n" + BEFORE + AFTER
    cases, errors = load_text(text, FILE)
    assert cases == [] and len(errors) == 1
    assert errors[0].key == "defaults.params.eps"
    assert "key 'eps' appears twice in one mapping (line 2, columns 12 and 25)" in str(errors[0])


def test_duplicate_key_of_a_case():
    err = load_with_neighbours("  - id: a\n    op: instance_norm\n    op: layer_norm\n    input: {shape: [1, 2, 3]}\n")
    assert_names(err, "a", "op", "key 'op' appears twice in one mapping (lines 4 and 5)", [DUPLICATE])


def test_duplicate_key_in_params_names_both_columns():
    err = load_with_neighbours("  - {id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {eps: 1.0e-5, eps: 1.0e-3}}\n")
    assert_names(err, "a", "params.eps", "key 'eps' appears twice in one mapping (line 3, columns 68 and 81)",
                 [DUPLICATE])


def test_duplicate_key_in_input():
    err = load_with_neighbours("  - id: a\n    op: instance_norm\n    input:\n      shape: [1, 2, 3]\n"
                               "      generator: {dist: normal, seed: 1}\n      generator: {dist: normal, seed: 2}\n")
    assert_names(err, "a", "input.generator", "key 'generator' appears twice in one mapping (lines 7 and 8)",
                 [DUPLICATE])


def test_duplicate_key_deep_in_a_matrix():
    err = load_with_neighbours("  - id: a\n    op: instance_norm\n    input: {shape: [1, 2, 3]}\n"
                               "    matrix:\n      params.eps: [1.0e-5]\n      params.eps: [1.0e-3]\n")
    assert_names(err, "a", "matrix.params.eps", "key 'params.eps' appears twice in one mapping (lines 7 and 8)", [DUPLICATE])


def test_a_merge_key_is_not_a_duplicate_and_an_alias_serves_two_cases():
    text = ("cases:\n"
            "  - &base {id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {eps: 0.5}}\n"
            "  - {<<: *base, id: b, params: {eps: 0.25}}\n"
            "  - {id: c, op: layer_norm, input: {shape: [2, 3]}, params: &bad {eps: 1.0e-5, eps: 1.0e-3}}\n"
            "  - {id: d, op: layer_norm, input: {shape: [2, 3]}, params: *bad}\n")
    cases, errors = load_text(text, FILE)
    assert [(c.id, c.params["eps"]) for c in cases] == [("a", 0.5), ("b", 0.25)]
    # the shared mapping is reported for both cases that use it, not as a bogus recursion the second time
    assert [(e.case_id, e.key) for e in errors] == [("c", "params.eps"), ("d", "params.eps")]
    assert all("appears twice" in str(e) for e in errors)


# ----------------------------------------------------------------------------- known_discrepancies.yaml

ENTRY = "  - {adapter: torch, case: 'a/*', cause: eps_value, reason: r, link: 'https://example.org/1'%s}\n"


def load_known(tmp_path, text):
    from normconf import known
    path = tmp_path / "known_discrepancies.yaml"
    path.write_text(text)
    return known.load(path)


def known_error(tmp_path, text) -> str:
    from normconf import known
    with pytest.raises(known.KnownError) as info:
        load_known(tmp_path, text)
    return str(info.value)


def test_duplicate_key_in_a_known_entry(tmp_path):
    text = "entries:\n" + ENTRY % "" + "  - adapter: jax\n    case: b\n    cause: eps_value\n" \
           "    reason: r\n    cause: variance_divisor\n    link: https://example.org/2\n"
    message = known_error(tmp_path, text)
    assert "known_discrepancies.yaml: entry #2: key 'cause': found key 'cause' appears twice in one mapping " \
           "(lines 5 and 7); allowed: each key once per mapping" in message


def test_duplicate_entries_key_in_the_known_file(tmp_path):
    message = known_error(tmp_path, "entries:\n" + ENTRY % "" + "entries: []\n")
    assert "key 'entries': found key 'entries' appears twice in one mapping (lines 1 and 3)" in message


def test_known_platform_dependent(tmp_path):
    plain, dependent = load_known(tmp_path, "entries:\n" + ENTRY % "" + ENTRY % ", platform_dependent: true")
    assert plain.platform_dependent is False and dependent.platform_dependent is True
    for bad in ("'yes'", "1", "null"):
        message = known_error(tmp_path, "entries:\n" + ENTRY % f", platform_dependent: {bad}")
        assert "entry #1: key 'platform_dependent'" in message and "allowed: true, false" in message


@pytest.mark.parametrize("extra, key, allowed", [
    (", outputs: [yy]", "outputs", "y, running_mean"),
    (", dtypes: [float8]", "dtypes", "float64, float32"),
    (", causes: eps_value", "causes", "platform_dependent"),
])
def test_known_entry_names_checked(tmp_path, extra, key, allowed):
    message = known_error(tmp_path, "entries:\n" + ENTRY % extra)
    assert f"entry #1: key {key!r}" in message and allowed in message.split("allowed:")[1]


def test_misspelt_entries_key_is_an_error(tmp_path):
    message = known_error(tmp_path, "entires:\n" + ENTRY % "")
    assert "key 'entires'" in message and "allowed: top-level keys: entries" in message


def test_known_file_refuses_python_tags(tmp_path):
    import yaml as pyyaml
    marker = tmp_path / "pwned"
    with pytest.raises(pyyaml.YAMLError):
        load_known(tmp_path, f"entries: !!python/object/apply:os.system ['touch {marker}']\n")
    assert not marker.exists()

"""Bad input at run time (cases/bad_input.yaml): NaN/inf inputs and parameters, an empty batch,
float16 overflow. What is a valid input the oracle follows through the math, what is a case error,
and that comparing and reporting survive NaN and empty arrays."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from adapters.numpy_adapter import NumpyAdapter
from normconf import oracle
from normconf.cases import CaseError, load_text
from normconf.compare import compare
from normconf.engine import evaluate, forget
from normconf.inputs import generate

ROOT = Path(__file__).resolve().parents[1]
FILE = "bad/demo.yaml"


def one(text: str):
    cases, errors = load_text(f"cases:\n  - {text}\n", FILE)
    assert not errors, errors
    return cases[0]


def error_of(text: str) -> CaseError:
    cases, errors = load_text(f"cases:\n  - {text}\n  - {{id: ok, op: layer_norm, input: {{shape: [2, 3]}}}}\n", FILE)
    assert [c.id for c in cases] == ["ok"], "the other case must still load"
    (err,) = errors
    return err


def quiet_reference(case):
    """The oracle's outputs, failing on any RuntimeWarning (NaN, inf and 0/0 are quiet by design)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return oracle.reference(case, generate(case))


# ----------------------------------------------------------------------------- the loader

def test_empty_batch_loads_from_a_generator_and_from_empty_data():
    case = one("{id: e, op: instance_norm, input: {shape: [0, 3, 4]}}")
    assert generate(case)["x"].shape == (0, 3, 4)
    case = one("{id: e, op: batch_norm, input: {shape: [0, 2, 3], data: []}}")
    assert generate(case)["x"].shape == (0, 2, 3)


@pytest.mark.parametrize("shape", ["[2, 0, 3]", "[2, 3, 0]", "[-1, 3, 4]"])
def test_only_the_batch_dim_may_be_zero(shape):
    err = error_of(f"{{id: a, op: instance_norm, input: {{shape: {shape}}}}}")
    assert (err.case_id, err.key) == ("a", "input.shape")
    assert "N may be 0" in str(err) and FILE in str(err)


def test_empty_data_needs_an_empty_batch():
    err = error_of("{id: a, op: instance_norm, input: {shape: [1, 2, 3], data: []}}")
    assert err.key == "input.data" and "[1, 2, 3]" in str(err)


def test_nan_and_inf_literals_load_and_reach_the_inputs():
    case = one("{id: n, op: layer_norm, input: {shape: [1, 4], dtype: float16, data: [[.nan, .inf, -.inf, 1.0]]},"
               " params: {weight: [1.0, .nan, 1.0, 1.0], bias: [.inf, 0.0, 0.0, 0.0]}}")
    inputs = generate(case)
    x = inputs["x"][0]
    assert np.isnan(x[0]) and x[1] == np.inf and x[2] == -np.inf and x[3] == 1.0
    assert np.isnan(inputs["weight"][1]) and inputs["bias"][0] == np.inf


@pytest.mark.parametrize("entry, key", [
    ("{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {eps: .nan}}", "params.eps"),
    ("{id: a, op: instance_norm, input: {shape: [1, 2, 3]}, params: {eps: .inf}}", "params.eps"),
    ("{id: a, op: batch_norm, input: {shape: [2, 2, 3]}, params: {momentum: .nan}}", "params.momentum"),
    ("{id: a, op: batch_norm, input: {shape: [2, 2, 3]}, params: {momentum: .inf}}", "params.momentum"),
    ("{id: a, op: normalize, input: {shape: [1, 2, 3]}, params: {mean: 0.0, std: [1.0, 0.0]}}", "params.std"),
    ("{id: a, op: normalize, input: {shape: [1, 2, 3]}, params: {mean: 0.0, std: [1.0, .inf]}}", "params.std"),
    ("{id: a, op: normalize, input: {shape: [1, 2, 3]}, params: {mean: 0.0, std: .nan}}", "params.std"),
    ("{id: a, op: layer_norm, input: {shape: [2, 3], generator: {dist: normal, mean: .nan}}}", "input.generator.mean"),
    ("{id: a, op: layer_norm, input: {shape: [2, 3], generator: {dist: normal, std: .inf}}}", "input.generator.std"),
    ("{id: a, op: layer_norm, input: {shape: [2, 3], generator: {dist: uniform, low: -.inf}}}", "input.generator.low"),
    ("{id: a, op: layer_norm, input: {shape: [2, 3], generator: {dist: constant, value: .nan}}}", "input.generator.value"),
    ("{id: a, op: layer_norm, input: {shape: [2, 3]}, params: {weight: {generator: {dist: normal, mean: .inf}}}}",
     "params.weight.generator.mean"),
])
def test_non_finite_settings_are_case_errors_naming_the_key(entry, key):
    err = error_of(entry)
    text = str(err)
    assert (err.file, err.case_id, err.key) == (FILE, "a", key)
    assert f"key {key!r}" in text and "found" in text and "allowed:" in text
    assert "finite" in text.split("allowed:", 1)[1] or "[0, 1]" in text.split("allowed:", 1)[1]


# ----------------------------------------------------------------------------- values that overflow the dtype

@pytest.mark.parametrize("entry, key, big", [
    ("{id: o, op: instance_norm, input: {shape: [1, 2, 3], dtype: float16, generator: {dist: normal, mean: 1.0e+5}}}",
     "input.generator", "100001"),
    ("{id: o, op: instance_norm, input: {shape: [1, 2, 3], dtype: float16, generator: {dist: constant, value: 65520.0}}}",
     "input.generator", "65520"),
    ("{id: o, op: layer_norm, input: {shape: [1, 2], dtype: float16, data: [[1.0, -7.0e+4]]}}", "input.data", "70000"),
    ("{id: o, op: layer_norm, input: {shape: [1, 2], dtype: float16}, params: {weight: [1.0, 1.0e+5]}}",
     "params.weight", "100000"),
    ("{id: o, op: layer_norm, input: {shape: [1, 2], dtype: float32, data: [[1.0, 1.0e+39]]}}", "input.data", "1e+39"),
])
def test_finite_values_that_round_to_inf_are_case_errors(entry, key, big):
    case = one(entry)
    with pytest.raises(CaseError) as caught:
        generate(case)
    err = caught.value
    assert (err.file, err.case_id, err.key) == (FILE, "o", key)
    assert big in str(err) and f"overflow {case.dtype}" in str(err) and ".inf" in str(err)


def test_the_largest_values_and_written_inf_are_no_error():
    case = one("{id: m, op: layer_norm, input: {shape: [1, 3], dtype: float16, data: [[65504.0, -65519.0, .inf]]}}")
    assert generate(case)["x"].tolist() == [[65504.0, -65504.0, np.inf]]


def test_an_overflowing_generator_is_an_error_result_not_a_traceback():
    case = one("{id: o, op: instance_norm, input: {shape: [1, 2, 3], dtype: float16, generator: {dist: normal, mean: 1.0e+5}}}")
    forget(case)
    result = evaluate(case, NumpyAdapter())
    assert result["status"] == "error"
    assert result["reason"].startswith("case error: ") and "'input.generator'" in result["reason"]
    assert "traceback" not in result


# ----------------------------------------------------------------------------- the oracle

def test_a_nan_makes_only_its_own_instance_norm_slice_nan():
    case = one("{id: n, op: instance_norm, input: {shape: [2, 2, 4], dtype: float64, "
               "data: [[[1.0, .nan, 3.0, 4.0], [0.5, 1.0, 2.0, 3.0]], [[1.0, -2.0, 0.0, 2.5], [4.0, 1.0, 2.0, 3.5]]]}}")
    y = quiet_reference(case)["y"]
    assert np.isnan(y[0, 0]).all()
    assert np.isfinite(y[0, 1]).all() and np.isfinite(y[1]).all()
    clean = one("{id: c, op: instance_norm, input: {shape: [1, 1, 4], dtype: float64, data: [[[0.5, 1.0, 2.0, 3.0]]]}}")
    np.testing.assert_array_equal(y[0, 1], quiet_reference(clean)["y"][0, 0])


def test_an_inf_gives_an_inf_mean_and_a_nan_spread():
    """mean([1, inf, 3]) = inf (not inf + NaN from the two-pass correction); the deviations meet
    inf - inf, so the variance, std and every y of the slice are NaN."""
    stats = one("{id: s, op: channel_stats, input: {shape: [1, 2, 3], dtype: float64, "
                "data: [[[1.0, .inf, 3.0], [1.0, -.inf, 3.0]]]}}")
    got = quiet_reference(stats)
    assert got["mean"].tolist() == [np.inf, -np.inf]
    assert np.isnan(got["std"]).all()
    norm = one("{id: i, op: instance_norm, input: {shape: [1, 2, 3], dtype: float64, "
               "data: [[[1.0, .inf, 3.0], [1.0, -.inf, 3.0]]]}}")
    assert np.isnan(quiet_reference(norm)["y"]).all()


def test_nan_and_inf_parameters_propagate():
    case = one("{id: p, op: batch_norm, input: {shape: [4, 3, 2], dtype: float64}, "
               "params: {training: false, running_mean: [0.0, .inf, 0.0], running_var: [.inf, 1.0, .nan], "
               "weight: [1.0, 1.0, 1.0], bias: [0.0, 0.0, 0.0]}}")
    y = quiet_reference(case)["y"]
    assert (y[:, 0] == 0).all()  # (x - 0) / inf
    assert (y[:, 1] == -np.inf).all()
    assert np.isnan(y[:, 2]).all()


def test_empty_batch_outputs_are_empty_and_statistics_over_zero_values_nan():
    for text, shape in [("{id: e, op: instance_norm, input: {shape: [0, 3, 4]}}", (0, 3, 4)),
                        ("{id: e, op: layer_norm, input: {shape: [0, 8]}}", (0, 8)),
                        ("{id: e, op: group_norm, input: {shape: [0, 4, 3]}, params: {groups: 2}}", (0, 4, 3)),
                        ("{id: e, op: normalize, input: {shape: [0, 3, 2, 2]}, params: {mean: 0.5, std: 0.25}}", (0, 3, 2, 2)),
                        ("{id: e, op: batch_norm, input: {shape: [0, 3, 4]}, params: {training: false}}", (0, 3, 4))]:
        assert quiet_reference(one(text))["y"].shape == shape
    got = quiet_reference(one("{id: e, op: batch_norm, input: {shape: [0, 3, 4]}}"))
    assert got["y"].shape == (0, 3, 4)
    assert np.isnan(got["running_mean"]).all() and np.isnan(got["running_var"]).all()
    got = quiet_reference(one("{id: e, op: batch_norm, input: {shape: [0, 3]}, params: {running_variance: unbiased}}"))
    assert np.isnan(got["running_var"]).all()  # 0 / (0 - 1) would be -0: the variance of no values is NaN
    for method in ("pooled", "per_image_mean"):
        got = quiet_reference(one(f"{{id: e, op: channel_stats, input: {{shape: [0, 3, 2, 2]}}, params: {{method: {method}}}}}"))
        assert got["mean"].shape == got["std"].shape == (3,)
        assert np.isnan(got["mean"]).all() and np.isnan(got["std"]).all()


# ----------------------------------------------------------------------------- compare

def test_compare_of_empty_arrays():
    m = compare(np.zeros((0, 3, 4)), np.zeros((0, 3, 4)), "float32", atol=1e-6, rtol=1e-6)
    assert m["ok"] and m["max_abs"] == 0.0 and m["bad"] == 0
    assert m["worst_index"] == [] and m["expected_at_worst"] is None
    with pytest.raises(ValueError, match="shape"):
        compare(np.zeros((0, 3, 4)), np.zeros((1, 3, 4)), "float32", atol=1e-6, rtol=1e-6)


def test_compare_nan_placement():
    e = np.array([np.nan, 1.0, np.inf])
    assert compare(e, e.copy(), "float32", atol=1e-6, rtol=0)["ok"]
    m = compare(e, np.array([np.nan, np.nan, np.inf]), "float32", atol=1e-6, rtol=0)  # NaN where 1.0 is due
    assert not m["ok"] and m["worst_index"] == [1] and m["nan_actual"] == 2
    m = compare(e, np.array([0.5, 1.0, np.inf]), "float32", atol=1.0, rtol=0)  # a number where NaN is due
    assert not m["ok"] and m["worst_index"] == [0]
    assert not compare(e, np.array([np.nan, 1.0, -np.inf]), "float32", atol=1e-6, rtol=0)["ok"]


# ----------------------------------------------------------------------------- a whole run

def test_bad_input_cases_run_through_numpy_into_json_and_html(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                          "-q", "--adapters", "numpy", "--cases=cases/bad_input.yaml", f"--report-dir={tmp_path}",
                          "cases/bad_input.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr

    def no_constant(name):  # JSON has no NaN/Infinity: the report writes them as strings
        raise AssertionError(f"{name} in conformance.json")

    doc = json.loads((tmp_path / "conformance.json").read_text(), parse_constant=no_constant)
    results = {r["case"]: r for r in doc["results"] if r["adapter"] == "numpy"}
    assert {r["status"] for r in results.values()} <= {"pass", "expected", "unsupported"}
    empty = results["bad_input/channel_stats_empty_batch_0x3x4x4@method=pooled,dtype=float32"]
    assert empty["status"] == "pass" and empty["outputs"]["mean"]["nan_expected"] == 3
    empty = results["bad_input/layer_norm_empty_batch_0x8@dtype=float32"]
    assert empty["outputs"]["y"]["worst_index"] == [] and empty["outputs"]["y"]["max_abs"] == 0.0
    assert doc["matrices"]["bad_input/layer_norm_empty_batch_0x8@dtype=float32"]["max_abs"][0][1] == 0.0
    nan_case = doc["cases"]["bad_input/instance_norm_nan_weight_inf_bias_2x3x4@dtype=float32"]
    assert nan_case["params"]["weight"][1] == "nan" and nan_case["params"]["bias"][2] == "inf"
    overflow = results["bad_input/f16_squares_overflow_instance_norm_2x3x8x8"]
    assert overflow["status"] == "expected" and overflow["explanation"]["cause"] == "low_precision_accumulation"
    html = (tmp_path / "conformance.html").read_text()
    assert "instance_norm_empty_batch_0x3x4x4" in html and "f16_squares_overflow" in html

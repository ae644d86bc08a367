"""Typed records (normconf.records) and case parameters (normconf.cases.Params): NaN and infinities stay
floats in memory and become today's JSON strings only in ``to_json``; ``from_json`` reads them back;
every status carries its pytest outcome; parameters read by key or attribute and cannot be changed."""
from __future__ import annotations

import copy
import json
import math
import pickle

import numpy as np
import pytest

from normconf import report
from normconf.cases import Case, Params, load_text
from normconf.engine import evaluate, forget
from normconf.records import (STATUSES, Comparison, Explanation, Metrics, Result, Status, as_ratio, decode_number,
                              encode_number, encode_tree)

INF, NAN = math.inf, math.nan


def metrics(**changes) -> Metrics:
    values = dict(max_abs=INF, max_rel=NAN, max_ulp=-INF, worst_index=[0, 1], expected_at_worst=-INF,
                  actual_at_worst=NAN, ratio=INF, bad=2, nan_expected=0, nan_actual=1, atol=1e-6, rtol=2e-6, ok=False)
    return Metrics(**{**values, **changes})


def explanation() -> Explanation:
    return Explanation(cause="eps_value", detail="eps 0", params={"eps": 0.0, "fitted": -INF, "variance": "biased"},
                       outputs=["y"], residual={"y": 0.5, "running_var": INF},
                       candidates=[Explanation("variance_divisor", "n-1", params={}, residual={"y": NAN})],
                       stats={"y": {"nan_actual": 1, "ratio_median": NAN, "max_abs": INF}}, causes=None,
                       also=["variance_divisor"], slice={"axis": 0, "indices": [0, 2], "of": 8})


def result(**changes) -> Result:
    values = dict(case="f/c", adapter="numpy", op="instance_norm", dtype="float32", layout="channels_first",
                  shape=[2, 3, 4], tags=["t"], status=Status.FAIL, reason="y off",
                  outputs={"y": metrics(vs_values=Comparison(INF, [0, 1], 0.05, NAN, False),
                                        vs_native=Comparison(0.25, ratio=0.5, ok=True))},
                  explanation=explanation(), seconds=0.25, native={"variance": "unbiased"}, known=None,
                  margin=INF, margin_output="y", verdict="firm", strict=True, explain_seconds=0.5)
    return Result(**{**values, **changes})


# ----------------------------------------------------------------------------- JSON at the edge

def test_to_json_writes_nan_and_infinities_as_the_strings_of_the_file():
    data = result().to_json()
    json.dumps(data, allow_nan=False)  # nothing JSON cannot hold
    y = data["outputs"]["y"]
    assert (y["max_abs"], y["max_rel"], y["max_ulp"], y["expected_at_worst"], y["actual_at_worst"], y["ratio"]) == (
        "inf", "nan", "-inf", "-inf", "nan", "inf")
    assert y["vs_values"] == {"max_abs": "inf", "worst_index": [0, 1], "atol": 0.05, "ratio": "nan", "ok": False}
    assert y["vs_native"] == {"max_abs": 0.25, "ratio": 0.5, "ok": True}
    assert data["margin"] == "inf" and data["status"] == "fail" and type(data["status"]) is str
    ex = data["explanation"]
    assert ex["params"] == {"eps": 0.0, "fitted": "-inf", "variance": "biased"}
    assert ex["residual"] == {"y": 0.5, "running_var": "inf"}
    assert ex["candidates"] == [{"cause": "variance_divisor", "detail": "n-1", "params": {}, "residual": {"y": "nan"}}]
    assert ex["stats"] == {"y": {"nan_actual": 1, "ratio_median": "nan", "max_abs": "inf"}}


def test_from_json_reads_back_floats_and_writes_the_same_record():
    original = result(defaults={"eps": 1e-3}, unsupported_outputs={"running_var": "no API"}, has_arrays=True)
    data = original.to_json()
    back = Result.from_json(json.loads(json.dumps(data)))
    assert back.to_json() == data and list(back.to_json()) == list(data)  # the same keys in the same order
    assert back == original
    y = back.outputs["y"]
    assert isinstance(y, Metrics) and y.max_abs == INF and math.isnan(y.max_rel) and y.max_ulp == -INF
    assert math.isnan(y.vs_values.ratio) and y.vs_native.ratio == 0.5
    assert back.status is Status.FAIL and back.margin == INF
    assert back.explanation.residual["running_var"] == INF and back.explanation.params["fitted"] == -INF
    assert math.isnan(back.explanation.candidates[0].residual["y"])
    assert math.isnan(back.explanation.stats["y"]["ratio_median"])
    assert back.explanation.params["variance"] == "biased"  # text is never decoded


def test_optional_fields_are_written_only_when_set_in_the_order_of_the_file():
    data = result(explanation=None, explain_seconds=None, status=Status.PASS, reason=None).to_json()
    assert list(data) == ["case", "adapter", "op", "dtype", "layout", "shape", "tags", "status", "reason",
                          "outputs", "explanation", "seconds", "native", "known", "margin", "margin_output",
                          "verdict", "strict"]
    assert data["explanation"] is None and data["known"] is None  # always there, null when unset
    data = result(traceback="tb", defaults={"eps": 1e-3}, has_arrays=True).to_json()
    assert list(data)[18:] == ["defaults", "traceback", "explain_seconds", "has_arrays"]
    assert "arrays" not in result(arrays={"y": np.zeros(2)}).to_json()


def test_a_real_result_round_trips():
    from adapters.numpy_adapter import NumpyAdapter

    class UnbiasedNumpy(NumpyAdapter):  # the n-1 divisor: a fail with an explanation, candidates, residuals
        name = "unbiased-numpy"

        def run(self, case, inputs):
            return super().run(case.with_params(variance="unbiased"), inputs)

    case = load_text("cases: [{id: a, op: instance_norm, input: {shape: [2, 3, 5]}}]", "f.yaml")[0][0]
    try:
        got = evaluate(case, UnbiasedNumpy())
    finally:
        forget(case)
    assert got.status is Status.FAIL and isinstance(got.explanation, Explanation)
    assert got.explanation.cause == "variance_divisor" and got.arrays["y"].shape == (2, 3, 5)
    data = got.to_json()
    json.dumps(data, allow_nan=False)
    assert Result.from_json(data).to_json() == data
    doc = report.build([got, data], {}, None, {})  # a record or its JSON: the same document
    assert doc["results"][0] == doc["results"][1] == data


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(colour="red"), "key 'colour' found; allowed: case, adapter"),
    (lambda d: d.pop("margin"), "key 'margin' missing"),
    (lambda d: d.update(status="passed"), "key 'status' found 'passed'; allowed: pass, fail, expected"),
    (lambda d: d["outputs"]["y"].update(max_diff=1.0), "outputs.y: metrics: key 'max_diff' found"),
    (lambda d: d["outputs"]["y"]["vs_native"].pop("ok"), "outputs.y: comparison: key 'ok' missing"),
    (lambda d: d.update(outputs=[]), "key 'outputs' found list"),
    (lambda d: d["explanation"].pop("detail"), "explanation: key 'detail' missing"),
])
def test_from_json_names_the_result_and_what_it_cannot_read(change, message):
    data = result().to_json()
    change(data)
    with pytest.raises(ValueError, match=message) as err:
        Result.from_json(data)
    assert str(err.value).startswith("result f/c[numpy]: ")


def test_numbers_are_encoded_and_decoded_in_one_place():
    for value, text in ((INF, "inf"), (-INF, "-inf"), (NAN, "nan")):
        assert encode_number(value) == text and encode_number(np.float32(value)) == text
        assert decode_number(text) == value or math.isnan(decode_number(text)) and text == "nan"
    assert encode_number(np.int64(3)) == 3 and type(encode_number(np.int64(3))) is int
    assert (encode_number(0.5), encode_number(None), encode_number("x")) == (0.5, None, "x")
    assert decode_number("unbiased") == "unbiased" and decode_number(1) == 1
    assert encode_tree({"a": (np.array([1.0, np.inf]), [NAN]), "p": Params({"eps": -INF})}) == {
        "a": [[1.0, "inf"], ["nan"]], "p": {"eps": "-inf"}}
    assert [as_ratio(v) for v in (0.5, "inf", "nan", NAN, INF, None)] == [0.5, INF, INF, INF, INF, -1.0]


def test_records_read_like_the_json_record_with_typed_values():
    r = result()
    assert r["status"] == "fail" and r["outputs"]["y"]["ratio"] == INF and r["explanation"]["cause"] == "eps_value"
    assert "traceback" not in r and r.get("traceback") is None and r.get("defaults", {}) == {}
    assert "explain_seconds" in r and "arrays" in r and "colour" not in r
    with pytest.raises(KeyError):
        r["traceback"]
    assert r.worst_ratio() == INF and r.label == "f/c[numpy]"
    assert r.explanation.named_causes() == {"eps_value", "variance_divisor"}
    assert Explanation("unexplained", "nothing fits").named_causes() == set()


def test_equal_records_are_equal_with_nan_in_them():
    assert metrics() == metrics() and metrics() != metrics(bad=3)
    assert result() == result() and result() != result(adapter="torch")
    assert result(arrays={"y": np.zeros(1)}) == result()  # outputs in memory are not part of the record


# ----------------------------------------------------------------------------- statuses

def test_every_status_has_its_pytest_outcome():
    outcomes = {s: s.outcome for s in Status}
    assert outcomes == {Status.PASS: "passed", Status.FAIL: "failed", Status.EXPECTED: "xfailed",
                        Status.STALE: "failed", Status.UNSUPPORTED: "skipped", Status.UNAVAILABLE: "skipped",
                        Status.ERROR: "failed"}
    assert STATUSES == report.STATUSES == ("pass", "fail", "expected", "stale", "unsupported", "unavailable", "error")
    for s in Status:
        assert s.is_failure == (s.outcome == "failed")
        assert s.ran == (s.outcome != "skipped")
        assert s.is_judged == (s.value in ("pass", "fail", "expected", "stale"))
        assert s.is_off == (s.is_judged and s is not Status.PASS)
        assert s.is_strict == (s.outcome == "xfailed")


def test_a_status_is_its_json_string():
    assert Status.PASS == "pass" and Status("stale") is Status.STALE
    assert {"pass": 1}[Status.PASS] == 1 and {Status.FAIL: 2}["fail"] == 2  # dict keys either way
    assert f"{Status.ERROR}|{Status.FAIL:<6}|" == "error|fail  |" and str(Status.EXPECTED) == "expected"
    assert json.dumps({Status.PASS: [Status.STALE]}) == '{"pass": ["stale"]}'
    assert Result("f/c", "a", "normalize", "float32", "channels_first", [1, 1], [], status="error").status is Status.ERROR
    with pytest.raises(ValueError):
        Status("passed")


# ----------------------------------------------------------------------------- case parameters

def case_of(params: str) -> Case:
    cases, errors = load_text("cases: [{id: a, op: batch_norm, input: {shape: [4, 2, 3]}, params: " + params + "}]",
                              "p.yaml")
    assert not errors, errors
    return cases[0]


def test_params_read_by_attribute_and_by_key():
    case = case_of("{eps: 1.0e-3, momentum: null}")
    p = case.params
    assert isinstance(p, Params)
    assert p.eps == p["eps"] == 1e-3 and p.momentum is None and p["momentum"] is None
    assert p.variance == "biased" and p.training is True and p.steps == 1  # the defaults, validated
    assert p.get("groups") is None and "groups" not in p and "eps" in p
    assert dict(p)["eps"] == 1e-3 and p == dict(p) and len(p) == len(dict(p))
    with pytest.raises(AttributeError, match="no parameter 'groups'.*it has: eps"):
        _ = p.groups
    with pytest.raises(KeyError):
        p["groups"]


def test_params_cannot_be_changed_and_with_params_makes_a_new_case():
    case = case_of("{eps: 1.0e-3}")
    p = case.params
    with pytest.raises(AttributeError, match="read-only"):
        p.eps = 1.0
    with pytest.raises(TypeError):
        p["eps"] = 1.0
    with pytest.raises(AttributeError, match="read-only"):
        del p.eps
    other = case.with_params(eps=0.5, variance="unbiased")
    assert (other.params.eps, other.params.variance) == (0.5, "unbiased")
    assert (case.params.eps, case.params.variance) == (1e-3, "biased") and case.params is p
    assert p.replace(eps=2.0).eps == 2.0 and p.eps == 1e-3


def test_params_copy_pickle_and_case_from_a_mapping():
    p = case_of("{eps: 1.0e-3}").params
    for clone in (copy.copy(p), copy.deepcopy(p), pickle.loads(pickle.dumps(p))):
        assert isinstance(clone, Params) and clone == p and clone.eps == 1e-3
    case = Case(file="x.yaml", id="a", op="normalize", shape=(1, 1), layout="channels_first", dtype="float32",
                data=None, generator=None, params={"mean": [0.0], "std": [1.0]})
    assert isinstance(case.params, Params) and case.params.std == [1.0]
    assert report.case_summary(case)["params"] == {"mean": [0.0], "std": [1.0]}
    json.dumps(report.case_summary(case))


def test_a_framework_that_refuses_a_case_on_seeing_it_is_unsupported_not_an_error():
    """``Unsupported`` raised by run: the item is unsupported with the framework's message; any other
    exception stays an error."""
    from normconf.adapter import Adapter, Unsupported

    class Refusing(Adapter):
        name, framework = "refusing", "numpy"

        def layer_norm(self, case, inputs):
            if case.dtype == "float64":
                raise Unsupported("the runtime has no float64 kernel for LayerNormalization")
            raise RuntimeError("a real bug")

    cases, errors = load_text("cases: [{id: a, op: layer_norm, input: {shape: [2, 3], dtype: float64}},"
                              " {id: b, op: layer_norm, input: {shape: [2, 3]}}]", "t.yaml")
    refused, broken = (evaluate(c, Refusing()) for c in cases)
    assert refused.status is Status.UNSUPPORTED and refused.traceback is None
    assert refused.reason == "the runtime has no float64 kernel for LayerNormalization"
    assert broken.status is Status.ERROR and "RuntimeError: a real bug" in broken.reason

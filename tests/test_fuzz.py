"""--fuzz: the strategy draws only valid cases; a wrong adapter is found and shrunk to pasteable YAML."""
import numpy as np
import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is needed for --fuzz")
from hypothesis import given, settings  # noqa: E402

from adapters.numpy_adapter import NumpyAdapter  # noqa: E402
from normconf import fuzz  # noqa: E402
from normconf.cases import load_text  # noqa: E402


@settings(max_examples=150, deadline=None, database=None)
@given(fuzz.case_entries())
def test_strategy_draws_only_valid_cases(entry):
    cases, errors = load_text(yaml.safe_dump({"cases": [entry]}), "fuzz.yaml")
    assert errors == [] and len(cases) == 1
    # no gradient over two-value slices, whose grad_x the max-scaled gradient tolerance cannot hold
    assert not (cases[0].params.get("grad") and fuzz.values_per_slice(entry["op"], cases[0].shape, cases[0].params) == 2)


@pytest.mark.parametrize("op, shape, params, n", [
    ("instance_norm", [3, 2, 2], {}, 2), ("instance_norm", [1, 1, 2, 3, 2], {}, 12),
    ("group_norm", [2, 4, 3], {"groups": 2}, 6), ("layer_norm", [2, 3, 4], {"axes": [1]}, 3),
    ("layer_norm", [2, 3, 4], {"axes": [1, 2]}, 12), ("batch_norm", [2, 3], {"training": True}, 2),
    ("batch_norm", [2, 3, 5], {"training": True, "eval_after": True}, None),
    ("batch_norm", [2, 3, 5], {"training": False}, None), ("normalize", [2, 3], {}, None)])
def test_values_per_slice(op, shape, params, n):
    assert fuzz.values_per_slice(op, shape, params) == n


class UnbiasedInstanceNorm(NumpyAdapter):
    """A planted fault: instance norm with the n-1 divisor whatever the case says."""

    name = "planted-n-minus-1"
    unsupported_ops = {op: "planted fault covers instance_norm" for op in
                       ("batch_norm", "layer_norm", "group_norm", "normalize", "channel_stats")}

    def run(self, case, inputs):
        x = np.asarray(inputs["x"], dtype=np.float64)
        axes = tuple(range(2, x.ndim))
        y = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, ddof=1, keepdims=True) + case.params["eps"])
        return {"y": y}


def test_fuzz_finds_and_shrinks_a_wrong_adapter():
    with pytest.raises(fuzz.Finding) as info:
        fuzz.run(60, 0, [UnbiasedInstanceNorm()], [])
    text = str(info.value)
    assert "planted-n-minus-1: fail" in text and "variance_divisor" in text
    # every kind of finding is listed, each shrunk on its own: the n-1 divisor is one of them
    assert text.startswith("2 kind(s) of finding in 60 drawn cases")  # the planted adapter also drops bias
    part = next(p for p in text.split("\n\n[") if "fail (variance_divisor) on instance_norm" in p)
    pasted = yaml.safe_load(part.split("ready for cases/:\n", 1)[1])
    cases, errors = load_text(yaml.safe_dump(pasted), "found.yaml")
    assert errors == [] and cases[0].op == "instance_norm"
    # shrunk: Hypothesis minimizes towards small shapes
    assert int(np.prod(cases[0].shape)) <= 16


def test_correct_adapter_gives_no_finding():
    counts = fuzz.run(40, 3, [NumpyAdapter()], [])
    assert counts["cases"] >= 30 and counts["results"] == counts["cases"]


@pytest.mark.parametrize("what", ["grad", "track_running_stats", "eval_after"])
def test_strategy_reaches_the_training_path(what):
    """Gradients, tracking instance norm and train-then-eval batch norm are drawn, and load."""
    from hypothesis import find

    entry = find(fuzz.case_entries(), lambda e: e["params"].get(what) is True, settings=settings(database=None, derandomize=True, max_examples=2000))
    cases, errors = load_text(yaml.safe_dump({"cases": [entry]}), "fuzz.yaml")
    assert errors == [] and cases[0].params[what] is True
    if what == "grad":
        assert "grad_x" in cases[0].outputs


class ChannelsLastGradMisread(NumpyAdapter):
    """A planted fault: instance norm whose channels_last grad_output is read in the wrong memory order."""

    name = "planted-grad-layout"
    unsupported_ops = {op: "planted fault covers instance_norm" for op in
                       ("batch_norm", "layer_norm", "group_norm", "normalize", "channel_stats")}

    def unsupported(self, case):
        if case.op == "instance_norm" and case.params["variance"] != "biased":
            return "planted fault: biased variance only"
        return super().unsupported(case)

    def unsupported_outputs(self, case):
        return {}

    def run(self, case, inputs):
        x = np.asarray(inputs["x"], dtype=np.float64)
        axes, shape = tuple(range(2, x.ndim)), [1, -1] + [1] * (x.ndim - 2)
        w = np.ones(x.shape[1]) if inputs.get("weight") is None else np.asarray(inputs["weight"], dtype=np.float64)
        b = np.zeros(x.shape[1]) if inputs.get("bias") is None else np.asarray(inputs["bias"], dtype=np.float64)
        std = np.sqrt(x.var(axes, keepdims=True) + case.params["eps"])
        yhat = (x - x.mean(axes, keepdims=True)) / std
        out = {"y": yhat * w.reshape(shape) + b.reshape(shape)}
        if case.params.get("grad"):
            g = np.asarray(inputs["grad_output"], dtype=np.float64)
            if case.layout == "channels_last":  # NHWC memory read as NCHW
                g = np.ascontiguousarray(np.moveaxis(g, 1, -1)).reshape(g.shape)
            h = g * w.reshape(shape)
            out["grad_x"] = (h - h.mean(axes, keepdims=True) - yhat * (h * yhat).mean(axes, keepdims=True)) / std
            out["grad_weight"] = (g * yhat).sum((0,) + axes)
            out["grad_bias"] = g.sum((0,) + axes)
        return out


FOUND = {"id": "fuzz_found", "op": "instance_norm", "params": {"eps": 1.0e-12, "variance": "biased", "grad": True},
         "input": {"shape": [1, 2, 1, 3], "dtype": "float64", "layout": "channels_last",
                   "generator": {"dist": "uniform", "seed": 0, "low": -1.0, "high": 1.0}}}


def test_a_fail_only_in_channels_last_is_explained_as_a_layout_misread():
    from normconf.engine import evaluate, forget

    planted = ChannelsLastGradMisread()
    case = load_text(yaml.safe_dump({"cases": [FOUND]}), "found.yaml")[0][0]
    result = evaluate(case, planted, [])
    forget(case)
    assert result["status"] == "fail" and result["explanation"]["cause"] == "unexplained"
    assert fuzz.layout_explanation(FOUND, planted)["cause"] == "reduction_axes"
    channels_first = dict(FOUND, input=dict(FOUND["input"], layout="channels_first"))
    assert fuzz.layout_explanation(channels_first, planted) is None
    assert fuzz.layout_explanation(FOUND, UnbiasedInstanceNorm()) is None  # wrong in both layouts


def test_fuzz_seconds_bounds_the_run():
    """--fuzz-seconds: cases drawn after the limit are not run, and the counts say after how many."""
    counts = fuzz.run(200, 5, [NumpyAdapter()], [], seconds=0.0)
    assert counts["stopped"] == 0 and counts["cases"] == 0 and counts["results"] == 0
    counts = fuzz.run(30, 5, [NumpyAdapter()], [], seconds=60.0)
    assert "stopped" not in counts and counts["cases"] >= 20

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
    pasted = yaml.safe_load(text.split("ready for cases/:\n", 1)[1])
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

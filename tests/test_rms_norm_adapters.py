"""rms_norm's adapters translate the case's conventions (eps null, axes, weight_offset, cast) and
declare what their framework fixes; they never repair a framework's numbers."""
import numpy as np
import pytest

from adapters.jax_adapter import JaxAdapter
from adapters.numpy_adapter import NumpyAdapter
from adapters.tensorflow_adapter import TensorflowAdapter
from adapters.torch_adapter import TorchAdapter
from normconf import oracle
from normconf.cases import load_text
from normconf.engine import evaluate
from normconf.inputs import generate, round_to_dtype
from normconf.records import Status


def one(body: str):
    cases, errors = load_text(f"cases: [{{id: r, op: rms_norm, {body}}}]", "t.yaml")
    assert not errors, errors
    return cases[0]


def test_numpy_rounds_where_the_case_says():
    """float16, weights near 1: NumPy's output is the oracle of its own cast order (rounded to float16)
    to the bit almost everywhere, and visibly further from the other order's."""
    body = ("input: {{shape: [16, 256], dtype: float16, generator: {{dist: normal, seed: 3}}}}, "
            "params: {{axes: [-1], weight: {{generator: {{dist: normal, mean: 1.0, std: 0.5, seed: 4}}}}, cast: {}}}")
    for cast, other in (("last", "before_weight"), ("before_weight", "last")):
        case = one(body.format(cast))
        inputs = generate(case)
        y = NumpyAdapter().run(case, inputs)["y"].astype(np.float64)
        own, theirs = (round_to_dtype(oracle.reference(c, inputs)["y"], "float16")  # last's oracle is exact
                       for c in (case, case.with_params(cast=other)))
        assert np.mean(y == own) > 0.95 and np.mean(y == theirs) < np.mean(y == own) - 0.1, cast


def test_torch_gets_eps_none_and_the_offset_weight(monkeypatch):
    import torch.nn.functional as F

    seen = {}
    real = F.rms_norm

    def spy(x, shape, weight=None, eps=None):
        seen.update(shape=list(shape), eps=eps, weight=None if weight is None else weight.detach().double().numpy())
        return real(x, shape, weight=weight, eps=eps)

    monkeypatch.setattr(F, "rms_norm", spy)
    case = one("input: {shape: [2, 3, 4], dtype: float32}, "
               "params: {axes: [1], eps: null, weight: [0.5, -0.25, 2.0], weight_offset: 1.0}")
    result = evaluate(case, TorchAdapter())
    assert seen == {"shape": [3], "eps": None, "weight": seen["weight"]}
    np.testing.assert_array_equal(seen["weight"], [1.5, 0.75, 3.0])  # offset + weight, what a Gemma port loads
    assert result.status is Status.PASS  # float32: torch's float32 eps is the dtype's


def test_frameworks_fix_cast_last_and_declare_their_defaults():
    case = one("input: {shape: [2, 8]}, params: {framework_defaults: true, cast: before_weight}")
    for adapter in (TorchAdapter(), TensorflowAdapter(), JaxAdapter()):
        assert adapter.native_for(case) == {"cast": "last"}, adapter.name
    assert NumpyAdapter().native_for(case) == {}  # written out: it follows the case
    assert TorchAdapter().defaults_for(case) == {"eps": None}
    assert TensorflowAdapter().defaults_for(case) == JaxAdapter().defaults_for(case) == {"eps": 1e-6}


@pytest.mark.parametrize("layout, axes, supported", [
    ("channels_first", [-1], True), ("channels_first", [2, 3], True), ("channels_first", [1], False),
    ("channels_last", [1], True), ("channels_last", [-1], False), ("channels_last", [1, 2, 3], True),
    ("channels_last", [2, 3], False)])
def test_keras_refuses_axes_that_are_not_trailing_in_memory(layout, axes, supported):
    """RMSNormalization multiplies by an unreshaped scale: only the layout's trailing dims work."""
    case = one(f"input: {{shape: [2, 3, 4, 5], layout: {layout}}}, params: {{axes: {axes}}}")
    reason = TensorflowAdapter().unsupported(case)
    assert (reason is None) == supported, reason
    if reason:
        assert "keras-team/keras/issues/19642" in reason

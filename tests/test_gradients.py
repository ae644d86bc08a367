"""Gradients and running statistics: the analytic float64 oracle against central finite differences,
the case keys that ask for them, and adapters without autodiff."""
import numpy as np
import pytest

from normconf import oracle
from normconf.cases import load_text
from normconf.engine import evaluate
from normconf.inputs import generate

AFFINE = "weight: {generator: {dist: uniform, low: 0.5, high: 2.0, seed: 1}}, bias: {generator: {dist: normal, seed: 2}}"
# Small float64 cases: every op, both divisors, affine or not, batch norm training / eval / eval_after.
CASES = {
    "instance": "{op: instance_norm, input: {shape: [2, 3, 5]}, params: {grad: true}}",
    "instance_unbiased_affine": f"{{op: instance_norm, input: {{shape: [2, 2, 2, 3]}}, params: {{grad: true, variance: unbiased, {AFFINE}}}}}",
    "instance_tracking": f"{{op: instance_norm, input: {{shape: [3, 2, 4]}}, params: {{grad: true, track_running_stats: true, steps: 3, {AFFINE}}}}}",
    "batch_train": "{op: batch_norm, input: {shape: [4, 3, 3]}, params: {grad: true, steps: 3}}",
    "batch_train_unbiased_affine": f"{{op: batch_norm, input: {{shape: [3, 2, 2, 2]}}, params: {{grad: true, variance: unbiased, {AFFINE}}}}}",
    "batch_eval_affine": f"{{op: batch_norm, input: {{shape: [4, 3]}}, params: {{grad: true, training: false, running_mean: [0.5, -1.0, 0.0], running_var: [0.5, 2.0, 1.0], {AFFINE}}}}}",
    "batch_eval_after": f"{{op: batch_norm, input: {{shape: [4, 2, 3]}}, params: {{grad: true, steps: 3, eval_after: true, momentum: null, {AFFINE}}}}}",
    "layer": f"{{op: layer_norm, input: {{shape: [2, 3, 4]}}, params: {{grad: true, {AFFINE}}}}}",
    "layer_axes_1_3_unbiased": "{op: layer_norm, input: {shape: [2, 3, 2, 2]}, params: {grad: true, axes: [1, 3], variance: unbiased, weight: {generator: {dist: uniform, seed: 4}}}}",
    "layer_axis_0": "{op: layer_norm, input: {shape: [4, 3]}, params: {grad: true, axes: [0], bias: [0.5, 1.0, -1.0, 0.0]}}",
    "group": f"{{op: group_norm, input: {{shape: [2, 4, 3]}}, params: {{grad: true, groups: 2, {AFFINE}}}}}",
    "group_unbiased": "{op: group_norm, input: {shape: [2, 6, 2]}, params: {grad: true, groups: 3, variance: unbiased, eps: 0.1}}",
    "normalize": "{op: normalize, input: {shape: [2, 3, 3]}, params: {grad: true, mean: 0.5, std: [0.2, 0.3, 2.0]}}",
    "rms": "{op: rms_norm, input: {shape: [2, 3, 4]}, params: {grad: true, weight: {generator: {dist: uniform, low: 0.5, high: 2.0, seed: 1}}}}",
    "rms_offset_axes_1_3": "{op: rms_norm, input: {shape: [2, 3, 2, 2]}, params: {grad: true, axes: [1, 3], eps: 0.1, weight_offset: 1.0, cast: before_weight, weight: {generator: {dist: normal, std: 0.3, seed: 3}}}}",
    "rms_no_weight_machine_eps": "{op: rms_norm, input: {shape: [3, 5]}, params: {grad: true, axes: [-1], eps: null}}",
    "rms_axis_0": "{op: rms_norm, input: {shape: [4, 3]}, params: {grad: true, axes: [0], weight: [0.5, 1.0, -1.0, 2.0]}}",
}
RTOL = 1e-7  # central differences with h = 1e-5 on O(1) values: truncation ~h^2, cancellation ~u/h


def one(text):
    cases, errors = load_text(text, "t.yaml")
    assert not errors, errors
    return cases[0]


def grad_case(body: str, dtype: str = "float64"):
    body = body.replace("input: {", f"input: {{dtype: {dtype}, generator: {{dist: normal, mean: 0.3, std: 1.5, seed: 7}}, ", 1)
    return one(f"cases: [{{id: g, {body[1:]}]")


def finite_difference(case, inputs, key: str, h: float = 1e-5) -> np.ndarray:
    """d(sum(y * grad_output))/d inputs[key] by central differences of the float64 oracle. Only the
    last (evaluated) input moves: running statistics are buffers, constants for the gradient."""
    g, base = inputs["grad_output"], np.array(inputs[key], dtype=np.float64)
    out = np.zeros_like(base)
    for idx in np.ndindex(base.shape):
        loss = []
        for step in (h, -h):
            moved = base.copy()
            moved[idx] += step
            loss.append(float(np.sum(oracle.reference(case, {**inputs, key: moved})["y"] * g)))
        out[idx] = (loss[0] - loss[1]) / (2 * h)
    return out


def worst_relative_error(case) -> dict[str, float]:
    inputs = generate(case)
    got = oracle.reference(case, inputs)
    errors = {}
    for name in case.gradients:
        fd = finite_difference(case, inputs, name.removeprefix("grad_"))
        errors[name] = float(np.abs(got[name] - fd).max() / np.abs(fd).max())
    return errors


@pytest.mark.parametrize("name", list(CASES))
def test_analytic_gradients_agree_with_finite_differences(name):
    case = grad_case(CASES[name])
    errors = worst_relative_error(case)
    assert set(errors) == set(case.gradients) and "grad_x" in errors
    assert max(errors.values()) <= RTOL, errors


def test_every_op_and_parameter_is_differentiated():
    cases = [grad_case(body) for body in CASES.values()]
    assert {c.op for c in cases} == {"instance_norm", "batch_norm", "layer_norm", "group_norm", "normalize", "rms_norm"}
    rms = [c for c in cases if c.op == "rms_norm"]
    assert {c.params["weight_offset"] for c in rms} == {0.0, 1.0} and {c.params["cast"] for c in rms} == {"last", "before_weight"}
    assert {c.params.get("variance") for c in cases} >= {"biased", "unbiased"}
    assert {"grad_x", "grad_weight", "grad_bias"} <= {n for c in cases for n in c.gradients}
    bn = [c for c in cases if c.op == "batch_norm"]
    assert {(c.params["training"], c.params["eval_after"]) for c in bn} == {(True, False), (False, False), (True, True)}


def _mutant_no_variance_term(x, h, axes, eps, ddof):
    dev, var = oracle.deviations(x, axes, ddof)
    return (h - h.mean(axis=axes, keepdims=True)) / np.sqrt(var + eps)


def _mutant_n_for_m(x, h, axes, eps, ddof):
    """mean(h * yhat) in the variance term whatever the divisor: right for the biased one only."""
    dev, var = oracle.deviations(x, axes, ddof)
    sigma = np.sqrt(var + eps)
    yhat = dev / sigma
    return (h - h.mean(axis=axes, keepdims=True) - yhat * (h * yhat).mean(axis=axes, keepdims=True)) / sigma


@pytest.mark.parametrize("mutant", [_mutant_no_variance_term, _mutant_n_for_m])
def test_mutated_gradient_is_caught(monkeypatch, mutant):
    monkeypatch.setattr(oracle, "normalize_vjp", mutant)
    caught = [n for n, body in CASES.items() if max(worst_relative_error(grad_case(body)).values()) > RTOL]
    assert len(caught) >= 2, f"only {caught} noticed the mutation"


def _rms_mutant_no_rms_term(x, h, axes, eps):
    """h / rms alone: the rms's share of the gradient dropped."""
    x = np.asarray(x, dtype=np.float64)
    return h / np.sqrt((x * x).mean(axis=tuple(axes), keepdims=True) + eps)


def _rms_mutant_layer_norm_vjp(x, h, axes, eps):
    """layer norm's gradient (a mean subtracted) where rms_norm subtracts none."""
    return oracle.normalize_vjp(x, h, axes, eps, 0)


@pytest.mark.parametrize("mutant", [_rms_mutant_no_rms_term, _rms_mutant_layer_norm_vjp])
def test_mutated_rms_gradient_is_caught(monkeypatch, mutant):
    monkeypatch.setattr(oracle, "rms_vjp", mutant)
    rms = [n for n in CASES if n.startswith("rms")]
    caught = [n for n in rms if worst_relative_error(grad_case(CASES[n]))["grad_x"] > RTOL]
    assert caught == rms


def test_rms_gradients_are_those_of_the_math_whatever_the_cast():
    """before_weight rounds y in bfloat16; its gradients are the math's, as with cast last."""
    body = CASES["rms_offset_axes_1_3"]
    before, last = grad_case(body, "bfloat16"), grad_case(body.replace("before_weight", "last"), "bfloat16")
    a, b = oracle.reference(before, generate(before)), oracle.reference(last, generate(last))
    assert not np.array_equal(a["y"], b["y"])
    for name in ("grad_x", "grad_weight"):
        np.testing.assert_array_equal(a[name], b[name])


# ---- the case keys -------------------------------------------------------------------------

def test_outputs_follow_grad_and_affine():
    assert grad_case(CASES["group"]).outputs == ("y", "grad_x", "grad_weight", "grad_bias")
    assert grad_case(CASES["layer_axis_0"]).outputs == ("y", "grad_x", "grad_bias")
    assert grad_case(CASES["batch_eval_after"]).outputs == ("y", "running_mean", "running_var", "grad_x", "grad_weight", "grad_bias")
    assert grad_case(CASES["instance_tracking"]).gradients == ("grad_x", "grad_weight", "grad_bias")
    assert one("cases: [{id: a, op: instance_norm, input: {shape: [2, 3, 4]}}]").outputs == ("y",)


def test_default_grad_output_is_normal_seed_1000_rounded_to_the_dtype():
    case = one("cases: [{id: a, op: layer_norm, input: {shape: [3, 4], dtype: float16}, params: {grad: true}}]")
    assert case.params["grad_output"] == {"generator": {"dist": "normal", "mean": 0.0, "std": 1.0, "seed": 1000}}
    g = generate(case)["grad_output"]
    want = np.random.Generator(np.random.PCG64(1000)).normal(0.0, 1.0, size=(3, 4))
    assert g.shape == (3, 4) and g.dtype == np.float64
    np.testing.assert_array_equal(g, want.astype(np.float16).astype(np.float64))
    literal = one("cases: [{id: a, op: layer_norm, input: {shape: [1, 2]}, params: {grad: true, grad_output: [[1.0, -2.0]]}}]")
    assert generate(literal)["grad_output"].tolist() == [[1.0, -2.0]]


@pytest.mark.parametrize("entry, key, allowed", [
    ("{op: layer_norm, input: {shape: [2, 3]}, params: {grad_output: {generator: {dist: normal}}}}", "params.grad_output", "only with grad: true"),
    ("{op: layer_norm, input: {shape: [2, 3]}, params: {grad: 1}}", "params.grad", "true, false"),
    ("{op: layer_norm, input: {shape: [2, 3]}, params: {grad: true, grad_output: [[1.0, 2.0]]}}", "params.grad_output", "shape [2, 3]"),
    ("{op: channel_stats, input: {shape: [2, 3]}, params: {grad: true}}", "params.grad", "parameters of channel_stats"),
    ("{op: batch_norm, input: {shape: [2, 3]}, params: {training: false, eval_after: true}}", "params.eval_after", "only with training: true"),
    ("{op: instance_norm, input: {shape: [2, 3, 4]}, params: {momentum: 0.5}}", "params.momentum", "only with track_running_stats: true"),
    ("{op: instance_norm, input: {shape: [2, 3, 4]}, params: {steps: 2}}", "params.steps", "only with track_running_stats: true"),
    ("{op: group_norm, input: {shape: [2, 4]}, params: {groups: 2, track_running_stats: true}}", "params.track_running_stats", "parameters of group_norm"),
    ("{op: instance_norm, input: {shape: [1, 2, 2], data: [[[1, 2], [3, 4]]]}, params: {track_running_stats: true, steps: 2}}", "params.steps", "literal input.data"),
])
def test_bad_training_keys_are_case_errors(entry, key, allowed):
    cases, errors = load_text(f"cases: [{{id: bad, {entry[1:]}]", "t.yaml")
    assert not cases and len(errors) == 1
    assert errors[0].key == key and allowed in errors[0].allowed, str(errors[0])


def test_instance_norm_without_tracking_keeps_no_running_parameters():
    plain = one("cases: [{id: a, op: instance_norm, input: {shape: [2, 3, 4]}}]")
    assert not {"momentum", "running_mean", "running_var", "running_variance", "steps"} & set(plain.params)
    assert "x_steps" not in generate(plain)


# ---- running statistics ----------------------------------------------------------------------

def test_instance_norm_running_statistics_average_the_per_instance_statistics():
    """torch.nn.InstanceNorm*d(track_running_stats=True): batch_norm over the [1, N*C, *] view with the
    running statistics repeated N times, then their mean over the batch written back."""
    case = one("cases: [{id: a, op: instance_norm, input: {shape: [3, 2, 5], dtype: float64}, "
               "params: {track_running_stats: true, steps: 2, momentum: 0.25, running_variance: unbiased}}]")
    inputs = generate(case)
    out = oracle.reference(case, inputs)
    m, v = np.zeros(2), np.ones(2)
    for xk in inputs["x_steps"]:
        m = 0.75 * m + 0.25 * xk.mean(axis=2).mean(axis=0)
        v = 0.75 * v + 0.25 * xk.var(axis=2, ddof=1).mean(axis=0)
    np.testing.assert_allclose(out["running_mean"], m, rtol=1e-14)
    np.testing.assert_allclose(out["running_var"], v, rtol=1e-14)
    assert case.outputs == ("y", "running_mean", "running_var")


def test_eval_after_normalizes_with_the_updated_running_statistics():
    case = one("cases: [{id: a, op: batch_norm, input: {shape: [4, 2, 3], dtype: float64}, "
               "params: {steps: 3, eval_after: true, eps: 0.0}}]")
    inputs = generate(case)
    out = oracle.reference(case, inputs)
    want = (inputs["x"] - out["running_mean"].reshape(1, 2, 1)) / np.sqrt(out["running_var"].reshape(1, 2, 1))
    np.testing.assert_allclose(out["y"], want, rtol=1e-14)
    trained = oracle.reference(case.with_params(eval_after=False), inputs)
    np.testing.assert_array_equal(trained["running_var"], out["running_var"])


# ---- adapters without autodiff -----------------------------------------------------------------

def test_numpy_compares_y_and_says_why_it_has_no_gradients():
    from adapters.numpy_adapter import NumpyAdapter

    case = grad_case(CASES["group"])
    result = evaluate(case, NumpyAdapter())
    assert result["status"] == "pass", result["reason"]
    assert set(result["outputs"]) == {"y"}
    assert result["unsupported_outputs"] == {n: "NumPy has no autodiff" for n in ("grad_x", "grad_weight", "grad_bias")}


def test_recipes_have_no_gradients_and_no_running_statistics():
    from adapters.recipes import RECIPES

    case = one("cases: [{id: a, op: instance_norm, input: {shape: [2, 3, 4, 4]}, params: {grad: true}}]")
    for recipe in RECIPES:
        r = recipe()
        if r.unsupported(case) is None:
            assert set(r.unsupported_outputs(case)) == {"grad_x"}, r.name
    tracking = one("cases: [{id: a, op: instance_norm, input: {shape: [2, 3, 4, 4]}, params: {track_running_stats: true}}]")
    assert all(recipe().unsupported(tracking) for recipe in RECIPES)

"""The float64 oracle: against the exact rational oracle, against the seed documents, and by hand."""
from pathlib import Path

import numpy as np
import pytest

from normconf import exact, oracle
from normconf.cases import load_paths, load_text
from normconf.compare import ulp
from normconf.engine import context
from normconf.inputs import generate

ROOT = Path(__file__).resolve().parents[1]
SHIPPED, _ = load_paths([ROOT / "cases"])


def _finite_and_nonempty(case) -> bool:
    """The exact oracle works in rationals: no NaN, no inf, no empty batch (tests/test_bad_input.py
    checks the float64 oracle on those)."""
    return case.shape[0] > 0 and all(np.isfinite(v).all() for v in generate(case).values() if isinstance(v, np.ndarray))


SMALL = [c for c in SHIPPED if np.prod(c.shape) <= 1200 and _finite_and_nonempty(c)]
ULPS = 4  # the float64 oracle's budget against the exact one


def one(text):
    cases, errors = load_text(text, "t.yaml")
    assert not errors, errors
    return cases[0]


def worst_ulps(case) -> float:
    """Largest |oracle - exact| in float64 ULPs of max(|exact|, 1) over all outputs.

    Outputs are O(1) (or statistics of O(1) data); the scale floor of 1 keeps an affine shift or
    a running mean that cancels to ~0 from turning a 1e-17 difference into 'millions of ULPs'.
    Gradients are not O(1): their floor is their own largest |value|, the unit of their tolerance
    (an element of grad_x is a difference of terms of that size)."""
    inputs = generate(case)
    got, want = oracle.reference(case, inputs), exact.reference(case, inputs)
    assert set(got) == set(want) == set(case.outputs)
    worst = 0.0
    for name in want:
        g, w = np.asarray(got[name]), np.asarray(want[name])
        assert g.shape == w.shape, name
        if not np.array_equal(np.isnan(g), np.isnan(w)):
            return float("inf")  # NaN in different places
        ok = ~np.isnan(w)
        if ok.any():
            floor = max(1.0, float(np.abs(w[ok]).max())) if name in case.gradients else 1.0
            worst = max(worst, float((np.abs(g[ok] - w[ok]) / ulp(np.maximum(np.abs(w[ok]), floor), "float64")).max()))
    return worst


@pytest.mark.parametrize("case", SMALL, ids=[c.key for c in SMALL])
def test_float64_oracle_agrees_with_exact_oracle(case):
    assert worst_ulps(case) <= ULPS


def test_small_cases_cover_every_op_and_parameter():
    ops = {c.op for c in SMALL}
    assert ops == {"instance_norm", "batch_norm", "layer_norm", "group_norm", "normalize", "channel_stats", "rms_norm"}
    rms = [c for c in SMALL if c.op == "rms_norm"]
    assert {c.params["cast"] for c in rms if c.dtype in ("float16", "bfloat16") and c.params["weight"]} == {
        "last", "before_weight"}
    assert {c.params["weight_offset"] for c in rms} == {0.0, 1.0}
    assert any(c.params["eps"] is None for c in rms) and any(c.params["grad"] for c in rms)
    assert any(c.op == "batch_norm" and c.params["momentum"] is None for c in SMALL)
    assert any(c.op == "batch_norm" and not c.params["training"] for c in SMALL)
    assert any(c.params.get("variance") == "unbiased" for c in SMALL)
    assert any(c.params.get("running_variance") == "unbiased" for c in SMALL)
    assert any(c.params.get("weight") is not None for c in SMALL)
    assert any(c.params.get("method") == "per_image_mean" for c in SMALL)
    assert any(c.data is not None for c in SMALL), "a literal-data case is checked exactly"


def test_seed_000_outputs_reproduced():
    """Both printed outputs of seed 000: NumPy's (n divisor, 8 decimals) and PyTorch's (n-1, 4 decimals)."""
    seeds = {c.id: c for c in SHIPPED if c.stem == "seeds"}
    for cid, first in (("blog_2x3x5x5_biased", -1.01167305), ("blog_2x3x5x5_unbiased", -0.9912)):
        case = seeds[cid]
        ctx = context(case)
        assert ctx.problem is None, ctx.problem
        y = ctx.expected["y"]
        assert round(float(y[0, 0, 0, 0]), 8 if "biased" == cid.split("_")[-1] else 4) == first
        np.testing.assert_allclose(y, np.asarray(case.expect_values["y"]), rtol=0,
                                   atol=0.5e-8 if cid.endswith("_biased") else 0.5e-4)
    ratio = context(seeds["blog_2x3x5x5_unbiased"]).expected["y"] / context(seeds["blog_2x3x5x5_biased"]).expected["y"]
    # the "0.99 vs 1.01" mismatch: y_unbiased / y_biased = sqrt((n-1)/n) with n = 25 (up to eps)
    np.testing.assert_allclose(ratio, np.sqrt(24 / 25), rtol=1e-5)


def test_every_shipped_expect_values_agrees_with_the_oracle():
    for case in SHIPPED:
        if case.expect_values:
            assert context(case).problem is None, case.key


def test_hand_computed_instance_norm():
    case = one("cases: [{id: h, op: instance_norm, input: {shape: [1, 1, 4], dtype: float64, data: [[[1, 2, 3, 4]]]}, params: {eps: 0.0}}]")
    y = oracle.reference(case, generate(case))["y"].ravel()
    # mean 2.5, variance 1.25
    np.testing.assert_allclose(y, np.array([-1.5, -0.5, 0.5, 1.5]) / np.sqrt(1.25), rtol=1e-15)


def test_hand_computed_batch_norm_running_stats_and_cumulative_average():
    text = ("cases: [{id: h, op: batch_norm, input: {shape: [2, 1], dtype: float64, generator: {dist: normal, seed: 5}}, "
            "params: {steps: 3, momentum: MOM, running_variance: RV}}]")
    for momentum in ("0.25", "null"):
        for rv in ("biased", "unbiased"):
            case = one(text.replace("MOM", momentum).replace("RV", rv))
            inputs = generate(case)
            out = oracle.reference(case, inputs)
            m, v = 0.0, 1.0
            for k, xk in enumerate(inputs["x_steps"], start=1):
                f = 1.0 / k if momentum == "null" else 0.25
                m = (1 - f) * m + f * xk.mean()
                v = (1 - f) * v + f * xk.var(ddof=1 if rv == "unbiased" else 0)
            np.testing.assert_allclose(out["running_mean"], [m], rtol=1e-14)
            np.testing.assert_allclose(out["running_var"], [v], rtol=1e-14)
            if momentum == "null":  # cumulative average: the plain mean of the batch statistics
                np.testing.assert_allclose(out["running_mean"], [np.mean([x.mean() for x in inputs["x_steps"]])], rtol=1e-14)


def test_batch_norm_eval_uses_running_statistics():
    case = one("cases: [{id: e, op: batch_norm, input: {shape: [3, 2], dtype: float64, data: [[1, 2], [3, 4], [5, 6]]}, "
               "params: {training: false, eps: 0.0, running_mean: [1.0, 2.0], running_var: [4.0, 16.0], weight: [2.0, 1.0], bias: [0.5, 0.0]}}]")
    y = oracle.reference(case, generate(case))["y"]
    np.testing.assert_allclose(y, [[0.5, 0.0], [2.5, 0.5], [4.5, 1.0]])


def test_layer_norm_over_non_trailing_axes_and_weight_shape():
    case = one("cases: [{id: l, op: layer_norm, input: {shape: [2, 3, 4], dtype: float64}, "
               "params: {axes: [1], weight: {generator: {dist: uniform, seed: 1}}}}]")
    inputs = generate(case)
    x, w = inputs["x"], inputs["weight"]
    assert w.shape == (3,)
    want = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5) * w.reshape(1, 3, 1)
    np.testing.assert_allclose(oracle.reference(case, inputs)["y"], want, rtol=1e-13)


def test_group_norm_with_groups_1_and_c_equals_layer_and_instance_norm():
    base = "cases: [{id: g, op: OP, input: {shape: [2, 4, 3, 3], dtype: float64, generator: {dist: normal, seed: 9}}, params: PARAMS}]"
    g1 = one(base.replace("OP", "group_norm").replace("PARAMS", "{groups: 1}"))
    gc = one(base.replace("OP", "group_norm").replace("PARAMS", "{groups: 4}"))
    ln = one(base.replace("OP", "layer_norm").replace("PARAMS", "{}"))
    inn = one(base.replace("OP", "instance_norm").replace("PARAMS", "{}"))
    ref = lambda c: oracle.reference(c, generate(c))["y"]  # noqa: E731
    np.testing.assert_allclose(ref(g1), ref(ln), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(ref(gc), ref(inn), rtol=1e-14, atol=1e-15)


def test_channel_stats_pooled_vs_per_image_mean():
    text = "cases: [{id: c, op: channel_stats, input: {shape: [2, 1, 2], dtype: float64, data: [[[0, 2]], [[10, 30]]]}, params: {method: M}}]"
    pooled = oracle.reference(c := one(text.replace("M", "pooled")), generate(c))
    per = oracle.reference(c := one(text.replace("M", "per_image_mean")), generate(c))
    np.testing.assert_allclose(pooled["mean"], [10.5])
    np.testing.assert_allclose(per["mean"], [10.5])
    np.testing.assert_allclose(pooled["std"], [np.std([0, 2, 10, 30])])
    np.testing.assert_allclose(per["std"], [(1.0 + 10.0) / 2])  # stds 1 and 10


def test_zero_variance_and_n_minus_1_of_one_value():
    case = one("cases: [{id: z, op: instance_norm, input: {shape: [1, 2, 1], dtype: float64}, params: {variance: V}}]".replace("V", "unbiased"))
    assert np.isnan(oracle.reference(case, generate(case))["y"]).all()  # 0 / 0
    case = one("cases: [{id: z, op: instance_norm, input: {shape: [1, 2, 1], dtype: float64}}]")
    assert (oracle.reference(case, generate(case))["y"] == 0).all()


def test_large_mean_deviations_are_accurate():
    """The corrected two-pass keeps x - mean accurate at mean 1e6, std 1 (kappa = 1e6)."""
    case = one("cases: [{id: s, op: layer_norm, input: {shape: [2, 512], dtype: float64, generator: {dist: normal, mean: 1.0e+6, seed: 4}}}]")
    assert worst_ulps(case) <= ULPS


def test_condition_of_a_layer_norm_over_every_dim_batch_included():
    """No dim is left out of the statistics: the whole input is the one slice (issue 12: this raised
    TypeError in cut_along), whole or in the large-input path."""
    case = one("cases: [{id: a, op: layer_norm, input: {shape: [2, 1, 2], dtype: float64, data: [[[1, 3]], [[5, 7]]]}, "
               "params: {axes: [0, 1, 2], eps: 0.0}}]")
    inputs = generate(case)
    assert oracle.condition(case, inputs) == pytest.approx(4.0 / np.sqrt(5.0), rel=1e-15)  # mean 4, var 5
    np.testing.assert_allclose(oracle.reference(case, inputs)["y"].ravel(), np.array([-3, -1, 1, 3]) / np.sqrt(5.0))


def test_condition_of_a_layer_norm_over_the_batch_axis_alone():
    """Slices along the channel dim, each over the two images: the worst of them counts."""
    case = one("cases: [{id: b, op: layer_norm, input: {shape: [2, 2], dtype: float64, data: [[1, 10], [3, 10.5]]}, "
               "params: {axes: [-2], eps: 0.0}}]")
    assert case.params["axes"] == [0]
    assert oracle.condition(case, generate(case)) == pytest.approx(10.25 / 0.25, rel=1e-15)  # [1, 3]: 2 / 1


def test_gradients_of_an_empty_batch_are_empty_and_parameter_sums_are_zero():
    """With N = 0 the exact sums reshape rows of zero values (reshape(0, -1) cannot infer the -1)."""
    case = one("cases: [{id: e, op: instance_norm, input: {shape: [0, 3, 4], dtype: float64, data: []}, "
               "params: {grad: true, weight: [1.0, 2.0, 3.0], bias: [0.0, 0.0, 1.0]}}]")
    got = oracle.reference(case, generate(case))
    assert got["y"].shape == got["grad_x"].shape == (0, 3, 4)
    np.testing.assert_array_equal(got["grad_weight"], np.zeros(3))
    np.testing.assert_array_equal(got["grad_bias"], np.zeros(3))
    assert oracle.fsum(np.ones((2, 0, 3)), (1,)).tolist() == [[0.0] * 3] * 2


# ---- the tests above have teeth: mutated oracles must fail them ----------------------------

def _mutant_eps_outside_sqrt(x, axes, eps, ddof):
    dev, var = oracle.deviations(x, axes, ddof)
    return dev / (np.sqrt(var) + eps)


def _mutant_n_minus_1(x, axes, eps, ddof):
    dev, var = oracle.deviations(x, axes, ddof)
    n = int(np.prod([np.shape(x)[a] for a in axes]))
    return dev / np.sqrt(var * (n - ddof) / (n - ddof - 1) + eps)


def _mutant_one_pass(x, axes, eps, ddof):
    x = np.asarray(x, dtype=np.float64)
    n = int(np.prod([x.shape[a] for a in axes]))
    mean = x.mean(axis=tuple(axes), keepdims=True)
    var = ((x * x).mean(axis=tuple(axes), keepdims=True) - mean * mean) * n / (n - ddof)
    return (x - mean) / np.sqrt(var + eps)


# the mutants divide by n - 1 = 0 and cancel to 0/0 on one-value slices on purpose: NaN is their answer
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
@pytest.mark.parametrize("mutant", [_mutant_eps_outside_sqrt, _mutant_n_minus_1, _mutant_one_pass])
def test_mutated_oracle_is_caught(monkeypatch, mutant):
    monkeypatch.setattr(oracle, "normalize_over", mutant)
    caught = [c.key for c in SMALL if c.op in ("instance_norm", "layer_norm", "group_norm") and worst_ulps(c) > ULPS]
    assert len(caught) >= 5, f"only {caught} noticed the mutation"


# ---- rms_norm ----------------------------------------------------------------------------------

def test_hand_computed_rms_norm():
    """[3, 4]: mean square 12.5; [0, 0] with eps 0 is 0/0."""
    case = one("cases: [{id: a, op: rms_norm, input: {shape: [2, 2], dtype: float64, data: [[3, 4], [0, 0]]}, "
               "params: {eps: 0.0}}]")
    y = oracle.reference(case, generate(case))["y"]
    np.testing.assert_allclose(y[0], [3 / 12.5 ** 0.5, 4 / 12.5 ** 0.5], rtol=1e-15)
    assert np.isnan(y[1]).all()
    with_weight = case.with_params(eps=0.5, weight=[2.0, -1.0], weight_offset=1.0)
    got = oracle.reference(with_weight, {**generate(case), "weight": np.array([2.0, -1.0])})["y"]
    np.testing.assert_allclose(got, [[9 / 13 ** 0.5, 0.0], [0.0, 0.0]], rtol=1e-15)  # (1 + 2) * 3 / sqrt(13)


def test_rms_norm_machine_epsilon_of_the_input_dtype():
    text = ("cases: [{id: a, op: rms_norm, input: {shape: [1, 4], dtype: DT, data: [[0.0625, 0, 0, 0]]}, "
            "params: {eps: null}}]")
    for dtype, eps in (("float32", 2.0 ** -23), ("bfloat16", 2.0 ** -7), ("float16", 2.0 ** -10)):
        case = one(text.replace("DT", dtype))
        y = oracle.reference(case, generate(case))["y"]
        assert y[0, 0] == 0.0625 / np.sqrt(0.0625 ** 2 / 4 + eps), dtype


def test_rms_norm_cast_before_weight_rounds_at_its_three_points():
    """bfloat16, x / rms = 1/3 (rounded: 0.333984375), weight 0.3 (bfloat16: 0.30078125): last gives the
    exact 1/3 * 0.30078125; before_weight the bfloat16 product of the rounded factors, rounded."""
    text = ("cases: [{id: a, op: rms_norm, input: {shape: [1, 1], dtype: bfloat16, data: [[1.0]]}, "
            "params: {eps: 8.0, weight: [0.3], cast: CAST}}]")
    last, before = (one(text.replace("CAST", c)) for c in ("last", "before_weight"))
    w = generate(last)["weight"][0]
    assert w == 0.30078125
    assert oracle.reference(last, generate(last))["y"][0, 0] == pytest.approx(w / 3, rel=1e-15)
    from normconf.inputs import round_to_dtype
    want = round_to_dtype(np.array([round_to_dtype(np.array([1 / 3]), "bfloat16")[0] * w]), "bfloat16")[0]
    assert oracle.reference(before, generate(before))["y"][0, 0] == want != w / 3


def test_rms_norm_condition_is_one_even_at_mean_1e4():
    case = one("cases: [{id: a, op: rms_norm, input: {shape: [4, 64], generator: {dist: normal, mean: 1.0e+4}}}]")
    assert oracle.condition(case, generate(case)) == 1.0
    layer = one("cases: [{id: a, op: layer_norm, input: {shape: [4, 64], generator: {dist: normal, mean: 1.0e+4}}}]")
    assert oracle.condition(layer, generate(layer)) > 1e3  # the same input: layer norm cancels, rms_norm does not


def _rms_mutant_no_rounding(values, dtype, inplace=False):
    return np.array(values, dtype=np.float64)


@pytest.mark.parametrize("where, mutant", [("round_to_dtype", _rms_mutant_no_rounding),
                                           ("rms_eps", lambda params, dtype: params["eps"] or 0.0)])
def test_mutated_rms_oracle_is_caught(monkeypatch, where, mutant):
    """Without the rounding points of before_weight, or with eps null read as 0, the float64 oracle
    leaves the exact one (which rounds and resolves eps on its own)."""
    monkeypatch.setattr(oracle, where, mutant)
    caught = [c.key for c in SMALL if c.op == "rms_norm" and worst_ulps(c) > ULPS]
    assert len(caught) >= 2, f"only {caught} noticed the mutation"

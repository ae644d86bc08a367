"""The oracle's variation hooks (normconf.oracle.Variation), which the explainer's variants run.

The default variation must be the oracle bit for bit (the explanations are computed from it);
each hook must change what it says and nothing else."""
from pathlib import Path

import numpy as np
import pytest

from normconf import oracle
from normconf.cases import GRADIENTS, load_paths, load_text
from normconf.inputs import generate

ROOT = Path(__file__).resolve().parents[1]
SMALL = [c for c in load_paths([ROOT / "cases"])[0] if np.prod(c.shape) <= 4000]


def one(text):
    cases, errors = load_text(text, "t.yaml")
    assert not errors, errors
    return cases[0]


def same_bits(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


def recording(calls):
    """The oracle's own two-pass moments, each call's input shape and ddof appended to ``calls``."""
    def moments(x, axes, ddof):
        calls.append((np.shape(x), tuple(axes), ddof))
        return oracle._moments(x, axes, ddof)
    return moments


def test_small_cases_cover_every_op():
    assert {c.op for c in SMALL} == set(oracle.OPS)
    assert any(c.params.get("grad") for c in SMALL) and any(c.params.get("track_running_stats") for c in SMALL)


@pytest.mark.parametrize("case", SMALL, ids=[c.key for c in SMALL])
def test_the_default_variation_is_the_oracle_bit_for_bit(case):
    """Variation() and Variation(moments=the oracle's own) give the oracle's forward outputs, to the
    bit; a variation has no gradients (the analytic ones are the two-pass statistics')."""
    inputs = generate(case)
    want = oracle.reference(case, inputs)
    forward = {n: v for n, v in want.items() if n not in GRADIENTS}
    # rms_norm has no mean and variance: the explainer varies its statistic with normconf.explain.rms
    hooks = () if case.op == "rms_norm" else (oracle.Variation(moments=recording([])),)
    for variation in (oracle.Variation(), *hooks):
        got = oracle.reference(case, inputs, variation)
        assert set(got) == set(forward)
        for name, value in forward.items():
            assert same_bits(got[name], value), name


RMS = [c for c in load_paths([ROOT / "cases"])[0] if c.op == "rms_norm"]


@pytest.mark.parametrize("case", RMS, ids=[c.key for c in RMS])
def test_the_explainers_rms_forward_is_the_oracle_bit_for_bit(case):
    """normconf.explain.rms.forward assembles y as the oracle does (weight, weight_offset, cast); the
    rms_norm variants change only the statistic or subtract the mean, so unchanged it is the oracle."""
    from normconf.explain import rms

    inputs = generate(case)
    assert same_bits(rms.forward(case, inputs)["y"], oracle.reference(case, inputs)["y"])


def test_rms_variants_change_what_they_say():
    """The layer norm variant subtracts the mean (y of a layer norm times the weight); computed in
    float16 throughout, a square past 65504 makes its slice's y 0; a moments hook is refused."""
    from normconf.explain import rms

    case = one("cases: [{id: r, op: rms_norm, input: {shape: [3, 16], dtype: float16, generator: {dist: normal, "
               "mean: 2.0, seed: 7}}, params: {weight: {generator: {dist: normal, mean: 1.0, seed: 8}}}}]")
    inputs = generate(case)
    x, w = inputs["x"], inputs["weight"]
    got = rms.forward(case, inputs, subtract_mean=True)["y"]
    np.testing.assert_allclose(got, oracle.normalize_over(x, (1,), 1e-6, 0) * w, rtol=1e-13)
    assert not np.allclose(got, oracle.reference(case, inputs)["y"], rtol=1e-2)
    big = dict(inputs, x=np.where(np.arange(16) == 3, 300.0, x))  # 300^2 = 9e4 > 65504 in every row
    half = rms.in_dtype("float16", "pairwise")(case, big)["y"]
    assert (half == 0).all() and np.isfinite(oracle.reference(case, big)["y"]).all()
    close = rms.in_dtype("float16", "pairwise")(case, inputs)["y"]
    np.testing.assert_allclose(close, oracle.reference(case, inputs)["y"], rtol=4e-3, atol=4e-3)
    with pytest.raises(ValueError, match="rms_norm has no mean and variance"):
        oracle.reference(case, inputs, oracle.Variation(moments=recording([])))


def test_the_moments_hook_computes_every_statistic_y_last():
    """Each training step's statistics (the running variance's divisor) and then y's go through it."""
    case = one("cases: [{id: b, op: batch_norm, input: {shape: [4, 3, 2, 2], generator: {dist: normal, seed: 3}}, "
               "params: {steps: 3, running_variance: unbiased}}]")
    inputs = generate(case)
    calls = []
    oracle.reference(case, inputs, oracle.Variation(moments=recording(calls)))
    assert calls == [((4, 3, 2, 2), (0, 2, 3), 1)] * 3 + [((4, 3, 2, 2), (0, 2, 3), 0)]
    calls.clear()
    oracle.reference(case.with_params(eval_after=True), inputs, oracle.Variation(moments=recording(calls)))
    assert calls == [((4, 3, 2, 2), (0, 2, 3), 1)] * 3  # y normalized with the running statistics


def test_a_moments_hook_changes_the_statistics():
    """Variances doubled: y shrinks by sqrt(2) where eps is 0, the running variance moves, the mean not."""
    case = one("cases: [{id: b, op: batch_norm, input: {shape: [6, 2, 3], generator: {dist: normal, seed: 4}}, "
               "params: {eps: 0.0, momentum: 1.0}}]")
    inputs = generate(case)

    def doubled(x, axes, ddof):
        mean, dev, var = oracle._moments(x, axes, ddof)
        return mean, dev, 2 * var

    want = oracle.reference(case, inputs)
    got = oracle.reference(case, inputs, oracle.Variation(moments=doubled))
    np.testing.assert_allclose(got["y"], want["y"] / np.sqrt(2), rtol=1e-14)
    np.testing.assert_allclose(got["running_var"], 2 * want["running_var"], rtol=1e-14)
    assert same_bits(got["running_mean"], want["running_mean"])


@pytest.mark.parametrize("op", ["instance_norm", "batch_norm_eval"])
def test_eps_on_std(op):
    if op == "instance_norm":
        case = one("cases: [{id: i, op: instance_norm, input: {shape: [2, 3, 4, 4], generator: {dist: normal, seed: 5}}, "
                   "params: {eps: 0.1}}]")
    else:
        case = one("cases: [{id: b, op: batch_norm, input: {shape: [2, 3, 4, 4], generator: {dist: normal, seed: 5}}, "
                   "params: {eps: 0.1, training: false, running_mean: [0.5, -0.5, 0.0], running_var: [2.0, 0.5, 1.0]}}]")
    inputs = generate(case)
    x = inputs["x"]
    if op == "instance_norm":
        mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    else:
        mean, var = inputs["running_mean"].reshape(1, 3, 1, 1), inputs["running_var"].reshape(1, 3, 1, 1)
    got = oracle.reference(case, inputs, oracle.Variation(eps_on_std=True))["y"]
    np.testing.assert_allclose(got, (x - mean) / (np.sqrt(var) + 0.1), rtol=1e-13, atol=1e-14)
    assert not np.allclose(got, oracle.reference(case, inputs)["y"], rtol=1e-3)


def test_axes_change_y_and_keep_the_running_statistics():
    """An instance norm over batch norm's dims is batch norm's y, to the bit; batch norm over other
    dims keeps its running statistics over its own."""
    text = ("cases: [{id: a, op: %s, input: {shape: [3, 2, 4, 5], generator: {dist: normal, mean: 1.0, seed: 6}}, "
            "params: {%s}}]")
    inst = one(text % ("instance_norm", "eps: 0.001"))
    batch = one(text % ("batch_norm", "eps: 0.001"))
    inputs = generate(batch)
    over = oracle.Variation(axes=(0, 2, 3))
    assert same_bits(oracle.reference(inst, {"x": inputs["x"]}, over)["y"], oracle.reference(batch, inputs)["y"])
    layer = oracle.reference(batch, inputs, oracle.Variation(axes=(1, 2, 3)))
    want = oracle.reference(batch, inputs)
    assert same_bits(layer["running_mean"], want["running_mean"]) and same_bits(layer["running_var"], want["running_var"])
    assert same_bits(layer["y"], oracle.normalize_over(inputs["x"], (1, 2, 3), 0.001, 0))
    group = one(text % ("group_norm", "groups: 2"))
    assert same_bits(oracle.reference(group, {"x": inputs["x"]}, oracle.Variation(axes=(2, 3)))["y"],
                     oracle.normalize_over(inputs["x"], (2, 3), 1e-5, 0))


@pytest.mark.parametrize("op", ["channel_stats", "normalize"])
def test_axes_of_an_op_without_y_statistics_are_refused(op):
    params = "{}" if op == "channel_stats" else "{mean: [0.0, 1.0], std: [1.0, 2.0]}"
    case = one(f"cases: [{{id: c, op: {op}, input: {{shape: [2, 2, 3, 3]}}, params: {params}}}]")
    with pytest.raises(ValueError, match=f"{op} has no y statistics"):
        oracle.reference(case, generate(case), oracle.Variation(axes=(0, 2)))

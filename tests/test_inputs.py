"""Seeded inputs: reproducible, rounded to the case dtype, the same for every framework."""
import hashlib

import numpy as np
import pytest

from normconf.cases import load_text
from normconf.inputs import draw, generate, round_to_dtype


def one(text):
    cases, errors = load_text(text, "pin.yaml")
    assert not errors, errors
    return cases[0]


def digest(x):
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float64).tobytes()).hexdigest()


def test_pinned_float32_normal_input():
    # A change in generation (RNG, seeding, rounding) must not pass unnoticed: every golden
    # vector and every stored result depends on these exact numbers.
    case = one("cases: [{id: pin, op: instance_norm, input: {shape: [2, 3, 5, 5], dtype: float32, "
               "generator: {dist: normal, mean: 0.5, std: 2.0, seed: 1}}}]")
    x = generate(case)["x"]
    assert digest(x) == "c452b0259182422fb5e8e8225d4178acd3f29d103b3d4e03c1e096f6aa600361"
    assert x.flat[0] == np.float64(np.float32(1.1911684273779392))


def test_pinned_bfloat16_uniform_input():
    case = one("cases: [{id: pin, op: instance_norm, input: {shape: [2, 3, 4], dtype: bfloat16, "
               "generator: {dist: uniform, low: -3, high: 3, seed: 7}}}]")
    x = generate(case)["x"]
    assert digest(x) == "eba9d66f4f3ed570f5ed9b34bafec03dfc4df858f543981e950af1abc2fe5d21"
    assert x.flat[:3].tolist() == [0.75, 2.390625, 1.65625]


def test_values_are_drawn_in_float64_with_pcg64_then_cast():
    gen = {"dist": "normal", "mean": 0.0, "std": 1.0, "seed": 3}
    expected = np.random.Generator(np.random.PCG64(3)).normal(0.0, 1.0, size=(4, 5))
    np.testing.assert_array_equal(draw(gen, (4, 5)), expected)
    case = one("cases: [{id: a, op: layer_norm, input: {shape: [4, 5], dtype: float16, generator: {dist: normal, seed: 3}}}]")
    np.testing.assert_array_equal(generate(case)["x"], expected.astype(np.float16).astype(np.float64))


@pytest.mark.parametrize("dtype", ["float16", "float32", "bfloat16"])
def test_round_to_dtype_is_idempotent_and_nearest(dtype):
    # magnitudes 1e-3..1e3: inside the normal range of every dtype (float16 goes subnormal below 6e-5)
    values = np.random.default_rng(0).uniform(-2, 2, size=1000) * 10.0 ** np.random.default_rng(1).integers(-3, 4, 1000)
    values = np.where(np.abs(values) < 1e-3, 1e-3, values)
    once = round_to_dtype(values, dtype)
    np.testing.assert_array_equal(round_to_dtype(once, dtype), once)
    p = {"float16": 11, "float32": 24, "bfloat16": 8}[dtype]
    rel = np.abs(once - values) / np.abs(values)
    assert rel.max() <= 2.0 ** -p  # round to nearest: at most half a unit in the last place


def test_bfloat16_rounding_matches_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes (installed with jax/tensorflow) gives an independent bfloat16")
    values = np.random.default_rng(2).normal(size=5000) * 1e3
    ours = round_to_dtype(values, "bfloat16")
    theirs = values.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)
    np.testing.assert_array_equal(ours, theirs)


def test_batch_norm_steps_use_seed_plus_k_and_x_is_the_last_step():
    case = one("cases: [{id: s, op: batch_norm, input: {shape: [4, 2], dtype: float64, generator: {dist: normal, seed: 10}}, params: {steps: 3}}]")
    inputs = generate(case)
    assert len(inputs["x_steps"]) == 3
    for k, xk in enumerate(inputs["x_steps"]):
        np.testing.assert_array_equal(xk, np.random.Generator(np.random.PCG64(10 + k)).normal(size=(4, 2)))
    np.testing.assert_array_equal(inputs["x"], inputs["x_steps"][-1])
    np.testing.assert_array_equal(inputs["running_mean"], [0.0, 0.0])
    np.testing.assert_array_equal(inputs["running_var"], [1.0, 1.0])


def test_per_channel_parameters_are_rounded_to_the_case_dtype():
    case = one("cases: [{id: w, op: instance_norm, input: {shape: [1, 2, 3], dtype: bfloat16}, params: {weight: [0.1, 0.3]}}]")
    w = generate(case)["weight"]
    np.testing.assert_array_equal(w, round_to_dtype([0.1, 0.3], "bfloat16"))
    assert w[0] != 0.1

"""Large tensors: the sliced oracle, the chunked comparison and rounding, the sampled matrices and the
sliced explanation give what the whole-array code gives, and memory stays a small multiple of the input.

The slice sizes are patched small here so that small arrays take the large-array paths; the 1 GiB
cases themselves are in cases/large.yaml (README, "Speed and scale")."""
from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from adapters.numpy_adapter import NumpyAdapter
from normconf import compare as compare_mod
from normconf import engine, inputs as inputs_mod, oracle, report
from normconf.cases import load_file, load_text
from normconf.compare import compare
from normconf.engine import context, evaluate, forget
from normconf.inputs import generate, round_to_dtype
from normconf.records import Status

ROOT = Path(__file__).resolve().parents[1]

OPS = """
cases:
- {id: inorm, op: instance_norm, input: {shape: [6, 3, 5, 4], generator: {dist: normal, mean: 3, seed: 1}},
   params: {weight: {generator: {dist: normal}}, bias: [1, 2, 3]}}
- {id: gnorm, op: group_norm, input: {shape: [6, 4, 5], generator: {dist: normal, seed: 1}}, params: {groups: 2}}
- {id: lnorm, op: layer_norm, input: {shape: [6, 4, 5], generator: {dist: normal, seed: 1}},
   params: {axes: [2], weight: {generator: {dist: normal}}}}
- {id: bnorm, op: batch_norm, input: {shape: [6, 5, 3], generator: {dist: normal, seed: 1}},
   params: {steps: 3, momentum: null, weight: {generator: {dist: normal}}}}
- {id: bnorm_eval, op: batch_norm, input: {shape: [6, 5, 3], generator: {dist: normal, seed: 1}},
   params: {training: false, running_var: {generator: {dist: uniform, low: 1, high: 2}}}}
- {id: norm, op: normalize, input: {shape: [6, 3, 4], generator: {dist: normal, seed: 1}},
   params: {mean: [1, 2, 3], std: [1, 2, 4]}}
- {id: stats, op: channel_stats, input: {shape: [6, 5, 4], generator: {dist: normal, seed: 1}},
   params: {method: per_image_mean}}
- {id: stats_pooled, op: channel_stats, input: {shape: [6, 5, 4], generator: {dist: normal, mean: 100, seed: 1}}}
"""


def cases_of(text):
    cases, errors = load_text(text, "t.yaml")
    assert not errors, errors
    return cases


@pytest.mark.parametrize("case", cases_of(OPS), ids=lambda c: c.id)
def test_sliced_oracle_matches_the_whole_array_oracle(case, monkeypatch):
    given = generate(case)
    whole, k_whole = oracle.reference(case, given), oracle.condition(case, given)
    monkeypatch.setattr(oracle, "SLICE_BYTES", 8 * 20)  # a slice of a few elements: many slices
    assert oracle.independent_axis(case) is not None
    parts, k_parts = oracle.reference(case, given), oracle.condition(case, given)
    assert whole.keys() == parts.keys()
    for name in whole:
        assert whole[name].shape == parts[name].shape
        # another summation order moves float64 results by an ULP at most
        np.testing.assert_allclose(parts[name], whole[name], rtol=4e-16, atol=4e-16)
    assert k_parts == pytest.approx(k_whole, rel=1e-15)


@pytest.mark.parametrize("text", [
    "{id: a, op: layer_norm, input: {shape: [4, 3, 2]}, params: {axes: [0, 2]}}",
    "{id: a, op: instance_norm, input: {shape: [4, 3, 2]}, params: {grad: true}}",
    "{id: a, op: instance_norm, input: {shape: [4, 3, 2]}, params: {track_running_stats: true}}",
])
def test_ops_whose_outputs_mix_the_slices_are_never_sliced(text):
    case = cases_of(f"cases: [{text}]")[0]
    assert oracle.independent_axis(case) is None


def test_chunked_comparison_matches_one_pass_over_everything(monkeypatch):
    rng = np.random.default_rng(3)
    e = rng.normal(size=(7, 11, 13))
    a = e + rng.normal(size=e.shape) * 1e-6
    a[2, 3, 4], e[5, 1, 1], a[5, 1, 1] = np.nan, np.inf, np.inf
    e[1, 1, 1], a[1, 1, 1] = 0.0, 1e-7
    a[6, 10, 12] += 1.0  # the worst element, in the last slice
    a[0, 0, 5] += 1.0  # as bad, earlier: the first in flat order is reported (NaN is worse)
    whole = compare(e, a, "float32", 1e-5, 1e-5)
    monkeypatch.setattr(compare_mod, "CHUNK", 17)
    chunked = compare(e, a, "float32", 1e-5, 1e-5)
    assert chunked == whole
    assert chunked["worst_index"] == [2, 3, 4] and chunked["nan_actual"] == 1 and chunked["bad"] == 3
    a[2, 3, 4] = e[2, 3, 4]
    assert compare(e, a, "float32", 1e-5, 1e-5)["worst_index"] == [0, 0, 5]


def test_rounding_in_place_and_in_slices_gives_the_same_values(monkeypatch):
    values = np.random.default_rng(4).normal(size=(3, 1000)) * 300
    for dtype in ("float32", "float16", "bfloat16"):
        want = round_to_dtype(values, dtype)
        monkeypatch.setattr(inputs_mod, "CHUNK", 7)
        copy = values.copy()
        got = round_to_dtype(copy, dtype, inplace=True)
        assert got is copy and np.array_equal(got, want)
        monkeypatch.undo()
    with pytest.raises(ValueError, match="C-contiguous"):
        round_to_dtype(values.T, "float32", inplace=True)


def test_large_outputs_are_stored_as_a_sample_and_the_oracle_row_stays_exact(monkeypatch, tmp_path):
    case = cases_of("cases: [{id: big, op: instance_norm, input: {shape: [4, 3, 50], dtype: float32, "
                    "generator: {dist: normal, seed: 9}}}]")[0]
    monkeypatch.setattr(report, "SAMPLE", 64)  # 600 elements: every 10th is stored
    store = report.ArrayStore(tmp_path)
    result = evaluate(case, NumpyAdapter())
    arrays = result.arrays
    store.save(case.key, "oracle", context(case).expected)
    store.save(case.key, "adapter-numpy", arrays)
    # a second adapter that is off in an element the sample skips (flat index 1 is not a multiple of 10)
    shifted = arrays["y"].copy()
    shifted.reshape(-1)[1] += 0.5
    off = dataclasses.replace(result, adapter="other", status=Status.FAIL, has_arrays=True,
                              outputs={"y": compare(context(case).expected["y"], shifted, "float32", 1e-5, 1e-5)})
    store.save(case.key, "adapter-other", {"y": shifted})
    doc = report.build([dataclasses.replace(result, has_arrays=True), off], {}, store, {})
    matrix = doc["matrices"][case.key]
    assert matrix["sampled"] == {"y": {"every": 10, "of": 600}}
    labels = matrix["labels"]
    oracle_to_other = matrix["max_abs"][0][labels.index("other")]
    assert oracle_to_other == pytest.approx(0.5, rel=1e-3)  # exact, from the result: the sample misses it
    assert matrix["max_abs"][labels.index("numpy")][labels.index("other")] < 1e-3  # a sample estimate
    forget(case)


class UnbiasedNumpy(NumpyAdapter):
    """NumPy with the n-1 divisor: a mismatch the explainer must find on a slice."""

    name = "numpy-unbiased"

    def run(self, case, inputs):
        return super().run(case.with_params(variance="unbiased"), inputs)


def test_large_case_is_explained_on_a_slice(monkeypatch):
    case = cases_of("cases: [{id: big, op: instance_norm, input: {shape: [40, 3, 6, 5], dtype: float64, "
                    "generator: {dist: normal, seed: 10}}}]")[0]
    monkeypatch.setattr(engine, "EXPLAIN_ELEMENTS", 180)  # 2 of 40 images
    result = evaluate(case, UnbiasedNumpy())
    ex = result["explanation"]
    assert result["status"] == "fail"
    assert ex["cause"] == "variance_divisor"
    assert ex["slice"]["axis"] == 0 and ex["slice"]["of"] == 40 and ex["slice"]["indices"][1] - ex["slice"]["indices"][0] == 2
    assert "of axis 0, of 40, from the worst element on" in ex["detail"]
    forget(case)


def test_memory_stays_a_small_multiple_of_the_input(monkeypatch):
    """Peak traced memory (NumPy reports its allocations to tracemalloc) over the float32 input's own
    size. Inputs and oracle: x in float64 (2) and the oracle's y in float64 (2), plus slices; the
    comparison of a float32 output against it: slices only. (The adapter's own copies and
    temporaries are the framework's cost, measured by benchmarks/, not bounded here.)"""
    # the regime of a 1 GiB input, where slices are a few percent of it: sliced oracle, chunked comparison
    monkeypatch.setattr(oracle, "SLICE_BYTES", 1 << 20)
    monkeypatch.setattr(compare_mod, "CHUNK", 1 << 14)
    case = cases_of("cases: [{id: mem, op: instance_norm, input: {shape: [16, 64, 64, 64], dtype: float32, "
                    "generator: {dist: normal, mean: 1, seed: 11}}}]")[0]
    size = 4 * int(np.prod(case.shape))  # 16 MiB of float32
    tracemalloc.start()
    try:
        ctx = context(case)
        _, oracle_peak = tracemalloc.get_traced_memory()
        actual = ctx.expected["y"].astype(np.float32)
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert compare(ctx.expected["y"], actual, "float32", **ctx.tolerance["y"])["ok"]
        _, compare_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        forget(case)
    assert oracle_peak / size < 4.5, f"inputs + oracle peak {oracle_peak / size:.2f} x the input"
    assert (compare_peak - held) / size < 0.5, f"comparison adds {(compare_peak - held) / size:.2f} x the input"


def test_the_shipped_large_cases_are_1_gib_and_tagged():
    cases, errors = load_file(ROOT / "cases" / "large.yaml")
    assert not errors
    assert {c.op for c in cases} == {"instance_norm", "batch_norm", "layer_norm", "group_norm"}
    for case in cases:
        assert case.shape == (64, 256, 128, 128) and case.dtype == "float32" and "large" in case.tags
        assert 4 * np.prod(case.shape) == 2**30


def test_large_cases_are_skipped_without_the_large_option():
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--adapters", "numpy",
           "--report-dir=" + str(ROOT / "reports" / "never-written"), str(ROOT / "cases" / "large.yaml")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "4 skipped" in proc.stdout and "run it with --large" in proc.stdout
    assert not (ROOT / "reports" / "never-written").exists()  # nothing ran, nothing written


def test_context_cache_drops_old_cases_beyond_its_budget(monkeypatch):
    """1 GiB contexts must not pile up case after case: beyond the budget the least recently used
    context is dropped (never the one in use), and a dropped case is computed again when asked."""
    cases = cases_of("cases: [" + ", ".join(
        f"{{id: c{i}, op: instance_norm, input: {{shape: [4, 8, 16, 16], generator: {{dist: normal, seed: {i}}}}}}}"
        for i in range(4)) + "]")
    one = 8 * 4 * 8 * 16 * 16 * 2  # x and y in float64
    monkeypatch.setattr(engine, "CONTEXT_BUDGET", int(2.5 * one))
    for case in cases:
        forget(case)
    first = [context(c) for c in cases]
    held = [k for k in engine._CONTEXTS if k[1].startswith("c")]
    assert held == [("t.yaml", "c2"), ("t.yaml", "c3")]  # the two most recent fit
    assert context(cases[3]) is first[3]  # cached
    assert context(cases[0]) is not first[0]  # recomputed after being dropped
    assert np.array_equal(context(cases[0]).expected["y"], first[0].expected["y"])
    # the bytes held are counted as contexts come, grow (a variant) and go, never summed per item
    context(cases[0]).variant({"eps": 1e-3})
    forget(cases[3])
    assert engine._HELD[0] == sum(c.nbytes for c in engine._CONTEXTS.values())
    for case in cases:
        forget(case)


class WrongImage30(NumpyAdapter):
    """NumPy, except that images 30 and on are normalized with the n-1 divisor: the mismatch is there only."""

    name = "numpy-image-30"

    def run(self, case, inputs):
        out = super().run(case, inputs)
        other = super().run(case.with_params(variance="unbiased"), inputs)
        out["y"][30:] = other["y"][30:]
        return out


def test_large_case_is_explained_on_the_slice_of_its_worst_element(monkeypatch):
    case = cases_of("cases: [{id: big30, op: instance_norm, input: {shape: [40, 3, 6, 5], dtype: float64, "
                    "generator: {dist: normal, seed: 12}}}]")[0]
    monkeypatch.setattr(engine, "EXPLAIN_ELEMENTS", 180)  # 2 of 40 images
    result = evaluate(case, WrongImage30())
    lo, hi = result["explanation"]["slice"]["indices"]
    assert result["outputs"]["y"]["worst_index"][0] >= 30 and 30 <= lo < hi
    assert result["explanation"]["cause"] == "variance_divisor"
    forget(case)


def test_large_oracle_variants_are_not_held(monkeypatch):
    """A native convention's oracle variant is as large as the output: beyond the limit it is
    recomputed per adapter instead of held in the case's context, with the same verdict."""
    case = cases_of("cases: [{id: var, op: instance_norm, input: {shape: [4, 3, 6, 5], dtype: float64, "
                    "generator: {dist: normal, seed: 13}}, params: {variance: biased}}]")[0]

    class NativeUnbiased(UnbiasedNumpy):
        name, native = "numpy-native-unbiased", {"variance": "unbiased"}

    held = evaluate(case, NativeUnbiased())
    assert held["status"] == "expected" and context(case)._variants
    forget(case)
    monkeypatch.setattr(engine, "VARIANT_CACHE_BYTES", 0)
    again = evaluate(case, NativeUnbiased())
    assert again["status"] == "expected" and not context(case)._variants
    assert again["outputs"] == held["outputs"]
    forget(case)

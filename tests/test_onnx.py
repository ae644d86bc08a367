"""The ONNX adapters: one-node graphs per op and opset, the opset-18 group norm, the float32 attributes.

Each test needs onnx (and where it runs a model, its runtime): without it the test is skipped with
the reason, as the adapters are then unavailable.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adapters import onnx_adapter as ox
from normconf import reproduce
from normconf.cases import load_text

ROOT = Path(__file__).resolve().parents[1]

CASES = Path(__file__).resolve().parent.parent / "cases"
ONNX_CASES = str(CASES / "onnx.yaml")


def case_of(text: str):
    cases, errors = load_text(text, "t.yaml")
    assert not errors, errors
    return cases[0]


@pytest.mark.parametrize("op, opset, version", [
    ("InstanceNormalization", 23, 22), ("InstanceNormalization", 18, 6), ("BatchNormalization", 23, 15),
    ("LayerNormalization", 18, 17), ("GroupNormalization", 23, 21), ("GroupNormalization", 18, 18),
    ("RMSNormalization", 23, 23), ("RMSNormalization", 18, None)])
def test_op_version_is_the_newest_at_or_below_the_opset(op, opset, version):
    assert ox.op_version(op, opset) == version


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "bfloat16"])
@pytest.mark.parametrize("op, params", [
    ("InstanceNormalization", (("scale", 1), ("B", 1))),
    ("GroupNormalization", (("scale", 1), ("B", 1))),
    ("BatchNormalization", (("scale", 1), ("B", 1), ("input_mean", 1), ("input_var", 1))),
])
def test_built_models_pass_the_onnx_checker(op, params, dtype):
    onnx = pytest.importorskip("onnx")
    attrs = (("epsilon", 1e-5),) + ((("num_groups", 2),) if op == "GroupNormalization" else ())
    for opset in (18, 23):
        native = ox.op_version(op, opset) >= ox.BF16_SINCE[op]  # else the node runs in float32 between Casts
        model = onnx.load_from_string(ox.build_model(op, opset, dtype, 4, attrs=attrs, params=params,
                                                     perm=(0, 3, 1, 2), bf16_native=native))
        if op == "GroupNormalization" and opset == 18:
            # onnx 1.16+ deprecates GroupNormalization-18 (its per-group scale): the checker refuses it,
            # the runtimes still run it (the opset-18 adapters)
            with pytest.raises(onnx.checker.ValidationError, match="deprecated"):
                onnx.checker.check_model(model, full_check=True)
        else:
            onnx.checker.check_model(model, full_check=True)
        kinds = [n.op_type for n in model.graph.node]
        assert kinds.count(op) == 1 and kinds.count("Transpose") == 2
        # bfloat16 travels as float32 and is Cast around the node (or around its output)
        assert ("Cast" in kinds) == (dtype == "bfloat16")
        assert model.opset_import[0].version == opset


def test_layer_norm_transposes_only_axes_that_are_not_trailing():
    adapter = ox.OnnxReferenceAdapter()
    trailing = case_of("cases: [{id: a, op: layer_norm, input: {shape: [2, 3, 4, 5]}, params: {axes: [2, 3]}}]")
    assert adapter.layer_norm_perm(trailing) == (None, 2, [0, 1])
    # channels_last memory [N, H, W, C]: axes C and W (canonical 1, 3) sit at memory 3 and 2
    last = case_of("cases: [{id: a, op: layer_norm, input: {shape: [2, 3, 4, 5], layout: channels_last}, "
                   "params: {axes: [1, 3]}}]")
    perm, axis, order = adapter.layer_norm_perm(last)
    assert perm == (0, 1, 2, 3) or perm is None
    assert axis == 2 and order == [1, 0]  # the weight [C, W] becomes [W, C]


def test_run_onnx_model_runs_a_graph_on_onnxruntime():
    pytest.importorskip("onnxruntime")
    model = ox.build_model("InstanceNormalization", 23, "float32", 3, attrs=(("epsilon", 1e-5),),
                           params=(("scale", 1), ("B", 1)))
    x = np.arange(12, dtype=np.float32).reshape(1, 2, 6)
    out = ox.run_onnx_model(model, {"X": x, "scale": np.ones(2, np.float32), "B": np.zeros(2, np.float32)})
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(out["Y"], ref, rtol=1e-5, atol=1e-5)


def test_group_norm_opset_18_takes_the_affine_per_group_and_21_per_channel():
    pytest.importorskip("onnx")
    new = reproduce(ONNX_CASES, "group_norm_per_channel_weight_2x8x4x4@dtype=float32", "onnx-reference")
    old = reproduce(ONNX_CASES, "group_norm_per_channel_weight_2x8x4x4@dtype=float32", "onnx-reference-opset18")
    assert new["status"] == "pass"
    assert old["status"] == "expected", old["reason"]
    assert old["explanation"]["cause"] == "per_group_affine"
    assert old["explanation"]["params"]["first_channel"] == "weight and bias"
    # a weight constant within the groups is the same at both opsets
    same = reproduce(ONNX_CASES, "group_norm_group_constant_weight_2x8x4x4", "onnx-reference-opset18")
    assert same["status"] == "pass"


def test_float64_attributes_are_explained_as_rounded_to_float32():
    pytest.importorskip("onnx")
    r = reproduce(ONNX_CASES, "float64_attributes_mean1e4_8x3x4x4", "onnx-reference")
    assert r["status"] == "expected", r["reason"]
    ex = r["explanation"]
    assert ex["cause"] == "attribute_precision"
    assert ex["params"]["eps"] == float(np.float32(1e-5)) and ex["params"]["momentum"] == 1 - float(np.float32(0.9))
    assert r["outputs"]["running_mean"]["max_abs"] > 1e-4  # the momentum's rounding times |mean| 1e4
    r = reproduce(ONNX_CASES, "float64_eps_attribute_2x4x6x6", "onnx-reference")
    assert r["status"] == "expected" and r["explanation"]["cause"] == "attribute_precision"


def test_float64_group_norm_through_the_float32_stash_is_explained():
    pytest.importorskip("onnxruntime")
    r = reproduce(ONNX_CASES, "float64_group_norm_stash_mean1e4_2x4x8x8", "onnxruntime")
    assert r["status"] == "expected", r["reason"]
    # the float32 one-pass variance cancels at mean 1e4: negative in some groups (y NaN)
    assert r["outputs"]["y"]["nan_actual"] > 0 and r["outputs"]["y"]["nan_expected"] == 0
    assert set(r["explanation"].get("causes", [r["explanation"]["cause"]])) == {"compute_precision",
                                                                             "one_pass_variance"}
    # at opset 18 (no stash_type) the one-pass variance runs in float64
    r = reproduce(ONNX_CASES, "float64_group_norm_stash_mean1e4_2x4x8x8", "onnxruntime-opset18")
    assert r["explanation"]["cause"] == "one_pass_variance" and r["explanation"]["params"]["dtype"] == "float64"


def test_onnxruntime_without_a_kernel_is_unsupported_with_its_message():
    pytest.importorskip("onnxruntime")
    r = reproduce(ONNX_CASES, "float64_eps_attribute_2x4x6x6", "onnxruntime")
    assert r["status"] == "unsupported"
    assert "Could not find an implementation for InstanceNormalization" in r["reason"]


def test_gradients_are_unsupported_outputs():
    case = case_of("cases: [{id: a, op: instance_norm, input: {shape: [2, 3, 4]}, params: {grad: true}}]")
    for cls in ox.ADAPTERS:
        assert set(cls().unsupported_outputs(case)) == set(case.gradients)


def test_a_missing_runtime_is_a_reason(monkeypatch):
    import importlib.util
    import sys

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    monkeypatch.delitem(sys.modules, "openvino", raising=False)
    assert ox.OpenvinoAdapter().available() == "module 'openvino' is not installed"


def test_openvino_reads_the_same_onnx_model():
    if ox.OpenvinoAdapter().available():  # not importorskip: the adapter imports openvino its own way
        pytest.skip(ox.OpenvinoAdapter().available())
    r = reproduce(ONNX_CASES, "group_norm_group_constant_weight_2x8x4x4", "openvino")
    assert r["status"] == "pass", r["reason"]


def test_float64_group_norm_at_mean_1e4_reaches_compute_precisions_last_resort():
    """ONNX Runtime's float32 group norm at mean 1e4 follows no summation order the explainer
    simulates: the cancelled one-pass variance is accepted from the variances y implies (stage 4)."""
    pytest.importorskip("onnxruntime")
    r = reproduce(str(CASES / "group_norm.yaml"), "mean1e4_std1_2x4x8x8@dtype=float64", "onnxruntime")
    assert r["status"] == "expected", r["reason"]
    ex = r["explanation"]
    assert set(ex["causes"]) == {"compute_precision", "one_pass_variance"} and ex["params"]["implied"] is True


def test_importing_openvino_sends_no_telemetry_and_forks_nothing():
    """openvino's import starts its usage telemetry (a forked process posting to the network) unless
    opted out: the adapter imports it with the CI opt-out, for the import alone."""
    if ox.OpenvinoAdapter().available():
        pytest.skip(ox.OpenvinoAdapter().available())
    code = ("import os, time\nforks = []\nfork = os.fork\nos.fork = lambda: (forks.append(1), fork())[1]\n"
            "from adapters.onnx_adapter import _openvino_core\n_openvino_core()\ntime.sleep(1)\n"
            "import openvino_telemetry.main as tm\n"
            "print(len(forks), os.environ.get('CI'), tm.Telemetry().consent)")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "None", "False"]

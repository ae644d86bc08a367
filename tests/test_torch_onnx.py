"""The torch-onnx-ort adapter: PyTorch modules exported with torch.onnx.export (dynamo) and run by ONNX
Runtime. Each export costs most of a second, so the tests export twenty models in all."""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from adapters.torch_onnx_adapter import NO_GRADIENTS, TRAINING, TorchOnnxAdapter
from normconf.cases import load_text
from normconf.engine import evaluate
from normconf.records import Status

pytest_plugins = ["pytester"]

MISSING = [m for m in ("torch", "onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
needs_export = pytest.mark.skipif(bool(MISSING), reason=f"not installed: {', '.join(MISSING)}")


def cases(text: str) -> dict:
    found, errors = load_text(text, "cases/onnx_demo.yaml")
    assert not errors, errors
    return {c.id: c for c in found}


LAYER_NORM = """\
cases:
  - id: ln
    op: layer_norm
    input: {shape: [2, 3, 4, 5]}
    params: {axes: [2, 3], weight: {generator: {dist: normal, seed: 3}}, bias: {generator: {dist: normal, seed: 4}}}
    matrix: {input.layout: [channels_first, channels_last]}
  - id: ln_other_weight
    op: layer_norm
    input: {shape: [2, 3, 4, 5]}
    params: {axes: [2, 3], weight: {generator: {dist: normal, seed: 5}}, bias: {generator: {dist: normal, seed: 4}}}
"""


@needs_export
def test_a_repeated_signature_is_served_from_the_cache_and_agrees_with_the_oracle():
    found = cases(LAYER_NORM)
    adapter = TorchOnnxAdapter()
    first = evaluate(found["ln@layout=channels_first"], adapter)
    assert first.status is Status.PASS, first.reason
    assert adapter.export_stats()["exports"] == 1
    entry = next(iter(adapter._exports.values()))
    assert entry.nodes == ["LayerNormalization"] and entry.opset >= 18
    assert entry.seconds > 0
    # channels_last exports the same graph (ONNX has no memory format): the cache serves it
    again = evaluate(found["ln@layout=channels_last"], adapter)
    assert again.status is Status.PASS, again.reason
    assert adapter.export_stats()["exports"] == 1 and entry.hits >= 1
    np.testing.assert_array_equal(again.arrays["y"], first.arrays["y"])
    # other weights are another model
    other = evaluate(found["ln_other_weight"], adapter)
    assert other.status is Status.PASS, other.reason
    assert adapter.export_stats()["exports"] == 2
    assert not np.array_equal(other.arrays["y"], first.arrays["y"])


@needs_export
def test_a_dtype_the_runtime_refuses_is_unsupported_with_its_message():
    found = cases("""\
cases:
  - {id: f64, op: instance_norm, input: {shape: [2, 3, 4], dtype: float64}}
  - {id: f64_other, op: instance_norm, input: {shape: [1, 2, 5], dtype: float64}, params: {eps: 0.1}}
""")
    adapter = TorchOnnxAdapter()
    result = evaluate(found["f64"], adapter)
    # ONNX Runtime's CPU InstanceNormalization has a float kernel only
    assert result.status is Status.UNSUPPORTED
    assert "refuses the exported float64 model" in result.reason and "InstanceNormalization" in result.reason
    # a refusal of the dtype holds for the op's other float64 models: known without exporting them
    other = evaluate(found["f64_other"], adapter)
    assert (other.status, other.reason) == (Status.UNSUPPORTED, result.reason)
    assert adapter.export_stats()["exports"] == 1


def test_training_passes_and_gradients_are_unsupported_without_an_export():
    found = cases("""\
cases:
  - {id: train, op: batch_norm, input: {shape: [4, 3, 5]}}
  - {id: track, op: instance_norm, input: {shape: [4, 3, 5]}, params: {track_running_stats: true}}
  - {id: grads, op: group_norm, input: {shape: [2, 4, 3]}, params: {groups: 2, grad: true}}
""")
    adapter = TorchOnnxAdapter()
    assert adapter.unsupported(found["train"]) == TRAINING
    assert adapter.unsupported(found["track"]) == TRAINING
    assert adapter.unsupported_outputs(found["grads"]) == {"grad_x": NO_GRADIENTS}
    assert adapter.export_stats()["exports"] == 0


def test_without_the_exporter_or_the_runtime_the_adapter_is_unavailable(monkeypatch):
    real = importlib.util.find_spec
    for module in ("onnxruntime", "onnxscript"):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, m=module: None if name == m else real(name))
        monkeypatch.delitem(__import__("sys").modules, module, raising=False)
        assert TorchOnnxAdapter().available() == f"module {module!r} is not installed"


SUBSET = """\
cases:
  - {id: tagged, op: layer_norm, input: {shape: [2, 3]}, tags: [deploy]}
  - {id: untagged, op: layer_norm, input: {shape: [2, 3]}, tags: [edge]}
"""


def test_a_case_outside_the_deploy_subset_makes_no_item_without_all_cases(pytester, monkeypatch):
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(pytester.path), os.environ.get("PYTHONPATH")])))
    pytester.mkdir("cases")
    (pytester.path / "cases" / "sub.yaml").write_text(SUBSET)
    args = ("-p", "no:cacheprovider", "--adapters", "torch-onnx-ort", "cases")
    items, _ = pytester.inline_genitems(*args)
    # (--all-cases bringing the other back is the plugin's own test: tests/test_plugin.py)
    assert [i.name for i in items] == ["sub/tagged[torch-onnx-ort]"]


MODULES = """\
cases:
  - id: m
    op: {op}
    input: {{shape: {shape}, dtype: {dtype}}}
    params: {params}
"""


@needs_export
@pytest.mark.parametrize("op,shape,dtype,params", [
    ("instance_norm", [2, 3, 4, 4], "float32", "{}"),
    ("batch_norm", [4, 3, 5], "float16", "{training: false, running_mean: {generator: {dist: normal, seed: 1}}}"),
    ("layer_norm", [2, 3, 4], "float64", "{axes: [2], weight: {generator: {dist: normal, seed: 2}}}"),
    ("group_norm", [2, 4, 3], "float32", "{groups: 2}"),
    ("rms_norm", [2, 3, 8], "float32", "{axes: [2], weight: {generator: {dist: normal, seed: 3}}}"),
])
def test_the_tables_built_once_export_the_bytes_of_the_plain_call(op, shape, dtype, params, monkeypatch):
    """Every op's module, exported plainly and then twice with the exporter's tables built once (the
    second export served from the caches, building none): the same bytes each time."""
    import torch
    import torch.export.decomp_utils as decomp_utils
    import torch.export.exported_program as exported_program
    from torch.onnx._internal.exporter import _decomp

    from adapters.torch_onnx_adapter import _exporter_tables_once
    from normconf.inputs import generate

    built = []  # the tables the originals built, counted under the names the exporter calls
    collect, table = exported_program._collect_all_valid_cia_ops, _decomp.create_onnx_friendly_decomposition_table
    monkeypatch.setattr(exported_program, "_collect_all_valid_cia_ops", lambda: built.append("cia") or collect())
    monkeypatch.setattr(decomp_utils, "_collect_all_valid_cia_ops", exported_program._collect_all_valid_cia_ops)
    monkeypatch.setattr(_decomp, "create_onnx_friendly_decomposition_table",
                        lambda ops: built.append("decomp") or table(ops))

    case = cases(MODULES.format(op=op, shape=shape, dtype=dtype, params=params))["m"]
    adapter = TorchOnnxAdapter()
    inputs = generate(case)
    module, x = adapter.module(case, inputs), adapter.tensor(inputs["x"], case)

    def export() -> bytes:
        return torch.onnx.export(module, (x,), dynamo=True, verbose=False).model_proto.SerializeToString()

    plain = export()
    assert set(built) == {"cia", "decomp"}
    with _exporter_tables_once():
        once = export()
        before = len(built)
        again = export()
    assert once == plain and again == plain
    assert len(built) == before  # the second export built no table

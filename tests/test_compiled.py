"""The compiled twins (adapters/compiled.py): registered after their eager adapters with the `compiled`
default subset, their compiled functions cached per signature (a repeated signature compiles nothing),
--all-cases giving them the untagged cases, and a clear reason where they cannot run."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adapters import compiled
from normconf.adapter import OPS, registry
from normconf.cases import load_text
from normconf.inputs import generate

ROOT = Path(__file__).resolve().parents[1]
TWINS = {"torch-compile": "torch", "jax-jit": "jax", "tensorflow-xla": "tensorflow"}

TWO_CASES = """
cases:
  - id: tagged
    op: layer_norm
    input: {shape: [2, 8], generator: {dist: normal, seed: 1}}
    tags: [compiled]
  - id: untagged
    op: layer_norm
    input: {shape: [3, 8], generator: {dist: normal, seed: 2}}
"""


def test_twins_are_registered_after_their_eager_adapters_with_the_compiled_subset():
    names = list(registry())
    for twin, eager in TWINS.items():
        assert names.index(twin) > names.index(eager)
        adapter = registry()[twin]
        assert adapter.default_subset == (("inductor",) if twin == "torch-compile" else ("compiled",))
        assert type(adapter).__mro__[2] is type(registry()[eager])  # _Compiled, then the eager adapter
        # every op the eager adapter runs, the twin runs (inherited op methods, rms_norm included)
        assert [op for op in OPS if adapter.implements(op)] == \
            [op for op in OPS if registry()[eager].implements(op)]


def test_signature_keeps_graph_parameters_and_drops_array_values():
    a, b = load_text("cases: [{id: a, op: layer_norm, input: {shape: [2, 4]}, params: {weight: [1, 2, 3, 4]}},"
                     " {id: b, op: layer_norm, input: {shape: [2, 4]}, params: {weight: [4, 3, 2, 1]}}]", "d")[0]
    assert compiled.signature(a) == compiled.signature(b)  # the weight is an argument, not graph
    assert compiled.signature(a) != compiled.signature(a.with_params(eps=1e-3))
    assert compiled.signature(a) != compiled.signature(a.with_params(weight=None))
    assert compiled.signature(a) != compiled.signature(load_text(
        "cases: [{id: a, op: layer_norm, input: {shape: [3, 4]}, params: {weight: [1, 2, 3, 4]}}]", "d")[0][0])


def test_cache_is_bounded_and_counts():
    resets = []
    cache = compiled.CompileCache(size=2, on_full=lambda: resets.append(1))
    assert [cache.get(k, lambda k=k: k * 10) for k in (1, 2, 1)] == [10, 20, 10]
    assert (cache.hits, cache.misses, resets) == (1, 2, [])
    cache.get(3, lambda: 30)  # full: the framework's caches are dropped with every entry
    assert (len(cache), resets) == (1, [1])
    plain = compiled.CompileCache(size=2)
    for k in (1, 2, 3):
        plain.get(k, lambda k=k: k)
    assert list(plain.entries) == [2, 3]


def _repeat(twin_name, case_text):
    """Compilations of the first run of a case and of a second case of the same signature (other data)."""
    adapter = registry()[twin_name]
    if adapter.available():
        pytest.skip(adapter.available())
    first, second = load_text(case_text, "c")[0]
    assert compiled.signature(first) == compiled.signature(second)
    out = adapter.run(first, generate(first))
    after_first, hits = adapter.compilations, adapter.cache.hits
    again = adapter.run(second, generate(second))
    eager = registry()[TWINS[twin_name]].run(second, generate(second))
    return out, after_first, adapter.compilations - after_first, adapter.cache.hits - hits, again, eager


GRAD_CASES = """
cases:
  - id: a
    op: group_norm
    input: {shape: [2, 4, 3, 3], generator: {dist: normal, seed: 3}}
    params: {groups: 2, weight: {generator: {dist: uniform, low: 0.5, high: 2, seed: 4}}, grad: true}
  - id: b
    op: group_norm
    input: {shape: [2, 4, 3, 3], generator: {dist: normal, mean: 2, seed: 5}}
    params: {groups: 2, weight: {generator: {dist: uniform, low: 0.5, high: 2, seed: 6}}, grad: true,
             grad_output: {generator: {dist: normal, seed: 7}}}
"""


@pytest.mark.parametrize("twin", ["jax-jit", "torch-compile"])
def test_a_repeated_signature_compiles_nothing_and_gives_the_second_cases_numbers(twin):
    out, first, more, hits, again, eager = _repeat(twin, GRAD_CASES)
    assert first >= 1 and set(out) == {"y", "grad_x", "grad_weight"}
    assert more == 0 and hits >= 1
    for name in eager:  # the cached function computed the second case's data, not the first's
        np.testing.assert_allclose(again[name], eager[name], rtol=1e-5, atol=1e-5)
        assert not np.allclose(again[name], out[name])


def test_an_op_that_bypasses_the_compiler_is_an_error():
    adapter = compiled.JaxJitAdapter()
    case = load_text("cases: [{id: a, op: layer_norm, input: {shape: [2, 4]}}]", "c")[0][0]
    with pytest.raises(RuntimeError, match="without its compiler"):
        adapter._checked(case, lambda: {"y": np.zeros(1)})


def test_missing_compiler_or_framework_is_a_reason(monkeypatch):
    compiled._no_cxx.cache_clear()
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    try:
        reason = compiled._no_cxx()
    finally:
        compiled._no_cxx.cache_clear()
    assert "no-such-c++-compiler" in reason and "apt-get install -y g++" in reason
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("jax", "keras") else real(name, *a))
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    assert compiled.JaxJitAdapter().available() == "module 'jax' is not installed"
    assert compiled.TensorflowXlaAdapter().available() == "module 'keras' is not installed"


def _collected(tmp_path, *extra):
    (tmp_path / "two.yaml").write_text(TWO_CASES)
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
                          f"--cases={tmp_path / 'two.yaml'}", str(tmp_path / "two.yaml"),
                          "--adapters", "jax-jit", *extra], cwd=ROOT, capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_torch_compiles_default_cases_are_some_of_the_other_twins_covering_its_module_step_and_backward():
    """torch-compile's `inductor` cases (its compilations cost seconds each) are a part of the `compiled`
    ones the other twins run, and still take Inductor through a module's running statistics (batch
    norm, float64 among them), a backward (rms_norm with gradients) and half-precision group norm."""
    from normconf.cases import load_paths

    shipped, errors = load_paths([ROOT / "cases"])
    assert not errors
    inductor = [c for c in shipped if "inductor" in c.tags]
    assert inductor and all("compiled" in c.tags for c in inductor)
    assert len(inductor) < len([c for c in shipped if "compiled" in c.tags])
    assert {c.op for c in inductor} >= {"batch_norm", "rms_norm", "group_norm"}
    assert any(c.op == "batch_norm" and c.params["training"] and c.dtype == "float64" for c in inductor)
    assert any(c.params.get("grad") for c in inductor)
    assert {c.dtype for c in inductor} >= {"float16", "bfloat16", "float32", "float64"}


def test_untagged_cases_get_items_only_with_all_cases(tmp_path):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    assert [i.split("::")[1] for i in _collected(tmp_path)] == ["two/tagged[jax-jit]"]
    assert [i.split("::")[1] for i in _collected(tmp_path, "--all-cases")] == ["two/tagged[jax-jit]",
                                                                              "two/untagged[jax-jit]"]

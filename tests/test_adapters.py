"""The adapter contract's machinery: dispatch on the op, the running-statistics loop of the base class,
and the registry, which finds the built-in adapters through the entry-point group (no import cycle:
nothing in normconf/ imports the adapters package)."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import adapters
from normconf import adapter as contract
from normconf.adapter import OPS, Adapter, AdapterLoadError, registry
from normconf.cases import PARAMS, load_text
from normconf.engine import evaluate
from normconf.inputs import generate

ROOT = Path(__file__).resolve().parents[1]
# the frameworks, their compiled twins, the deployment runtimes and the export round trip, the recipes
REPORT_ORDER = ["numpy", "torch", "tensorflow", "jax", "labml-nn", "torch-cuda", "jax-cuda", "cupy",
                "torch-compile", "tensorflow-xla", "jax-jit",
                "onnx-reference", "onnx-reference-opset18", "onnxruntime", "onnxruntime-opset18", "openvino",
                "torch-onnx-ort",
                "recipe-000-numpy", "recipe-000-torch", "recipe-001-labml", "recipe-002-einops-torch",
                "recipe-002-einops-numpy", "recipe-004-calculate-norm",
                "recipe-llama-rmsnorm", "recipe-gemma-rmsnorm", "recipe-t5-layernorm"]


def one(entry: str):
    cases, errors = load_text(f"cases:\n  - {entry}\n", "adapters/demo.yaml")
    assert not errors, errors
    return cases[0]


# ------------------------------------------------------------------------------ no import cycle

def imports(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the modules it imports (anywhere in it, lazy imports inside functions included), by
    reading the source with ``ast``: relative imports resolved, ``from a import b`` as both a and a.b."""
    graph = {}
    for path in sorted(package_dir.glob("*.py")):
        module = package_dir.name if path.stem == "__init__" else f"{package_dir.name}.{path.stem}"
        package = package_dir.name
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # from . import x / from .x import y, inside `package`
                    base = ".".join([package] + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
        graph[module] = found
    return graph


def cross_imports(graph: dict[str, set[str]], importer: str, imported: str) -> dict[str, list[str]]:
    """The modules of package ``importer`` that import anything of package ``imported``."""
    return {m: sorted(t for t in targets if t == imported or t.startswith(imported + "."))
            for m, targets in graph.items() if m.split(".")[0] == importer
            and any(t == imported or t.startswith(imported + ".") for t in targets)}


def test_nothing_in_normconf_imports_the_adapters_package():
    graph = {**imports(ROOT / "normconf"), **imports(ROOT / "adapters")}
    assert "normconf.adapter" in graph and "adapters.numpy_adapter" in graph
    assert cross_imports(graph, "normconf", "adapters") == {}, "normconf/ imports the adapters package (an import cycle)"
    # the other direction is the contract, and all there is of it
    users = cross_imports(graph, "adapters", "normconf")
    assert users and all(t.startswith("normconf.adapter") for targets in users.values() for t in targets), users


def test_the_import_check_finds_a_lazy_import_of_adapters(tmp_path):
    """The check above can fail: the registry's former lazy `from adapters import builtin` is found."""
    package = tmp_path / "normconf"
    package.mkdir()
    (package / "adapter.py").write_text("def registry():\n    from adapters import builtin\n    return builtin()\n")
    (package / "engine.py").write_text("from .adapter import registry\nimport adapters.numpy_adapter as n\n")
    assert cross_imports(imports(package), "normconf", "adapters") == {
        "normconf.adapter": ["adapters", "adapters.builtin"], "normconf.engine": ["adapters.numpy_adapter"]}


# ------------------------------------------------------------------------------------- registry

def test_builtin_adapters_come_from_normconfs_entry_point_in_report_order():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; 3.10 reads the installed metadata instead
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][contract.GROUP]
    assert declared == {"builtin": "adapters:builtin"}
    assert [(ep.name, ep.value) for ep in contract._builtin_entry_points()] == [("builtin", "adapters:builtin")]
    assert list(registry(entry_points=False)) == REPORT_ORDER
    assert [a.name for a in contract.builtin()] == [a.name for a in adapters.builtin()] == REPORT_ORDER


def test_installed_metadata_declares_the_same_entry_point():
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution("normconf")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("normconf is not installed here (a source tree: pyproject.toml is read)")
    installed = [(ep.name, ep.value) for ep in dist.entry_points if ep.group == contract.GROUP]
    assert installed == [("builtin", "adapters:builtin")], \
        f"the installed normconf declares {installed}: reinstall it (pip install --no-deps -e .)"


def test_builtin_adapters_without_a_declaration_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(contract, "_builtin_entry_points", list)
    with pytest.raises(AdapterLoadError, match="no built-in adapters: normconf declares them in the "
                                               "'normconf.adapters' entry points of its pyproject.toml"):
        registry()


THIRD_PARTY = '''
from adapters.numpy_adapter import NumpyAdapter


class One(NumpyAdapter):
    name = "ep-one"


class Two(NumpyAdapter):
    name = "ep-two"


class Three(NumpyAdapter):
    name = "ep-three"


def several():
    return [Three, Two()]
'''


def install(site: Path, dist: str, entry_points: str) -> None:
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[normconf.adapters]\n{entry_points}\n")


def test_third_party_entry_points_follow_the_builtins_and_no_entry_points_drops_only_them(tmp_path, monkeypatch):
    (tmp_path / "ep_demo.py").write_text(THIRD_PARTY)
    install(tmp_path, "ep_demo", "one = ep_demo:One\nseveral = ep_demo:several")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = list(registry())
    assert names[:len(REPORT_ORDER)] == REPORT_ORDER
    assert names[len(REPORT_ORDER):] == ["ep-one", "ep-three", "ep-two"]  # a function's list keeps its order
    assert list(registry(entry_points=False)) == REPORT_ORDER
    assert list(registry(["ep_demo:One"], entry_points=False)) == REPORT_ORDER + ["ep-one"]


def test_a_broken_third_party_entry_point_is_named(tmp_path, monkeypatch):
    install(tmp_path, "ep_broken", "broken = ep_no_such_module:Adapter")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AdapterLoadError, match=r"entry point 'broken' \(ep_no_such_module:Adapter\) failed to load: "
                                               r"ModuleNotFoundError"):
        registry()
    assert list(registry(entry_points=False)) == REPORT_ORDER


# ------------------------------------------------------------------------------------- dispatch

NORMALIZE = "{id: n, op: normalize, input: {shape: [2, 3, 4]}, params: {mean: [0, 1, 2], std: [1, 2, 3]}}"
BATCH = "{id: b, op: batch_norm, input: {shape: [4, 3, 2]}}"


class Normalizer(Adapter):
    """Has an API for normalize only."""

    name, framework = "normalizer", "numpy"

    def normalize(self, case, inputs):
        shape = (1, -1) + (1,) * (inputs["x"].ndim - 2)
        return {"y": (inputs["x"] - inputs["mean"].reshape(shape)) / inputs["std"].reshape(shape)}


class OldStyle(Normalizer):
    """The contract before op methods: run() does everything, for every op."""

    name = "old-style"
    normalize = None  # no op method at all: every op goes to run

    def run(self, case, inputs):
        return Normalizer.normalize(self, case, inputs)


def test_run_dispatches_on_the_op_and_a_missing_method_has_no_api():
    normalize, batch = one(NORMALIZE), one(BATCH)
    adapter = Normalizer()
    assert adapter.implements("normalize") and not adapter.implements("batch_norm")
    assert adapter.unsupported(normalize) is None
    assert adapter.unsupported(batch) == "normalizer has no API for batch_norm (the adapter has no batch_norm() method)"
    result = evaluate(normalize, adapter)
    assert result["status"] == "pass", result["reason"]
    result = evaluate(batch, adapter)
    assert (result["status"], result["reason"]) == ("unsupported", adapter.unsupported(batch))
    with pytest.raises(NotImplementedError, match="no batch_norm\\(\\) method"):
        adapter.run(batch, generate(batch))


def test_a_declared_reason_is_kept_over_the_standard_one():
    class Declared(Normalizer):
        unsupported_ops = {"batch_norm": "this framework's batch norm is a training-only kernel"}

    assert Declared().unsupported(one(BATCH)) == "this framework's batch norm is a training-only kernel"


def test_an_adapter_overriding_run_without_op_methods_keeps_working():
    adapter = OldStyle()
    assert all(adapter.implements(op) for op in OPS)
    assert adapter.unsupported(one(BATCH)) is None  # as before op methods: asked every op
    result = evaluate(one(NORMALIZE), adapter)
    assert result["status"] == "pass", result["reason"]


def test_an_adapter_without_run_or_op_methods_runs_nothing():
    class Empty(Adapter):
        name, framework = "empty", "numpy"

    assert not any(Empty().implements(op) for op in OPS)
    assert Empty().unsupported(one(NORMALIZE)) == "empty has no API for normalize (the adapter has no normalize() method)"


def test_ops_are_the_case_formats():
    assert set(OPS) == set(PARAMS)
    assert not any(hasattr(Adapter, op) for op in OPS), "an op method on the base class would mean every op is run"


def test_builtin_adapters_implement_the_ops_they_ran_before():
    every = set(OPS)
    expected = {"numpy": every, "torch": every, "tensorflow": every, "jax": every, "torch-cuda": every,
                "jax-cuda": every, "cupy": every, "labml-nn": every - {"normalize", "channel_stats", "rms_norm"},
                "torch-compile": every, "tensorflow-xla": every, "jax-jit": every,
                "recipe-000-numpy": {"instance_norm"}, "recipe-000-torch": {"instance_norm"},
                "recipe-001-labml": {"instance_norm"}, "recipe-002-einops-torch": {"instance_norm", "layer_norm", "group_norm"},
                "recipe-002-einops-numpy": {"batch_norm"}, "recipe-004-calculate-norm": {"channel_stats"},
                "recipe-llama-rmsnorm": {"rms_norm"}, "recipe-gemma-rmsnorm": {"rms_norm"},
                "recipe-t5-layernorm": {"rms_norm"}}
    graph_ops = {"instance_norm", "batch_norm", "layer_norm", "group_norm"}  # the ONNX adapters' one-node graphs
    expected.update({name: graph_ops | {"rms_norm"} for name in ("torch-onnx-ort", "onnx-reference", "onnxruntime",
                                                                 "openvino")})
    expected.update({name: graph_ops for name in ("onnx-reference-opset18", "onnxruntime-opset18")})
    got = {name: {op for op in OPS if a.implements(op)} for name, a in registry(entry_points=False).items()}
    assert got == expected


# ------------------------------------------------------------------------- the running-statistics loop

class Recorder(Adapter):
    """A framework that records the passes the base class asks of it."""

    name, framework = "recorder", "numpy"

    def batch_norm(self, case, inputs):
        self.inputs, self.calls = inputs, []
        return self.running_passes(case, inputs, {"mean": "initial mean", "var": "initial var"}, "x")

    def step_input(self, case, x):
        return next(f"x_steps[{i}]" for i, s in enumerate(self.inputs["x_steps"]) if s is x)

    def running_step(self, case, layer, x, train, momentum):
        self.calls.append(("step", x, train, momentum))
        return f"y of {x}", {"mean": f"mean after {x}", "var": f"var after {x}"} if train else layer

    def final_step(self, case, layer, x, train, momentum):
        self.calls.append(("final",))
        return super().final_step(case, layer, x, train, momentum)

    def running_stats(self, case, layer):
        return layer["mean"], layer["var"]


@pytest.mark.parametrize("params, calls, outputs", [
    ("{steps: 3}",
     [("step", "x_steps[0]", True, 0.1), ("step", "x_steps[1]", True, 0.1), ("final",), ("step", "x", True, 0.1)],
     {"y": "y of x", "running_mean": "mean after x", "running_var": "var after x"}),
    ("{steps: 3, momentum: null}",  # a cumulative average: the k-th pass weighs its statistic 1/k
     [("step", "x_steps[0]", True, 1.0), ("step", "x_steps[1]", True, 1 / 2), ("final",), ("step", "x", True, 1 / 3)],
     {"y": "y of x", "running_mean": "mean after x", "running_var": "var after x"}),
    ("{steps: 2, eval_after: true, momentum: 0.3}",  # every step trains, then one eval pass over x
     [("step", "x_steps[0]", True, 0.3), ("step", "x_steps[1]", True, 0.3), ("final",), ("step", "x", False, None)],
     {"y": "y of x", "running_mean": "mean after x_steps[1]", "running_var": "var after x_steps[1]"}),
    ("{training: false}", [("final",), ("step", "x", False, None)], {"y": "y of x"}),
])
def test_running_passes(params, calls, outputs):
    case = one(BATCH.replace("}}", f"}}, params: {params}}}"))
    adapter = Recorder()
    assert adapter.run(case, generate(case)) == outputs
    assert adapter.calls == calls


def test_numpy_running_passes_are_the_momentum_update_written_out():
    """The NumPy adapter through the loop, against the update written here in float64 (a case whose
    float64 outputs the loop must reproduce to rounding)."""
    from adapters.numpy_adapter import NumpyAdapter

    case = one("{id: b, op: batch_norm, input: {shape: [4, 3, 2], dtype: float64}, "
               "params: {steps: 3, momentum: null, running_variance: unbiased}}")
    inputs = generate(case)
    out = NumpyAdapter().run(case, inputs)
    stacked = np.stack(inputs["x_steps"])
    np.testing.assert_allclose(out["running_mean"], stacked.mean(axis=(1, 3)).mean(axis=0))
    np.testing.assert_allclose(out["running_var"], stacked.var(axis=(1, 3), ddof=1).mean(axis=0))

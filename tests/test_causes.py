"""The table of cause ids (normconf/explain/causes/): one row and one module per cause, read by the
known-discrepancy loader and the docs, and enough on its own to add a cause to the explanations."""
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from normconf import known, oracle
from normconf.cases import GRADIENTS, load_text
from normconf.engine import context
from normconf.explain import causes, explain
from normconf.explain.core import Explainer
from normconf.explain.variant import Variant, ratio, tol

ROOT = Path(__file__).resolve().parents[1]


def test_the_known_loader_and_schema_read_the_table():
    assert known.CAUSES == causes.IDS == tuple(c.id for c in causes.REGISTRY)
    assert known.CAUSE_DOCS == {c.id: c.doc for c in causes.REGISTRY}
    assert len(set(causes.IDS)) == len(causes.IDS)
    assert sorted(c.search for c in causes.REGISTRY) == list(range(len(causes.REGISTRY)))  # one place each
    for c in causes.REGISTRY:
        assert c.outputs and set(c.outputs) <= set(known.OUTPUT_NAMES), c.id


def test_every_cause_has_its_module_and_every_module_its_row():
    modules = {m.name for m in pkgutil.iter_modules(causes.__path__)}
    assert modules == set(causes.IDS)
    for c in causes.REGISTRY:
        hooks = [h for h in causes.HOOKS if c.hook(h) is not None]
        assert hooks and all(callable(c.hook(h)) for h in hooks), c.id
    with pytest.raises(ValueError, match="hook 'discret'"):
        causes.REGISTRY[0].hook("discret")


def test_importing_the_known_loader_imports_no_numpy_and_no_variants():
    code = ("import sys, normconf.known\n"
            "heavy = [m for m in ('numpy', 'normconf.explain.core', 'normconf.explain.causes.eps_value') if m in sys.modules]\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_the_docs_name_the_outputs_each_cause_can_move():
    page = (ROOT / "docs" / "causes.md").read_text(encoding="utf-8")
    for c in causes.REGISTRY:
        section = page.split(f"## `{c.id}`", 1)[1].split("\n## ", 1)[0]
        paragraph = re.search(r"^\*\*Outputs\*\*: (.*?)\n\n", section, flags=re.M | re.S).group(1)
        named = {n for n in re.findall(r"`([a-z_]+)`", paragraph) if n in known.OUTPUT_NAMES}
        assert named == set(c.outputs), c.id


def test_shipped_known_entries_excuse_outputs_their_cause_can_move():
    for entry in known.load(ROOT / "cases" / "known_discrepancies.yaml"):
        if entry.outputs is not None:
            assert set(entry.outputs) <= set(causes.BY_ID[entry.cause].outputs) | set(GRADIENTS), entry.label()


CASES = """
cases:
  - {id: inst, op: instance_norm, input: {shape: [4, 3, 5, 5], dtype: float16, generator: {dist: normal, mean: 30.0, seed: 1}},
     params: {weight: [1.5, 0.5, 2.0], bias: [0.1, 0.2, 0.3], track_running_stats: true, steps: 2, eps: 1.0e-8}}
  - {id: layer, op: layer_norm, input: {shape: [2, 4, 6], dtype: float32, generator: {dist: normal, mean: 3000.0, seed: 2}},
     params: {axes: [1, 2], weight: {generator: {dist: normal, seed: 3}}}}
  - {id: group, op: group_norm, input: {shape: [2, 6, 4, 4], dtype: bfloat16, generator: {dist: normal, mean: 40.0, seed: 4}},
     params: {groups: 3, weight: {generator: {dist: normal, seed: 5}}, bias: {generator: {dist: normal, seed: 6}}}}
  - {id: train, op: batch_norm, input: {shape: [8, 3, 4, 4], dtype: float16, generator: {dist: normal, mean: 50.0, seed: 7}},
     params: {steps: 2, running_variance: unbiased, weight: [1.0, 2.0, 0.5]}}
  - {id: eval_after, op: batch_norm, input: {shape: [8, 3, 4, 4], dtype: float32, generator: {dist: normal, mean: 2.0, seed: 8}},
     params: {steps: 3, eval_after: true, momentum: 0.2}}
  - {id: eval, op: batch_norm, input: {shape: [4, 3, 3, 3], dtype: float16, generator: {dist: normal, seed: 9}},
     params: {training: false, running_mean: [0.5, -0.5, 0.0], running_var: [2.0, 0.5, 1.0], bias: [1.0, 0.0, -1.0]}}
  - {id: pooled, op: channel_stats, input: {shape: [6, 3, 3, 3], dtype: float16, generator: {dist: normal, mean: 100.0, seed: 10}},
     params: {method: pooled, variance: unbiased}}
  - {id: per_image, op: channel_stats, input: {shape: [6, 3, 3, 3], dtype: float32, generator: {dist: uniform, low: 0.0, high: 1.0, seed: 11}},
     params: {method: per_image_mean}}
  - {id: normalize, op: normalize, input: {shape: [2, 3, 3, 3], dtype: float32, generator: {dist: normal, seed: 12}},
     params: {mean: [0.5, 0.4, 0.3], std: [0.2, 0.3, 0.4]}}
  - {id: rms, op: rms_norm, input: {shape: [3, 4, 16], dtype: float16, generator: {dist: normal, mean: 2.0, std: 0.1, seed: 13}},
     params: {axes: [-1], weight: {generator: {dist: normal, seed: 14}}, weight_offset: 1.0, cast: before_weight}}
  - {id: empty, op: batch_norm, input: {shape: [0, 3, 4], dtype: float16, generator: {dist: normal, seed: 15}},
     params: {steps: 2}}
"""
SMALL, _errors = load_text(CASES, "causes.yaml")


@pytest.mark.parametrize("case", SMALL, ids=[c.id for c in SMALL])
def test_each_cause_makes_variants_of_its_own_that_move_only_its_outputs(case):
    """Every variant a cause's module makes is named after it, and where it departs from the
    oracle beyond the tolerance it does so on outputs the table says the cause can move."""
    assert not _errors
    ctx = context(case)
    names = [n for n in ctx.expected if n not in GRADIENTS]
    ex = Explainer(case, ctx.inputs, ctx.expected, ctx.expected, ctx.tolerance, names, names)
    moved = set()
    for cause in causes.REGISTRY:
        made = [v for hook in ("discrete", "computed") if cause.hook(hook) for v in cause.hook(hook)(ex)]
        for v in made:
            assert v.cause == cause.id
            ex.evaluate(v)
            off = {n for n in names if n in v.outputs and not ratio(v.outputs[n], ctx.expected[n], **tol(ctx.tolerance, n))[1]}
            assert off <= set(cause.outputs), f"{cause.id} {v.params} moves {sorted(off)}"
            moved |= {(cause.id, n) for n in off}
    assert moved, "no variant moved any output: the check above checked nothing"


def test_a_new_cause_is_a_row_and_a_module(monkeypatch):
    """A cause added to the table with its module is tried and named, with no other change."""
    case = SMALL[0]
    ctx = context(case)
    actual = dict(ctx.expected, y=ctx.expected["y"] * -1.0)  # an implementation that negates y
    found = explain(case, ctx.inputs, ctx.expected, actual, ctx.tolerance)
    assert found["cause"] != "negated_output"

    module = types.ModuleType("normconf.explain.causes.negated_output")

    def computed(ex):
        def fn(c, inputs):
            out = oracle.reference(c, inputs)
            return dict(out, y=-out["y"])
        return [Variant("negated_output", {}, "y negated", fn=fn)]

    module.computed = computed
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(causes, "REGISTRY", causes.REGISTRY + (causes.Cause("negated_output", "y times -1", ("y",), 10),))
    found = explain(case, ctx.inputs, ctx.expected, actual, ctx.tolerance)
    assert found["cause"] == "negated_output" and found["detail"] == "y negated"
    assert np.isfinite(found["residual"]["y"]) and found["residual"]["y"] <= 1


EMPTY = """
cases:
  - {id: bn, op: batch_norm, input: {shape: [0, 3, 4], dtype: float32, generator: {dist: normal, seed: 1}},
     params: {steps: 3, momentum: null, running_mean: [0.5, -1.0, 2.0], running_var: [1.0, 2.0, 0.5]}}
  - {id: inst, op: instance_norm, input: {shape: [0, 3, 4, 4], dtype: float16, generator: {dist: normal, seed: 2}},
     params: {track_running_stats: true, steps: 2, momentum: 0.2, running_mean: [0.5, -1.0, 2.0],
              running_var: [1.0, 2.0, 0.5]}}
  - {id: stats, op: channel_stats, input: {shape: [0, 3, 4, 4], dtype: float32, generator: {dist: uniform, seed: 3}},
     params: {method: per_image_mean}}
  - {id: full, op: batch_norm, input: {shape: [2, 3, 4], dtype: float32, generator: {dist: normal, seed: 4}}}
"""


def _empty(case_id):
    cases, errors = load_text(EMPTY, "empty.yaml")
    assert not errors, errors
    case = next(c for c in cases if c.id == case_id)
    return case, context(case)


@pytest.mark.parametrize("case_id, old_weight, figures", [
    ("bn", 0.0, "running = 0 x old + 1 x 0, running_mean [0, 0, 0], running_var [0, 0, 0]"),
    ("inst", 0.64, "running = 0.64 x old + 0.36 x 0, running_mean [0.32, -0.64, 1.28], running_var [0.64, 1.28, 0.32]"),
])
def test_empty_batch_statistics_names_a_skipped_update_and_statistics_taken_as_zero(case_id, old_weight, figures):
    """N = 0: the oracle's running statistics are NaN (0/0); an implementation that leaves them as
    given (torch) or blends in a mean and variance of 0 (OpenVINO) is named, with its figures: over
    3 steps of a cumulative average the first step's weight 1 leaves nothing of the old values, two
    steps at momentum 0.2 leave 0.8^2 = 0.64 of them."""
    case, ctx = _empty(case_id)
    assert np.isnan(ctx.expected["running_mean"]).all() and np.isnan(ctx.expected["running_var"]).all()
    steps = case.params["steps"]
    rm, rv = np.array([0.5, -1.0, 2.0]), np.array([1.0, 2.0, 0.5])
    kept = explain(case, ctx.inputs, ctx.expected, dict(ctx.expected, running_mean=rm, running_var=rv), ctx.tolerance)
    assert kept["cause"] == "empty_batch_statistics" and "also" not in kept
    assert kept["params"] == {"empty_batch": "skip", "n": 0, "steps": steps}
    assert f"each of {steps} training steps left running_mean and running_var as they were" in kept["detail"]
    assert "running_mean [0.5, -1, 2], running_var [1, 2, 0.5]" in kept["detail"]
    zeros = dict(ctx.expected, running_mean=old_weight * rm, running_var=old_weight * rv)
    found = explain(case, ctx.inputs, ctx.expected, zeros, ctx.tolerance)
    assert found["cause"] == "empty_batch_statistics" and "also" not in found
    assert found["params"] == {"empty_batch": "zeros", "n": 0, "steps": steps, "old_weight": old_weight}
    assert figures in found["detail"]
    # anything else on an empty batch (here: half the given values) is not this cause
    other = explain(case, ctx.inputs, ctx.expected, dict(ctx.expected, running_mean=rm / 2, running_var=rv / 2),
                    ctx.tolerance)
    assert other["cause"] != "empty_batch_statistics"


def test_empty_batch_statistics_of_channel_stats_and_only_on_an_empty_batch():
    case, ctx = _empty("stats")
    zeros = {"mean": np.zeros(3), "std": np.zeros(3)}
    found = explain(case, ctx.inputs, ctx.expected, zeros, ctx.tolerance)
    assert found["cause"] == "empty_batch_statistics" and found["params"]["empty_batch"] == "zeros"
    assert "mean over zero images" in found["detail"] and "mean [0, 0, 0], std [0, 0, 0]" in found["detail"]
    # a batch with values: the running statistics as given are a forgotten train(), never this cause
    case, ctx = _empty("full")
    names = ["y", "running_mean", "running_var"]
    ex = Explainer(case, ctx.inputs, ctx.expected, ctx.expected, ctx.tolerance, names, names)
    assert causes.BY_ID["empty_batch_statistics"].hook("computed")(ex) == []

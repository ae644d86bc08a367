"""Every shape the case schema accepts runs without a harness error (issue 12): layer norm over any
set of axes (the batch axis, all of them, negative forms) at ranks 2 to 5, every other op at every
rank it takes, N = 1, C = 1, groups 1 and C, both layouts; and ``python -m normconf golden`` names a
case it cannot write instead of dying with a traceback.

The harness is the oracle, its condition number, the comparison, the explanation (on the whole input
and, with the slice sizes patched small, on slices), the report's case summary and ``evaluate``."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adapters.numpy_adapter import NumpyAdapter
from normconf import engine, oracle, report
from normconf.cases import load_file, load_text
from normconf.cli import main
from normconf.compare import compare

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {2: [3, 4], 3: [3, 4, 5], 4: [2, 3, 4, 5], 5: [2, 3, 2, 3, 4]}


def every_axes():
    """(rank, axes as written) for every non-empty subset of dims of ranks 2..5, each also written
    with negative dims and with the two forms mixed: 56 subsets, 168 spellings."""
    for rank in SHAPES:
        for k in range(1, rank + 1):
            for axes in itertools.combinations(range(rank), k):
                yield rank, list(axes)
                yield rank, [a - rank for a in axes]
                yield rank, [a - rank if i % 2 else a for i, a in enumerate(axes)][::-1]


AXES = list(every_axes())


def load_one(text: str, file: str):
    cases, errors = load_text(text, file)
    assert not errors, errors
    return cases


def layer_norm_cases(rank, axes, dtype="float64"):
    """The layer norm over ``axes`` in both layouts, with an affine of the normalized dims' shape."""
    shape = SHAPES[rank]
    text = (f"cases: [{{id: ln, op: layer_norm, input: {{shape: {shape}, dtype: {dtype}, "
            f"generator: {{dist: normal, mean: 0.5, std: 2.0, seed: 7}}}}, "
            f"params: {{axes: {axes}, weight: {{generator: {{dist: uniform, low: 0.5, high: 2.0}}}}, "
            f"bias: {{generator: {{dist: normal}}}}}}, matrix: {{input.layout: [channels_first, channels_last]}}}}]")
    return load_one(text, f"shapes/r{rank}_{'_'.join(map(str, axes))}_{dtype}.yaml")


def by_hand(x, axes, eps, weight, bias):
    """(x - mean) / sqrt(var + eps) * weight + bias over ``axes`` with NumPy's own reductions."""
    axes = tuple(sorted(a % x.ndim for a in axes))
    shape = [x.shape[d] if d in axes else 1 for d in range(x.ndim)]
    y = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return y * np.reshape(weight, shape) + np.reshape(bias, shape)


def through_the_harness(case, perturbed):
    """Oracle, condition, comparison, explanation of ``perturbed(expected)`` and the case summary,
    as an item runs them. Returns (context, explanation, summary)."""
    engine.forget(case)
    ctx = engine.context(case)
    assert ctx.problem is None, ctx.problem
    actual = perturbed(ctx)
    metrics = {n: compare(ctx.expected[n], actual[n], case.dtype, **ctx.tolerance[n]) for n in actual}
    assert not all(m["ok"] for m in metrics.values()), "the perturbation must be out of tolerance"
    found = engine._explain(case, ctx, actual, metrics)
    summary = report.case_summary(case, ctx)
    json.dumps(report._json_safe(summary))  # what the report writes
    return ctx, found, summary


def unbiased(ctx):
    """The oracle's own outputs with the n-1 divisor: the fault with the best-known explanation."""
    return oracle.reference(ctx.case.with_params(variance="unbiased"), ctx.inputs)


@pytest.mark.parametrize("rank,axes", AXES, ids=[f"rank{r}-axes{'_'.join(map(str, a))}" for r, a in AXES])
def test_layer_norm_over_any_axes_runs_through_the_harness(rank, axes):
    for case in layer_norm_cases(rank, axes):
        ctx, found, summary = through_the_harness(case, unbiased)
        x, p = ctx.inputs["x"], case.params
        want = by_hand(x, axes, p["eps"], ctx.inputs["weight"], ctx.inputs["bias"])
        np.testing.assert_allclose(ctx.expected["y"], want, rtol=1e-12, atol=1e-12)
        norm = tuple(sorted(a % rank for a in axes))
        kappa = np.abs(x.mean(axis=norm)) / np.sqrt(x.var(axis=norm) + p["eps"])
        assert ctx.condition == pytest.approx(max(1.0, float(kappa.max())), rel=1e-12)
        assert found["cause"] == "variance_divisor", found
        assert summary["input"]["condition"] == ctx.condition and summary["params"]["axes"] == list(norm)


@pytest.mark.parametrize("rank", sorted(SHAPES))
def test_negative_and_mixed_axes_give_the_positive_forms_outputs(rank):
    for axes in itertools.chain.from_iterable(itertools.combinations(range(rank), k) for k in range(1, rank + 1)):
        spelled = [a for r, a in AXES if r == rank and sorted(d % rank for d in a) == list(axes)]
        assert len(spelled) == 3
        outputs = [engine.context(layer_norm_cases(rank, a)[0]).expected["y"] for a in spelled]
        for y in outputs[1:]:
            np.testing.assert_array_equal(y, outputs[0])


@pytest.mark.parametrize("rank,axes", AXES[::3], ids=[f"rank{r}-axes{'_'.join(map(str, a))}" for r, a in AXES[::3]])
def test_numpy_adapter_end_to_end_over_any_axes(rank, axes):
    for dtype in ("float64", "float32"):
        for case in layer_norm_cases(rank, axes, dtype):
            result = engine.evaluate(case, NumpyAdapter())
            assert result["status"] == "pass", (case.key, result["reason"], result.get("traceback"))
            assert result["arrays"]["y"].shape == case.shape
            engine.forget(case)


@pytest.mark.parametrize("rank,axes", [(4, [0, 1, 2, 3]), (4, [0]), (3, [-3, -1]), (5, [0, 2, 4]), (2, [0, 1]),
                                       (4, [1, 2, 3]), (5, [-1])])
def test_sliced_paths_over_any_axes(rank, axes, monkeypatch):
    """The large-input paths (oracle and condition in slices, explanation on a slice) give the same
    results as the whole-array ones, and take no slice where the statistics leave no dim free."""
    case = layer_norm_cases(rank, axes)[1]
    whole, found_whole, _ = through_the_harness(case, unbiased)
    expected, kappa = whole.expected, whole.condition
    monkeypatch.setattr(oracle, "SLICE_BYTES", 8 * 7)
    monkeypatch.setattr(engine, "EXPLAIN_ELEMENTS", 7)
    parts, found, _ = through_the_harness(case, unbiased)
    np.testing.assert_allclose(parts.expected["y"], expected["y"], rtol=4e-16, atol=4e-16)
    assert parts.condition == pytest.approx(kappa, rel=1e-15)
    assert found["cause"] == found_whole["cause"] == "variance_divisor"
    takes_batch = 0 in {a % rank for a in axes}
    assert ("slice" in found) is (not takes_batch and SHAPES[rank][0] > 1), found


OTHER_OPS = []
for _rank, _shape in SHAPES.items():
    for _n, _c in ((_shape[0], _shape[1]), (1, _shape[1]), (_shape[0], 1), (1, 1)):
        _s = [_n, _c] + _shape[2:]
        if _rank >= 3:
            OTHER_OPS.append(("instance_norm", _s, {}))
        OTHER_OPS += [("batch_norm", _s, {}), ("batch_norm", _s, {"training": False, "running_var": [2.0] * _c}),
                      ("group_norm", _s, {"groups": 1}), ("group_norm", _s, {"groups": _c}),
                      ("normalize", _s, {"mean": 0.5, "std": 2.0}), ("channel_stats", _s, {}),
                      ("channel_stats", _s, {"method": "per_image_mean"})]


@pytest.mark.parametrize("op,shape,params", OTHER_OPS, ids=[f"{o}-{'x'.join(map(str, s))}-{len(p)}" for o, s, p in OTHER_OPS])
def test_every_op_at_every_rank_runs_through_the_harness(op, shape, params):
    """Ranks 2 to 5 (instance norm from 3), N = 1, C = 1, groups 1 and C: the harness on a scaled
    output, and the numpy adapter end to end (each ends in a verdict, not an error)."""
    text = (f"cases: [{{id: c, op: {op}, input: {{shape: {shape}, dtype: float64}}, params: {json.dumps(params)}, "
            f"matrix: {{input.layout: [channels_first, channels_last]}}}}]")
    for case in load_one(text, f"shapes/{op}_{'x'.join(map(str, shape))}_{len(params)}.yaml"):
        scaled = lambda ctx: {n: v * 1.5 + 0.25 for n, v in ctx.expected.items()}  # noqa: E731
        ctx, found, summary = through_the_harness(case, scaled)
        assert found is None or found.get("cause"), found
        assert summary["input"]["condition"] >= 1.0 and np.isfinite(summary["input"]["condition"])
        result = engine.evaluate(case, NumpyAdapter())
        assert result["status"] in ("pass", "unsupported"), (case.key, result["reason"], result.get("traceback"))
        engine.forget(case)


def test_the_issue_case_is_a_pass_not_an_error():
    """The issue's case: a layer norm over [0, 1, 2, 3] of a [2, 3, 4, 5] input made every item an
    error (TypeError in oracle.condition -> cut_along)."""
    case = load_one("cases: [{id: onnx_axis0, op: layer_norm, input: {shape: [2, 3, 4, 5]}, "
                    "params: {axes: [0, 1, 2, 3]}}]", "shapes/issue.yaml")[0]
    result = engine.evaluate(case, NumpyAdapter())
    assert result["status"] == "pass", result["reason"]


def test_shipped_shapes_file_covers_the_space():
    cases, errors = load_file(ROOT / "cases" / "shapes.yaml")
    assert not errors, errors
    ln = [c for c in cases if c.op == "layer_norm"]
    written = {tuple(c.raw["params"]["axes"]) for c in ln}
    assert {(0,), (0, 1), (0, 1, 2, 3), (-4,)} <= written
    assert {len(c.shape) for c in cases} >= {2, 3, 4, 5}
    for op in ("batch_norm", "group_norm", "normalize", "channel_stats", "layer_norm"):
        assert {2, 5} <= {len(c.shape) for c in cases if c.op == op}, op
    assert {3, 5} <= {len(c.shape) for c in cases if c.op == "instance_norm"}
    assert any(c.shape[0] == 1 for c in cases) and any(c.shape[1] == 1 for c in cases)
    groups = {(c.params["groups"], c.shape[1]) for c in cases if c.op == "group_norm"}
    assert any(g == 1 for g, _ in groups) and any(g == c > 1 for g, c in groups)
    assert {c.layout for c in cases} == {"channels_first", "channels_last"}
    assert {c.dtype for c in cases} == {"float64", "float32", "float16", "bfloat16"}
    one_element = [c for c in ln if np.prod([c.shape[a] for a in c.params["axes"]]) == 1]
    assert one_element, "a layer norm over one-element slices"


# ----------------------------------------------------------------------------- golden

GOOD_AND_BAD = """
cases:
  - {id: every_dim, op: layer_norm, input: {shape: [2, 3, 4, 5]}, params: {axes: [0, 1, 2, 3]}}
  - {id: overflows, op: instance_norm, input: {shape: [2, 3, 4], dtype: float16, generator: {dist: normal, mean: 1.0e+5}}}
"""


def test_golden_writes_the_good_case_and_names_the_bad_one(tmp_path, capsys):
    path = tmp_path / "mixed.yaml"
    path.write_text(GOOD_AND_BAD, encoding="utf-8")
    rc = main(["golden", str(path), "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert rc == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert [e["case"] for e in manifest["cases"]] == ["mixed/every_dim"]
    with np.load(tmp_path / "out" / manifest["cases"][0]["file"]) as data:
        assert data["output.y"].shape == (2, 3, 4, 5) and np.isfinite(data["output.y"]).all()
    assert "error: mixed/overflows: not written:" in err and "overflow float16" in err
    assert "Traceback" not in out + err
    assert "1 not written: mixed/overflows" in out


def test_golden_names_a_harness_exception_and_writes_the_others(tmp_path, capsys, monkeypatch):
    path = tmp_path / "two.yaml"
    path.write_text("cases:\n  - {id: a, op: layer_norm, input: {shape: [2, 3]}}\n"
                    "  - {id: b, op: group_norm, input: {shape: [2, 4]}, params: {groups: 2}}\n", encoding="utf-8")
    real = oracle.condition

    def broken(case, inputs):
        if case.id == "a":
            raise TypeError("list indices must be integers or slices, not NoneType")
        return real(case, inputs)

    monkeypatch.setattr(oracle, "condition", broken)
    rc = main(["golden", str(path), "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "error: two/a: not written: TypeError: list indices must be integers" in err
    assert "Traceback" not in out + err
    assert (tmp_path / "out" / "two__b.npz").exists() and not (tmp_path / "out" / "two__a.npz").exists()


def test_golden_on_the_issue_file_in_a_fresh_process(tmp_path):
    """``python -m normconf golden`` as the issue ran it: exit 0, every case written, no traceback."""
    path = tmp_path / "axis0.yaml"
    path.write_text("cases:\n  - {id: axis0, op: layer_norm, input: {shape: [2, 3, 4, 5]}, params: {axes: [0, 1, 2, 3]}}\n"
                    "  - {id: neg, op: layer_norm, input: {shape: [2, 3, 4, 5]}, params: {axes: [-4]}}\n",
                    encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "normconf", "golden", str(path), "--out", str(tmp_path / "g")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["axis0__axis0.npz", "axis0__neg.npz", "manifest.json"]

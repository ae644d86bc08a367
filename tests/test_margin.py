"""The verdict margin: how firm a verdict is, platform_dependent known entries, the end-of-run line.

Adapters here return the oracle's output with its first element moved by a chosen fraction of the
tolerance, so a result lands at a known error / tolerance: 0.1 (a firm pass), 0.8 (a fragile pass),
1.5 (a fragile fail), 3 (a firm fail).
"""
import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

from normconf import known as known_mod
from normconf.cases import load_text
from normconf.engine import evaluate
from normconf.margin import FIRM_AGREE, FIRM_DIFFER, Condition, margin
from normconf.plugin import fragile_lines

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

ADAPTERS = '''
"""Adapters whose error is a chosen fraction of the tolerance."""
import numpy as np

from normconf import engine, oracle
from normconf.adapter import Adapter


class At(Adapter):
    """The oracle's outputs, the first element of ``moved`` off by ``ratio`` times its tolerance."""

    name, framework, ratio, moved = "at", "numpy", 0.0, ("y",)

    def run(self, case, inputs):
        out = oracle.reference(case, inputs)
        tol = engine.context(case).tolerance
        for name in self.moved:
            v = out[name].reshape(-1)
            v[0] += self.ratio * (tol[name]["atol"] + tol[name]["rtol"] * abs(v[0]))
        return out


class Firm(At):
    name, ratio = "at-0.1", 0.1


class Near(At):
    name, ratio = "at-0.8", 0.8


class JustOut(At):
    name, ratio = "at-1.5", 1.5


class Out(At):
    name, ratio = "at-3", 3.0
'''

# a coarse tolerance, so that a move of 0.1 of it is not lost in float64 rounding
CASES = """\
defaults:
  expect: {tolerance: {atol: 1.0e-3, rtol: 0.0}}
cases:
  - id: plain
    op: instance_norm
    input: {shape: [2, 3, 8], dtype: float64, generator: {dist: normal, seed: 3}}
"""
BATCH = CASES.replace("id: plain", "id: bn").replace("op: instance_norm", "op: batch_norm")


def adapters_module():
    namespace = {}
    exec(compile(ADAPTERS, "user_adapters.py", "exec"), namespace)
    return namespace


A = adapters_module()


def adapter(ratio, moved=("y",), name=None):
    cls = type("Custom", (A["At"],), {"name": name or f"at-{ratio:g}", "ratio": ratio, "moved": moved})
    return cls()


def case(text=CASES):
    return load_text(text, "cases/m.yaml")[0][0]


def known(tmp_path, *entries):
    """Known entries through the real loader (``platform_dependent`` validated there)."""
    path = tmp_path / "known_discrepancies.yaml"
    path.write_text("entries:\n" + "".join(textwrap.indent(textwrap.dedent(e), "  ") for e in entries))
    return known_mod.load(path)


def entry(adapter_name, platform_dependent=None, outputs="[y]"):
    pd = "" if platform_dependent is None else f"platform_dependent: {str(platform_dependent).lower()}\n"
    return f"""\
        - adapter: {adapter_name}
          case: "m/*"
          outputs: {outputs}
          cause: one_pass_variance
          reason: a one-pass variance whose error depends on the order of the additions
          link: https://example.org/issue/7
          {pd}"""


# ---------------------------------------------------------------------------------- classification

def test_thresholds_are_a_factor_two_each_way():
    assert (FIRM_AGREE, FIRM_DIFFER) == (0.5, 2.0)


@pytest.mark.parametrize("need, ratio, verdict", [
    ("agree", 0.0, "firm"), ("agree", 0.5, "firm"), ("agree", 0.51, "fragile"), ("agree", 0.99, "fragile"),
    ("differ", 1.01, "fragile"), ("differ", 1.99, "fragile"), ("differ", 2.0, "firm"), ("differ", float("inf"), "firm"),
])
def test_one_condition(need, ratio, verdict):
    got = margin([Condition("y", need, ratio)])
    assert got["verdict"] == verdict and got["margin_output"] == "y" and got["strict"] is True
    assert got["margin"] == ratio  # a float, inf included: JSON's "inf" is written by Result.to_json


def test_the_margin_is_the_comparison_closest_to_flipping():
    # y is far out (excused), running_var agrees at 0.7: the verdict rests on running_var
    got = margin([Condition("y", "differ", 40.0), Condition("running_var", "agree", 0.7),
                  Condition("running_mean", "agree", 0.01)])
    assert got == {"margin": 0.7, "margin_output": "running_var", "verdict": "fragile", "strict": True}
    # every comparison has room: the one with the least room is reported
    got = margin([Condition("y", "differ", 2.5), Condition("running_var", "agree", 0.4)])
    assert got == {"margin": 2.5, "margin_output": "y", "verdict": "firm", "strict": True}


def test_a_strict_fragile_comparison_outweighs_a_loose_one():
    loose = Condition("y", "agree", 0.99, strict=False)
    assert margin([loose, Condition("grad_x", "agree", 0.1)]) == {
        "margin": 0.99, "margin_output": "y", "verdict": "fragile", "strict": False}
    got = margin([loose, Condition("grad_x", "agree", 0.6)])
    assert got["margin_output"] == "grad_x" and got["strict"] is True


def test_no_comparison_no_verdict():
    assert margin([]) == {"margin": None, "margin_output": None, "verdict": None, "strict": None}


# ---------------------------------------------------------------------------------- the engine

@pytest.mark.parametrize("ratio, status, verdict", [(0.1, "pass", "firm"), (0.8, "pass", "fragile"),
                                                    (1.5, "fail", "fragile"), (3.0, "fail", "firm")])
def test_result_records_margin_and_verdict(ratio, status, verdict):
    r = evaluate(case(), adapter(ratio))
    assert (r["status"], r["verdict"], r["margin_output"], r["strict"]) == (status, verdict, "y", True)
    assert r["margin"] == pytest.approx(ratio, rel=1e-9) == r["outputs"]["y"]["ratio"]


def test_a_fail_rests_on_its_worst_failing_output_only():
    c = case(BATCH)
    r = evaluate(c, adapter(1.5, moved=("y", "running_var")) )
    assert r["status"] == "fail" and r["verdict"] == "fragile"
    # running_mean agrees, but a fail does not rest on it: y at 1.5 is what could come back in
    r = evaluate(c, adapter(30.0, moved=("y",)))
    assert r["status"] == "fail" and r["verdict"] == "firm" and r["margin"] == pytest.approx(30.0)


def _y_off_running_var_agreeing():
    """An adapter whose y is off by 1 (far out) while running_var agrees at 0.8 of its tolerance."""
    cls = type("Two", (A["At"],), {"name": "at-two", "ratio": 0.8, "moved": ("running_var",)})

    class Both(cls):
        def run(self, case, inputs):
            out = super().run(case, inputs)
            out["y"] = out["y"] + 1.0
            return out

    return Both


def test_an_expected_result_also_rests_on_the_outputs_that_agree(tmp_path):
    c = case(BATCH)
    entries = known(tmp_path, entry("at-*", outputs="[y]"))
    # y excused far out; running_var agrees at 0.8 of its tolerance: it could fail elsewhere
    Both = _y_off_running_var_agreeing()

    r = evaluate(c, Both(), entries)
    assert r["status"] == "expected"
    assert (r["verdict"], r["margin_output"], r["strict"]) == ("fragile", "running_var", True)
    assert r["margin"] == pytest.approx(0.8)


def test_unsupported_unavailable_and_error_carry_no_verdict():
    class Raises(A["At"]):
        name = "raises"

        def run(self, case, inputs):
            raise RuntimeError("no")

    class Missing(A["At"]):
        name, requires = "missing", ("normconf_no_such_module",)

    class NoOp(A["At"]):
        name, unsupported_ops = "noop", {"instance_norm": "not here"}

    for a, status in ((Raises(), "error"), (Missing(), "unavailable"), (NoOp(), "unsupported")):
        r = evaluate(case(), a)
        assert r["status"] == status
        assert (r["margin"], r["margin_output"], r["verdict"], r["strict"]) == (None, None, None, None)


# ---------------------------------------------------------------------------------- platform_dependent

def test_platform_dependent_entry_accepts_the_mismatch_and_says_so(tmp_path):
    entries = known(tmp_path, entry("at-*", platform_dependent=True))
    r = evaluate(case(), adapter(3.0), entries)
    assert r["status"] == "expected"
    assert r["known"]["platform_dependent"] is True and r["known"]["observed"] == "mismatch"


def test_platform_dependent_entry_accepts_a_pass_instead_of_stale(tmp_path):
    entries = known(tmp_path, entry("at-*", platform_dependent=True))
    r = evaluate(case(), adapter(0.8), entries)
    assert r["status"] == "pass", r["reason"]
    assert r["known"]["platform_dependent"] is True and r["known"]["observed"] == "agrees"
    assert "platform_dependent" in r["reason"]
    # the verdict could flip here, but either outcome is accepted: fragile, not strict
    assert (r["verdict"], r["strict"], r["margin"]) == ("fragile", False, pytest.approx(0.8))


def test_a_plain_entry_that_agrees_is_still_stale(tmp_path):
    for flag in (None, False):
        entries = known(tmp_path, entry("at-*", platform_dependent=flag))
        r = evaluate(case(), adapter(0.1), entries)
        assert r["status"] == "stale"
        assert r["known"]["platform_dependent"] is False and r["known"]["observed"] == "agrees"
        assert (r["verdict"], r["strict"]) == ("firm", True)


def test_platform_dependent_leaves_the_outputs_it_does_not_name_strict(tmp_path):
    c = case(BATCH)
    entries = known(tmp_path, entry("at-*", platform_dependent=True, outputs="[y]"))
    r = evaluate(c, adapter(0.8, moved=("y", "running_var")), entries)
    assert r["status"] == "pass"
    assert (r["verdict"], r["margin_output"], r["strict"]) == ("fragile", "running_var", True)
    r = evaluate(c, adapter(1.5, moved=("running_var",)), entries)
    assert r["status"] == "fail", "an output the entry does not name is judged as usual"


def test_fragile_lines_count_and_list_strict_first():
    def res(key, status, ratio, strict, pd=False):
        return {"case": f"m/{key}", "adapter": "a", "status": status, "margin": ratio, "margin_output": "y",
                "verdict": "fragile" if 0.5 < ratio < 2 else "firm", "strict": strict,
                "known": {"index": 4, "platform_dependent": True, "observed": "agrees"} if pd else None}

    lines = fragile_lines([res("a", "pass", 0.9, False, pd=True), res("b", "fail", 1.3, True), res("c", "pass", 0.1, True),
                           res("d", "expected", 2.5, True)])
    assert lines[0] == "fragile verdicts: 2 (1 strict)"
    assert "strict" in lines[1] and "1.3x" in lines[1] and "m/b[a] y" in lines[1]
    assert "not strict" in lines[2] and "0.9x" in lines[2] and "known_discrepancies.yaml #4, agrees here" in lines[2]
    assert len(lines) == 3
    assert fragile_lines([]) == ["fragile verdicts: 0 (0 strict)"]


# ---------------------------------------------------------------------------------- a real session

@pytest.fixture
def suite(pytester, monkeypatch):
    """A repository-like folder whose built-in adapters are NumPy's only (no framework import)."""
    import adapters
    import normconf.adapter
    from adapters.numpy_adapter import NumpyAdapter

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    # the registry's list of built-in adapters: normconf.adapter.builtin (entry points), or
    # adapters.builtin where the registry still reads the package
    home = normconf.adapter if hasattr(normconf.adapter, "builtin") else adapters
    monkeypatch.setattr(home, "builtin", lambda: [NumpyAdapter()])
    pytester.makeconftest('pytest_plugins = ["normconf.plugin"]')
    pytester.makepyfile(user_adapters=ADAPTERS)
    (pytester.path / "cases").mkdir()
    (pytester.path / "cases" / "m.yaml").write_text(CASES)
    pytester.syspathinsert()
    return pytester


def run(pytester, *args):
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                                        "--report-dir", str(pytester.path / "reports"), *args)


def test_summary_line_lists_fragile_verdicts(suite):
    (suite.path / "cases" / "known_discrepancies.yaml").write_text(
        "entries:\n" + textwrap.indent(textwrap.dedent(entry("at-0.8", platform_dependent=True)), "  "))
    result = run(suite, "--adapters", "numpy", *[f"--adapter=user_adapters:{c}" for c in ("Firm", "Near", "JustOut", "Out")])
    out = result.stdout.lines
    at = next(i for i, line in enumerate(out) if line.startswith("fragile verdicts:"))
    assert out[at] == "fragile verdicts: 2 (1 strict)"
    assert out[at + 1].split() == ["strict", "1.5x", "fail", "m/plain[at-1.5]", "y"]
    assert out[at + 2].split()[:5] == ["not", "strict", "0.8x", "pass", "m/plain[at-0.8]"]
    assert "(platform_dependent: known_discrepancies.yaml #1, agrees here)" in out[at + 2]
    doc = json.loads((suite.path / "reports" / "conformance.json").read_text())
    got = {r["adapter"]: (r["status"], r["verdict"], r["strict"]) for r in doc["results"]}
    assert got == {"numpy": ("pass", "firm", True), "at-0.1": ("pass", "firm", True),
                   "at-0.8": ("pass", "fragile", False), "at-1.5": ("fail", "fragile", True),
                   "at-3": ("fail", "firm", True)}
    r = next(r for r in doc["results"] if r["adapter"] == "at-0.8")
    assert r["known"]["platform_dependent"] is True and r["known"]["observed"] == "agrees"
    # the failure text says the verdict is fragile
    assert "fragile verdict: y at 1.5 x its tolerance" in result.stdout.str()


def test_summary_line_is_printed_when_nothing_is_fragile(suite):
    result = run(suite, "--adapters", "numpy")
    out = result.stdout.lines
    at = out.index("fragile verdicts: 0 (0 strict)")
    assert out[at - 1].startswith("results: ") and out[at + 1].startswith("="), "the last line of the normconf summary"


def test_a_literal_comparison_moves_only_with_the_distance_to_the_oracle():
    # a literal printed to 4 decimals sits up to half its last unit from the exact value: a pass at
    # 0.99 of that quantum is no closer to flipping, since no machine moves the literal
    near_literal = Condition("y (expect.values)", "agree", 0.99, moves=0.002)
    assert near_literal.room() > 1 and margin([near_literal])["verdict"] == "firm"
    assert margin([Condition("y (expect.values)", "agree", 0.99, moves=0.4)])["verdict"] == "fragile"
    # the same rules as for the oracle when all of the error moves
    assert Condition("y", "agree", 0.4).room() == Condition("y", "agree", 0.4, moves=0.4).room() == pytest.approx(1.25)
    assert Condition("y", "differ", 3.0, moves=3.0).room() == pytest.approx(1.5)
    assert Condition("y", "differ", 3.0, moves=1.0).room() == float("inf")  # the error can never come back in


def test_expect_values_close_to_their_quantum_are_firm():
    c = case("""\
cases:
  - id: lit
    op: instance_norm
    input: {shape: [1, 1, 4], dtype: float64, data: [[[0, 0, 0, 4]]]}
    params: {eps: 0.0}
    expect: {values: {y: [[[-0.577, -0.577, -0.577, 1.732]]]}}
""")  # sqrt(3) = 1.7320508: 0.0000508 of the quantum 0.0005, -1/sqrt(3) = -0.5773503: 0.70 of it
    from adapters.numpy_adapter import NumpyAdapter

    r = evaluate(c, NumpyAdapter())
    vs = r["outputs"]["y"]["vs_values"]
    assert r["status"] == "pass" and vs["ratio"] == pytest.approx(0.70, abs=0.01)
    assert r["verdict"] == "firm", "0.70 > FIRM_AGREE, but only NumPy's distance to the oracle can move"


def test_an_agreeing_output_the_excusing_entry_names_does_not_count(tmp_path):
    c = case(BATCH)
    Both = _y_off_running_var_agreeing()

    # the entry names running_var too: were it to go out on another machine, it would be excused
    r = evaluate(c, Both(), known(tmp_path, entry("at-*", outputs="[y, running_var]")))
    assert r["status"] == "expected" and r["verdict"] == "firm" and r["margin_output"] != "running_var"


def test_an_output_off_by_a_convention_moves_only_by_its_distance_to_the_convention():
    # an n-1 divisor over 24 values: y is off by a fixed factor sqrt(24/23) - 1 = 2.2%; against a
    # tolerance of 1.5% that is 1.4x, a fail that no order of additions brings back within it
    c = case("""\
cases:
  - id: div
    op: instance_norm
    input: {shape: [2, 3, 24], dtype: float64, generator: {dist: normal, seed: 5}}
    params: {eps: 0.0}
    expect: {tolerance: {atol: 0.0, rtol: 0.015}}
""")

    class Unbiased(A["At"]):
        name = "n-minus-1"

        def run(self, case, inputs):
            x = np.asarray(inputs["x"])
            return {"y": (x - x.mean(axis=2, keepdims=True)) / x.std(axis=2, ddof=1, keepdims=True)}

    class Declared(Unbiased):
        name, native = "declared", {"variance": "unbiased"}

    r = evaluate(c, Unbiased())
    assert r["status"] == "fail" and 1 < r["outputs"]["y"]["ratio"] < 2
    assert r["explanation"]["cause"] == "variance_divisor"
    assert r["verdict"] == "firm", r
    r = evaluate(c, Declared())
    assert r["status"] == "expected" and 1 < r["outputs"]["y"]["ratio"] < 2 and r["verdict"] == "firm"


def test_a_correctly_rounded_output_near_its_tolerance_is_firm():
    """rms_norm's cast-order cases have a tolerance of 1.25 u on purpose: a correctly rounded bfloat16
    output stands at 0.8 of it, and no order of additions can take it further than half an ulp. One
    that is a whole ulp off at the same ratio could move: it stays fragile."""
    import dataclasses

    from normconf.margin import correctly_rounded, verdict_margin
    from normconf.records import Metrics, Status

    rtol = 1.25 * 2.0 ** -8
    exact = Metrics(3e-3, 3e-3, 0.4999, [0, 1], 1.0, 1.0, 0.78, 0, 0, 0, 1e-30, rtol, True)
    one_ulp = Metrics(3e-3, 3e-3, 1.0, [0, 1], 1.0, 1.0, 0.78, 0, 0, 0, 1e-30, rtol, True)
    assert correctly_rounded(exact, "bfloat16") and not correctly_rounded(one_ulp, "bfloat16")
    assert not correctly_rounded(dataclasses.replace(exact, rtol=2.0 ** -8), "bfloat16")  # half an ulp may be out
    judged = {name: verdict_margin(Status.PASS, {"y": m}, [], [], {}, [], None,
                                   frozenset({"y"}) if correctly_rounded(m, "bfloat16") else frozenset())
              for name, m in (("exact", exact), ("one_ulp", one_ulp))}
    assert judged["exact"]["verdict"] == "firm" and judged["exact"]["margin"] == 0.78
    assert judged["one_ulp"]["verdict"] == "fragile" and judged["one_ulp"]["strict"]

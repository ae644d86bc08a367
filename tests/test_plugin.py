"""The pytest plugin, driven from outside: inner pytest sessions in a temporary folder.

The plugin registers itself (the ``pytest11`` entry point of the installed normconf), so the folders
here have no conftest: their ``cases/`` is the default case folder, as this repository's is. Most inner
sessions run in-process with the built-in adapters narrowed to the two NumPy ones (so no
framework is imported into this process and each run takes a fraction of a second); the sessions that
check what a user really sees (the report header with every built-in adapter, ``python -m pytest``
output, an entry-point adapter installed as a distribution) run in a subprocess.
"""
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from normconf.cases import load_file
from normconf.engine import context

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

# A literal case whose oracle is easy by hand: channel 0 = [0, 0, 0, 4] (mean 1, biased var 3),
# channel 1 = [1, 2, 3, 4] (mean 2.5, biased var 1.25). Dividing by n-1 instead of n shrinks y by
# sqrt(3/4); the largest |y| (hence the worst element) is y[0, 0, 3] = 3 / sqrt(3).
BASIC = """\
cases:
  - id: lit
    op: instance_norm
    input: {shape: [1, 2, 4], dtype: float64, data: [[[0, 0, 0, 4], [1, 2, 3, 4]]]}
    params: {eps: 0.0}
  - id: gen
    op: layer_norm
    input: {shape: [2, 3], generator: {dist: uniform, low: -1, high: 1, seed: 1}}
"""

USER_ADAPTERS = '''
"""Adapters a user writes: NumPy instance norm, right and wrong."""
import numpy as np

from normconf.adapter import Adapter

OTHER_OPS = ("batch_norm", "layer_norm", "group_norm", "normalize", "channel_stats")


class Correct(Adapter):
    """instance_norm with the n divisor, as the case asks."""

    name = "user-correct"
    framework = "numpy"
    unsupported_ops = {op: "this adapter implements instance_norm only" for op in OTHER_OPS}
    ddof = 0

    def run(self, case, inputs):
        x = np.asarray(inputs["x"], dtype=np.float64)
        axes = tuple(range(2, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True, ddof=self.ddof)
        return {"y": (x - mean) / np.sqrt(var + case.params["eps"])}


class WrongDivisor(Correct):
    """Divides by n-1: a bug the suite must catch."""

    name = "user-n-minus-1"
    ddof = 1


class DeclaredUnbiased(WrongDivisor):
    """Divides by n-1 and says so: an expected, explained discrepancy."""

    name = "user-declared"
    native = {"variance": "unbiased"}


class Missing(Correct):
    """Needs a module that is not installed."""

    name = "user-missing"
    requires = ("normconf_no_such_module",)


class Raises(Correct):
    name = "user-raises"

    def run(self, case, inputs):
        raise RuntimeError("kaboom in the user adapter")


class NoName:
    """Not an adapter at all."""
'''

KNOWN = """\
entries:
  - adapter: user-n-minus-1
    case: "status/known_*"
    outputs: [y]
    cause: variance_divisor
    reason: the user adapter divides by n-1
    link: https://example.org/issue/1
  - adapter: user-correct
    case: "status/stale_*"
    cause: variance_divisor
    reason: once divided by n-1, fixed since
    link: https://example.org/issue/2
"""

STATUS = """\
defaults:
  op: instance_norm
  input: {shape: [1, 2, 4], dtype: float64, data: [[[0, 0, 0, 4], [1, 2, 3, 4]]]}
cases:
  - id: plain
  - id: known_one
  - id: stale_one
  - id: half
    input: {dtype: bfloat16, data: null, generator: {dist: normal}}
"""


# ----------------------------------------------------------------------------- fixtures and helpers

@pytest.fixture
def suite(pytester, monkeypatch):
    """A folder that looks like the repository: cases/ and an adapter module (no conftest: the plugin
    registers itself)."""
    # the adapter module is importable in every process, xdist workers too (no conftest puts the
    # folder on sys.path any more)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(pytester.path), str(ROOT),
                                                                   os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pytester.mkdir("cases")
    pytester.makepyfile(user_adapters=USER_ADAPTERS)
    return pytester


@pytest.fixture
def fast(suite, monkeypatch):
    """In-process inner sessions whose built-in adapters are the two NumPy ones (no framework import)."""
    import adapters
    from adapters.numpy_adapter import NumpyAdapter
    from adapters.recipes import Seed000Numpy

    import normconf.adapter
    from normconf.adapter import registry

    # the registry's list of built-in adapters: normconf.adapter.builtin (entry points), or
    # adapters.builtin where the registry still reads the package
    home = normconf.adapter if hasattr(normconf.adapter, "builtin") else adapters
    monkeypatch.setattr(home, "builtin", lambda: [NumpyAdapter(), Seed000Numpy()])
    assert list(registry(entry_points=False)) == ["numpy", "recipe-000-numpy"], f"the registry no longer uses {home.__name__}.builtin"
    suite.syspathinsert()
    return suite


def write(pytester, relpath: str, text: str) -> Path:
    path = pytester.path / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# hypothesis' pytest plugin imports hypothesis at the end of every session (seconds, each time, since
# pytester unloads what an in-process session imported); nothing here uses it.
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def inner(pytester, *args):
    """An in-process inner session: (HookRecorder, {nodeid: (outcome, text)})."""
    args = (*QUIET, "--report-dir", str(pytester.path / "reports"), *args)
    reprec = pytester.inline_run(*args)
    outcomes = {}
    for rep in reprec.getreports("pytest_runtest_logreport"):
        if rep.when == "call" or (rep.when == "setup" and not rep.passed):
            if hasattr(rep, "wasxfail"):
                outcomes[rep.nodeid] = ("xfailed", rep.wasxfail)
            elif rep.skipped:
                outcomes[rep.nodeid] = ("skipped", rep.longrepr[2].removeprefix("Skipped: "))
            else:
                outcomes[rep.nodeid] = (rep.outcome, rep.longreprtext)
    return reprec, outcomes


def text_run(pytester, *args):
    """An in-process inner session, for its terminal output."""
    return pytester.runpytest_inprocess(*QUIET, "--report-dir", str(pytester.path / "reports"), *args)


def report(pytester) -> dict:
    return json.loads((pytester.path / "reports" / "conformance.json").read_text())


def collected_ids(result) -> list[str]:
    return [line for line in result.outlines if "::" in line]


# ----------------------------------------------------------------------------- collection and selection

def test_item_ids_are_stem_case_and_adapter(fast):
    write(fast, "cases/basic.yaml", BASIC)
    write(fast, "cases/deeper/more.yaml", "cases: [{id: m.1, op: normalize, input: {shape: [1, 2]}, params: {mean: 0, std: 2}}]\n")
    result = text_run(fast, "--collect-only", "-q")
    assert result.ret == 0
    # seed 000's recipe has an instance_norm method only: no item for the layer norm or normalize case
    assert collected_ids(result) == [
        "cases/basic.yaml::basic/lit[numpy]",
        "cases/basic.yaml::basic/lit[recipe-000-numpy]",
        "cases/basic.yaml::basic/gen[numpy]",
        "cases/deeper/more.yaml::more/m.1[numpy]",
    ]


def test_adapters_option_selects(fast):
    write(fast, "cases/basic.yaml", BASIC)
    result = text_run(fast, "--collect-only", "-q", "--adapters", "numpy")
    assert collected_ids(result) == ["cases/basic.yaml::basic/lit[numpy]", "cases/basic.yaml::basic/gen[numpy]"]
    result = text_run(fast, "--collect-only", "-q", "--adapters", " recipe-000-numpy ,numpy")
    assert len(collected_ids(result)) == 3


def test_keyword_selection_works_on_case_ids(fast):
    write(fast, "cases/basic.yaml", BASIC)
    result = text_run(fast, "--collect-only", "-q", "--adapters", "numpy", "-k", "lit")
    assert collected_ids(result) == ["cases/basic.yaml::basic/lit[numpy]"]


def test_unknown_adapter_name_is_a_usage_error_naming_the_known_ones(fast):
    write(fast, "cases/basic.yaml", BASIC)
    result = text_run(fast, "--adapters", "numpy,nunpy")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "nunpy" in err and "known: numpy, recipe-000-numpy" in err
    assert "Traceback" not in err + result.stdout.str()


def test_unknown_adapter_name_in_a_real_session_lists_every_builtin(suite):
    from normconf.adapter import registry

    result = suite.runpytest_subprocess(*QUIET, "--adapters", "nunpy")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    for name in registry(entry_points=False):
        assert name in err
    assert "Traceback" not in err


def test_cases_option_file_and_folder(fast, tmp_path_factory):
    write(fast, "cases/basic.yaml", BASIC)  # replaced by --cases, never collected
    write(fast, "extra/one.yaml", "cases: [{id: a, op: instance_norm, input: {shape: [1, 2, 3]}}]\n")
    write(fast, "more/two.yaml", "cases: [{id: b, op: group_norm, input: {shape: [1, 4, 2]}, params: {groups: 2}}]\n")
    write(fast, "more/sub/three.yml", "cases: [{id: c, op: channel_stats, input: {shape: [2, 2, 2]}}]\n")

    reprec, outcomes = inner(fast, "--adapters", "numpy", "--cases", "extra/one.yaml")
    assert outcomes == {"extra/one.yaml::one/a[numpy]": ("passed", "")}

    reprec, outcomes = inner(fast, "--adapters", "numpy", "--cases", "more")
    assert set(outcomes) == {"more/two.yaml::two/b[numpy]", "more/sub/three.yml::three/c[numpy]"}
    assert {o for o, _ in outcomes.values()} == {"passed"}

    # repeatable, and a folder outside the rootdir works as well
    outside = tmp_path_factory.mktemp("mycases")
    (outside / "far.yaml").write_text("cases: [{id: f, op: layer_norm, input: {shape: [2, 3]}}]\n")
    reprec, outcomes = inner(fast, "--adapters", "numpy", "--cases", "extra/one.yaml", "--cases", str(outside))
    names = sorted(n.split("::")[-1] for n in outcomes)
    assert names == ["far/f[numpy]", "one/a[numpy]"]
    assert all(o == "passed" for o, _ in outcomes.values())


def test_cases_option_with_a_missing_path(fast):
    reprec, outcomes = inner(fast, "--adapters", "numpy", "--cases", "nowhere/none.yaml")
    assert reprec.ret != 0  # a typo in --cases must not look like a green run


# ----------------------------------------------------------------------------- user adapters

def test_user_adapter_with_wrong_divisor_fails_with_metrics_worst_index_tolerance_and_reproduce(fast):
    path = write(fast, "cases/basic.yaml", BASIC)
    reprec, outcomes = inner(fast, "--adapters", "numpy", "--adapter", "user_adapters:WrongDivisor")
    nodeid = "cases/basic.yaml::basic/lit[user-n-minus-1]"
    assert outcomes["cases/basic.yaml::basic/lit[numpy]"][0] == "passed"
    assert "cases/basic.yaml::basic/gen[user-n-minus-1]" not in outcomes  # a layer norm: no API, no item
    outcome, text = outcomes[nodeid]
    assert outcome == "failed"
    # y[0, 0, 3]: 3/sqrt(3) from the oracle, 3/sqrt(4) from n-1
    assert "max_abs" in text and f"{3 / np.sqrt(3) - 1.5:.4g}" in text
    assert "worst at [0, 0, 3]" in text
    assert f"expected {3 / np.sqrt(3):.4g}, got 1.5" in text
    (case,) = [c for c in load_file(path)[0] if c.id == "lit"]
    atol = context(case).tolerance["y"]["atol"]
    assert f"atol {atol:.3g}" in text and "rtol" in text
    assert "reproduce:" in text
    assert nodeid in text.split("reproduce:")[1]
    assert "Traceback" not in text


def reproduce_lines(pytester) -> list[str]:
    """The 'reproduce:' lines of the failure of the n-1 user adapter on basic/lit."""
    write(pytester, "cases/basic.yaml", BASIC)
    reprec, outcomes = inner(pytester, "--adapters", "numpy", "--adapter", "user_adapters:WrongDivisor")
    text = outcomes["cases/basic.yaml::basic/lit[user-n-minus-1]"][1]
    return [line.strip() for line in text.split("reproduce:")[1].strip().splitlines()]


def test_reproduce_pytest_line_of_a_user_adapter_failure_selects_it(fast):
    # the item exists only with --adapter user_adapters:WrongDivisor: the line must say so
    pytest_line = next(line for line in reproduce_lines(fast) if line.startswith("pytest "))
    argv = shlex.split(pytest_line)[1:]
    assert "cases/basic.yaml::basic/lit[user-n-minus-1]" in argv
    assert "user_adapters:WrongDivisor" in pytest_line, pytest_line


def test_reproduce_python_line_of_a_user_adapter_failure_runs_it(fast):
    python_line = next(line for line in reproduce_lines(fast) if line.startswith("python "))
    argv = shlex.split(python_line)
    out = subprocess.run([sys.executable, *argv[1:]], cwd=fast.path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(fast.path), str(ROOT)])})
    assert out.returncode == 0, out.stderr[-1500:]
    assert "'status': 'fail'" in out.stdout and "'adapter': 'user-n-minus-1'" in out.stdout


def test_reproduce_python_line_of_a_builtin_adapter_failure_runs_it(fast):
    # np.mean of float16 input returns a mean rounded to float16 (spacing 0.5 at 1000): y is off by up to
    # 0.25 / std = 0.025, ten times the float16 tolerance. A real numpy mismatch, reproduced outside pytest.
    write(fast, "cases/half.yaml", """\
        cases:
          - id: big
            op: instance_norm
            input: {shape: [1, 1, 64], dtype: float16, generator: {dist: normal, mean: 1000, std: 10}}
        """)
    reprec, outcomes = inner(fast, "--adapters", "numpy")
    outcome, text = outcomes["cases/half.yaml::half/big[numpy]"]
    assert outcome == "failed", text
    python_line = next(line.strip() for line in text.split("reproduce:")[1].splitlines() if "python -c" in line)
    out = subprocess.run([sys.executable, *shlex.split(python_line)[1:]], cwd=fast.path, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-1500:]
    assert "'status': 'fail'" in out.stdout


def test_user_adapter_that_is_right_passes(fast):
    write(fast, "cases/basic.yaml", BASIC)
    reprec, outcomes = inner(fast, "--adapters", "numpy", "--adapter", "user_adapters:Correct")
    assert outcomes["cases/basic.yaml::basic/lit[user-correct]"] == ("passed", "")
    # the op it has no API for is no item, never a failure: listed once, with why, in the JSON
    assert "cases/basic.yaml::basic/gen[user-correct]" not in outcomes
    assert {"adapter": "user-correct", "op": "layer_norm", "status": "unsupported", "cases": 1,
            "reason": "this adapter implements instance_norm only"} in report(fast)["not_run"]
    assert reprec.ret == 0


@pytest.mark.parametrize("spec, words", [
    ("user_adapters", ["'user_adapters'", "MODULE:CLASS"]),
    ("normconf_no_such_module:X", ["'normconf_no_such_module:X'", "importing", "normconf_no_such_module"]),
    ("user_adapters:Nope", ["'user_adapters:Nope'", "has no 'Nope'"]),
    ("user_adapters:NoName", ["user_adapters:NoName", "lacks"]),
])
def test_bad_adapter_spec_is_a_usage_error(fast, spec, words):
    write(fast, "cases/basic.yaml", BASIC)
    result = text_run(fast, "--adapters", "numpy", "--adapter", spec)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    for word in words:
        assert word in err, err
    assert "Traceback" not in err + result.stdout.str()


def test_adapter_name_clash_is_a_usage_error(fast):
    write(fast, "user_clash.py", "from adapters.numpy_adapter import NumpyAdapter\n\n"
                                 "class Mine(NumpyAdapter):\n    pass\n")
    result = text_run(fast, "--adapter", "user_clash:Mine")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "two adapters are named 'numpy'" in result.stderr.str()


# ----------------------------------------------------------------------------- malformed cases

def test_malformed_case_is_one_failed_item_and_the_others_run(fast):
    write(fast, "cases/basic.yaml", BASIC)
    path = write(fast, "cases/mixed.yaml", """\
        cases:
          - {id: good_before, op: instance_norm, input: {shape: [1, 2, 3]}}
          - {id: oops, op: instance_norm, input: {shape: [1, 2, 3]}, params: {epsilon: 1.0e-3}}
          - {id: good_after, op: layer_norm, input: {shape: [2, 3]}}
        """)
    result = text_run(fast, "--adapters", "numpy", "-rA")
    out = result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=4, failed=1)
    assert "Traceback" not in out and "raise CaseFailure" not in out
    reprec, outcomes = inner(fast, "--adapters", "numpy")
    failed = {k: v for k, v in outcomes.items() if v[0] == "failed"}
    assert list(failed) == ["cases/mixed.yaml::mixed/oops"]
    text = failed["cases/mixed.yaml::mixed/oops"][1]
    assert str(path) in text and "'oops'" in text and "'params.epsilon'" in text
    assert "found 'epsilon'" in text and "allowed:" in text and "eps" in text.split("allowed:")[1]
    assert outcomes["cases/mixed.yaml::mixed/good_before[numpy]"][0] == "passed"
    assert outcomes["cases/mixed.yaml::mixed/good_after[numpy]"][0] == "passed"
    # the malformed case is in the exit status: a CI run goes red
    assert reprec.ret == pytest.ExitCode.TESTS_FAILED


def test_unparsable_case_file_is_one_failed_item_and_other_files_run(fast):
    write(fast, "cases/basic.yaml", BASIC)
    path = write(fast, "cases/evil.yaml", "cases:\n  - !!python/object/apply:os.system ['echo hi']\n")
    reprec, outcomes = inner(fast, "--adapters", "numpy")
    failed = {k: v for k, v in outcomes.items() if v[0] == "failed"}
    assert len(failed) == 1
    (nodeid, (_, text)), = failed.items()
    assert nodeid.startswith("cases/evil.yaml::evil/")
    assert str(path) in text and "safe_load" in text and "Traceback" not in text
    assert outcomes["cases/basic.yaml::basic/lit[numpy]"][0] == "passed"
    assert outcomes["cases/basic.yaml::basic/gen[numpy]"][0] == "passed"


# ----------------------------------------------------------------------------- statuses and the report

@pytest.fixture
def status_run(fast):
    write(fast, "cases/status.yaml", STATUS)
    write(fast, "cases/known_discrepancies.yaml", KNOWN)
    args = ["--adapters", "numpy"]
    for cls in ("Correct", "WrongDivisor", "DeclaredUnbiased", "Missing", "Raises"):
        args += ["--adapter", f"user_adapters:{cls}"]
    reprec, outcomes = inner(fast, *args)
    return fast, reprec, outcomes


def item(adapter, case):
    return f"cases/status.yaml::status/{case}[{adapter}]"


def test_statuses_map_to_outcomes(status_run):
    pytester, reprec, outcomes = status_run
    # pass -> passed
    assert outcomes[item("numpy", "plain")] == ("passed", "")
    assert outcomes[item("user-correct", "plain")] == ("passed", "")
    # fail -> failed
    assert outcomes[item("user-n-minus-1", "plain")][0] == "failed"
    assert outcomes[item("user-n-minus-1", "plain")][1].startswith("MISMATCH")
    # expected (a known discrepancy) -> xfailed, with its reason and link
    outcome, reason = outcomes[item("user-n-minus-1", "known_one")]
    assert outcome == "xfailed"
    assert "the user adapter divides by n-1" in reason and "https://example.org/issue/1" in reason
    # expected (a declared native convention) -> xfailed, naming the convention
    outcome, reason = outcomes[item("user-declared", "plain")]
    assert outcome == "xfailed" and "variance='unbiased'" in reason
    # stale (a known discrepancy that no longer differs) -> failed
    outcome, text = outcomes[item("user-correct", "stale_one")]
    assert outcome == "failed" and text.startswith("STALE") and "known_discrepancies.yaml #2" in text
    # unsupported -> skipped with the reason
    assert outcomes[item("numpy", "half")] == ("skipped", "numpy unsupported: NumPy has no bfloat16 dtype")
    # unavailable -> skipped with the reason, for every case
    for case in ("plain", "known_one", "stale_one", "half"):
        outcome, reason = outcomes[item("user-missing", case)]
        assert outcome == "skipped"
        assert reason == "user-missing unavailable: module 'normconf_no_such_module' is not installed"
    # error (the adapter raised) -> failed, with the exception
    outcome, text = outcomes[item("user-raises", "plain")]
    assert outcome == "failed" and "RuntimeError" in text and "kaboom in the user adapter" in text
    assert reprec.ret == pytest.ExitCode.TESTS_FAILED


def test_conformance_json(status_run):
    pytester, reprec, outcomes = status_run
    doc = report(pytester)
    assert doc["schema_version"] == 1
    env = doc["environment"]
    assert env["python"] == sys.version.split()[0] and env["platform"]
    names = {"numpy", "recipe-000-numpy", "user-correct", "user-n-minus-1", "user-declared", "user-missing", "user-raises"}
    assert names <= set(env["adapters"])
    assert env["adapters"]["numpy"]["version"] == np.__version__
    assert env["adapters"]["numpy"]["device"] == "cpu" and env["adapters"]["numpy"]["available"] is True
    assert env["adapters"]["user-missing"]["available"] is False
    for desc in env["adapters"].values():
        assert {"version", "device", "available"} <= set(desc)

    results = {(r["case"], r["adapter"]): r for r in doc["results"]}
    assert len(results) == len(doc["results"]) == len(outcomes)
    want = {("status/plain", "numpy"): "pass", ("status/plain", "user-correct"): "pass",
            ("status/plain", "user-n-minus-1"): "fail", ("status/known_one", "user-n-minus-1"): "expected",
            ("status/plain", "user-declared"): "expected", ("status/stale_one", "user-correct"): "stale",
            ("status/half", "numpy"): "unsupported", ("status/plain", "user-missing"): "unavailable",
            ("status/plain", "user-raises"): "error"}
    for key, status in want.items():
        assert results[key]["status"] == status, (key, results[key]["status"], results[key]["reason"])
    for r in doc["results"]:
        for field in ("case", "adapter", "op", "dtype", "status", "reason", "outputs", "explanation", "seconds"):
            assert field in r, (field, r)
        assert r["op"] == "instance_norm"
        assert r["dtype"] == ("bfloat16" if r["case"] == "status/half" else "float64")
        assert isinstance(r["seconds"], float) and r["seconds"] >= 0
        if r["status"] in ("pass", "fail", "expected", "stale"):
            y = r["outputs"]["y"]
            assert {"max_abs", "max_rel", "max_ulp", "worst_index", "atol", "rtol"} <= set(y)
        if r["status"] != "pass":
            assert r["reason"]
    fail = results[("status/plain", "user-n-minus-1")]["outputs"]["y"]
    assert fail["worst_index"] == [0, 0, 3]
    assert fail["max_abs"] == pytest.approx(3 / np.sqrt(3 + 1e-5) - 3 / np.sqrt(4 + 1e-5), rel=1e-9)
    assert results[("status/plain", "numpy")]["outputs"]["y"]["max_abs"] < 1e-14

    matrices = doc["matrices"]
    # every case some adapter ran has a matrix; the bfloat16 one was run by the user adapters only
    assert set(matrices) == {"status/plain", "status/known_one", "status/stale_one", "status/half"}
    assert "numpy" not in matrices["status/half"]["labels"]
    plain = matrices["status/plain"]
    assert plain["labels"][0] == "oracle"
    assert set(plain["labels"]) == {"oracle", "numpy", "user-correct", "user-n-minus-1", "user-declared"}
    grid = plain["max_abs"]
    assert len(grid) == len(plain["labels"]) and all(len(row) == len(grid) for row in grid)
    i, j = plain["labels"].index("oracle"), plain["labels"].index("user-n-minus-1")
    assert grid[i][j] == pytest.approx(fail["max_abs"]) and grid[i][i] == 0.0
    k = plain["labels"].index("user-declared")
    assert grid[j][k] == 0.0  # the same wrong numbers
    # strictly valid JSON (no NaN/Infinity literals)
    json.loads((pytester.path / "reports" / "conformance.json").read_text(), parse_constant=pytest.fail)


def test_wrong_divisor_is_explained(status_run):
    # docs/causes.md: the n-1 divisor is found and named, in JSON and in the failure.
    pytester, reprec, outcomes = status_run
    results = {(r["case"], r["adapter"]): r for r in report(pytester)["results"]}
    explanation = results[("status/plain", "user-n-minus-1")]["explanation"]
    assert explanation is not None and explanation["cause"] == "variance_divisor", explanation
    assert "explanation:" in outcomes[item("user-n-minus-1", "plain")][1]


def test_terminal_summary_and_report_path(status_run):
    pytester, reprec, outcomes = status_run
    result = text_run(pytester, "--adapters", "numpy", "--adapter", "user_adapters:WrongDivisor")
    out = result.stdout.str()
    assert "normconf conformance" in out
    assert re.search(r"instance_norm\s+numpy: P\d", out)
    assert "user-n-minus-1" in out.split("largest discrepancies")[1]
    assert f"results: {pytester.path / 'reports' / 'conformance.json'}" in out


def test_no_report_when_nothing_is_collected(fast):
    write(fast, "test_plain.py", "def test_x():\n    pass\n")
    reprec, outcomes = inner(fast, "--adapters", "numpy")
    assert reprec.ret == 0
    assert not (fast.path / "reports" / "conformance.json").exists()


def test_collect_only_leaves_an_earlier_report_alone(fast):
    write(fast, "cases/basic.yaml", BASIC)
    inner(fast, "--adapters", "numpy")
    before = report(fast)
    assert len(before["results"]) == 2
    text_run(fast, "--adapters", "numpy", "--collect-only", "-q")
    assert report(fast)["results"] == before["results"], "--collect-only overwrote the report with an empty one"


# ----------------------------------------------------------------------------- real sessions (subprocess)

def test_python_m_pytest_header_report_and_malformed_case(suite):
    """What a user sees: every built-in adapter in the header and the JSON, no traceback anywhere."""
    from normconf.adapter import registry

    write(suite, "cases/basic.yaml", BASIC)
    path = write(suite, "cases/broken.yaml", """\
        cases:
          - {id: fine, op: normalize, input: {shape: [1, 2]}, params: {mean: 0, std: 1}}
          - {id: bad_groups, op: group_norm, input: {shape: [1, 4, 3]}, params: {groups: 3}}
        """)
    # no --report-dir: the report goes to reports/ under the rootdir
    result = suite.runpytest_subprocess(*QUIET, "--adapters", "numpy", "-rA")
    out = result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=3, failed=1)
    assert "Traceback" not in out
    assert f"{path}: case 'bad_groups': key 'params.groups': found 3; allowed: a divisor of C = 4" in out

    header = result.stdout.str().split("collected")[0]
    builtins = registry(entry_points=False)
    for name, adapter in builtins.items():
        line = next((h for h in header.splitlines() if h.strip().startswith(name + " ")), None)
        assert line is not None, f"{name} missing from the header"
        assert f"{adapter.version() or '-'} on {adapter.device}:" in line
        assert re.search(r": (available|unavailable: \S)", line), line
        assert ("(not selected)" in line) == (name != "numpy")
    doc = report(suite)
    assert set(builtins) <= set(doc["environment"]["adapters"])
    for name, desc in doc["environment"]["adapters"].items():
        assert desc["device"] == builtins[name].device
        assert isinstance(desc["available"], bool)
        assert desc["available"] or desc["reason"]
    assert {r["adapter"] for r in doc["results"]} == {"numpy"}


def test_entry_point_adapter_is_picked_up(suite, monkeypatch):
    site = suite.mkdir("site")
    (site / "normconf_ep_demo.py").write_text(textwrap.dedent('''
        from adapters.numpy_adapter import NumpyAdapter

        class EntryPointNumpy(NumpyAdapter):
            """NumPy again, installed as a plugin distribution."""
            name = "ep-numpy"
    '''))
    dist = site / "normconf_ep_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: normconf-ep-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[normconf.adapters]\nep-numpy = normconf_ep_demo:EntryPointNumpy\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(ROOT)]))
    write(suite, "cases/basic.yaml", BASIC)

    result = suite.runpytest_subprocess(*QUIET, "--report-dir", str(suite.path / "reports"),
                                        "--adapters", "ep-numpy", "-v")
    assert result.ret == 0, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(["*ep-numpy * on cpu: available*",
                                 "*cases/basic.yaml::basic/lit?ep-numpy? PASSED*",
                                 "*cases/basic.yaml::basic/gen?ep-numpy? PASSED*"])
    assert {(r["case"], r["adapter"], r["status"]) for r in report(suite)["results"]} == {
        ("basic/lit", "ep-numpy", "pass"), ("basic/gen", "ep-numpy", "pass")}

    # --no-entry-points turns it off: the name is then unknown
    off = suite.runpytest_subprocess(*QUIET, "--no-entry-points", "--adapters", "ep-numpy")
    assert off.ret == pytest.ExitCode.USAGE_ERROR
    assert "ep-numpy" in off.stderr.str()


def test_xdist_run_reports_the_same_as_a_serial_run(status_run):
    pytest.importorskip("xdist")
    pytester, reprec, outcomes = status_run
    serial = report(pytester)
    # xdist's local workers start from the controller's sys.path, not PYTHONPATH: pytest's own
    # `pythonpath` setting makes the user's adapter module importable there
    pytester.makeini("[pytest]\npythonpath = .\n")
    args = ["--adapters", "numpy"]
    for cls in ("Correct", "WrongDivisor", "DeclaredUnbiased", "Missing", "Raises"):
        args += ["--adapter", f"user_adapters:{cls}"]
    result = text_run(pytester, "-q", "-n", "2", *args)
    result.assert_outcomes(passed=6, failed=8, skipped=5, xfailed=5)
    parallel = report(pytester)
    keep = ("case", "adapter", "status", "reason", "outputs")
    assert [{k: r[k] for k in keep} for r in parallel["results"]] == [{k: r[k] for k in keep} for r in serial["results"]]
    assert parallel["matrices"] == serial["matrices"]


def test_xdist_workers_import_no_framework_they_do_not_run(fast):
    """Only the controller shows the header; workers must not import torch/jax/... to describe adapters.

    The controller runs in-process (NumPy-only built-ins); the worker is a real process with every built-in."""
    pytest.importorskip("xdist")
    suite = fast
    suite.makeconftest("""
        import json, os, sys
        pytest_plugins = ["normconf.plugin"]
        FRAMEWORKS = ("torch", "tensorflow", "jax", "cupy")

        def pytest_sessionfinish(session):
            worker = getattr(session.config, "workerinput", None)
            if worker:
                with open(os.path.join(str(session.config.rootpath), "modules-" + worker["workerid"] + ".json"), "w") as fh:
                    json.dump([m for m in FRAMEWORKS if m in sys.modules], fh)
    """)
    write(suite, "cases/basic.yaml", BASIC)
    result = text_run(suite, "--adapters", "numpy", "-n", "1")
    result.assert_outcomes(passed=2)
    loaded = json.loads((suite.path / "modules-gw0.json").read_text())
    assert loaded == [], f"an xdist worker running only numpy items imported {loaded}"


def test_cases_without_ids_are_distinct_failed_items(fast):
    write(fast, "cases/basic.yaml", BASIC)
    write(fast, "cases/noid.yaml", """\
        cases:
          - {op: instance_norm, input: {shape: [1, 2, 3]}}
          - {op: layer_norm, input: {shape: [2, 3]}}
          - {id: ok, op: layer_norm, input: {shape: [2, 3]}}
        """)
    reprec, outcomes = inner(fast, "--adapters", "numpy")
    reports = [r for r in reprec.getreports("pytest_runtest_logreport") if r.when == "call" and r.failed]
    assert len(reports) == 2
    assert len({r.nodeid for r in reports}) == 2, f"two malformed cases share one test id: {reports[0].nodeid}"
    assert outcomes["cases/noid.yaml::noid/ok[numpy]"][0] == "passed"


# ----------------------------------------------------------------------------- items not made, once each

def test_unavailable_adapter_is_listed_once_not_skipped_per_case(fast, monkeypatch):
    """A built-in (or entry-point) adapter that cannot run here gets no items: the summary and the
    JSON say so once, with the reason. Named with --adapters, it keeps one skipped item per case."""
    import normconf.adapter
    import user_adapters
    from adapters.numpy_adapter import NumpyAdapter

    monkeypatch.setattr(normconf.adapter, "builtin", lambda: [NumpyAdapter(), user_adapters.Missing()])
    write(fast, "cases/basic.yaml", BASIC)
    result = text_run(fast, "-rs")
    out = result.stdout.str()
    result.assert_outcomes(passed=2)  # numpy on both cases; nothing skipped
    assert "SKIPPED" not in out
    assert re.search(r"not run \(no items; \"not_run\" in conformance.json\):\n\s+user-missing\s+unavailable, 2 cases: "
                     r"module 'normconf_no_such_module' is not installed", out), out
    assert report(fast)["not_run"] == [{"adapter": "user-missing", "op": None, "status": "unavailable", "cases": 2,
                                        "reason": "module 'normconf_no_such_module' is not installed"}]

    reprec, outcomes = inner(fast, "--adapters", "numpy,user-missing")
    assert outcomes["cases/basic.yaml::basic/lit[user-missing]"] == (
        "skipped", "user-missing unavailable: module 'normconf_no_such_module' is not installed")
    assert report(fast)["not_run"] == [{"adapter": "user-missing", "op": "layer_norm", "status": "unsupported",
                                        "cases": 1, "reason": "this adapter implements instance_norm only"}]


def test_not_run_counts_only_the_selected_cases(fast):
    write(fast, "cases/basic.yaml", BASIC)
    inner(fast)
    assert [(e["adapter"], e["op"], e["cases"]) for e in report(fast)["not_run"]] == [("recipe-000-numpy", "layer_norm", 1)]
    # -k keeps the instance norm only: no layer-norm case was selected, so none was not run
    reprec, outcomes = inner(fast, "-k", "lit")
    assert set(outcomes) == {"cases/basic.yaml::basic/lit[numpy]", "cases/basic.yaml::basic/lit[recipe-000-numpy]"}
    assert report(fast)["not_run"] == []
    result = text_run(fast, "-k", "lit")
    assert "not run" not in result.stdout.str()


# ----------------------------------------------------------------------------- warnings

WARNING_ADAPTERS = '''
import warnings

import numpy as np

from normconf.adapter import Adapter


class Loud(Adapter):
    """Instance norm through NumPy's float64 formula, which warns on a NaN slice; and a warning of its own."""

    name, framework = "loud", "numpy"

    def instance_norm(self, case, inputs):
        x = np.array(inputs["x"])
        with np.errstate(all="warn"):
            mean = x.mean(axis=-1, keepdims=True)
            y = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + case.params["eps"])
        if case.id == "own":
            warnings.warn("loud: the kernel's own note", UserWarning)
        if case.id == "numeric_clean":
            np.float64(1.0) / np.float64(0.0)  # a divide-by-zero warning on ordinary numbers
        return {"y": y}
'''


def test_numeric_warnings_on_nan_inputs_are_dropped_and_others_reported(fast):
    fast.makepyfile(warning_adapters=WARNING_ADAPTERS)
    write(fast, "cases/w.yaml", """\
        defaults:
          op: instance_norm
          input: {shape: [1, 2, 3], dtype: float64, data: [[[1, 2, 3], [.nan, 1, 2]]]}
          params: {eps: 1.0e-5}
        cases:
          - id: nan_input
          - id: own
          - id: numeric_clean
            input: {data: [[[1, 2, 3], [4, 5, 7]]]}
        """)
    # -W default shows every warning; pytest's own note that the in-process inner session cannot
    # assertion-rewrite normconf (imported by the outer session already) is an artifact of pytester
    result = text_run(fast, "--adapters", "loud", "--adapter", "warning_adapters:Loud", "-W", "default",
                      "-W", "ignore::pytest.PytestAssertRewriteWarning")
    out = result.stdout.str()
    result.assert_outcomes(passed=3, warnings=2)
    summary = out.split("warnings summary")[1].split("-- Docs")[0]
    assert "w/own[loud]" in summary and "loud: the kernel's own note" in summary  # not numeric: kept
    assert "w/numeric_clean[loud]" in summary and "divide by zero" in summary  # numeric, ordinary numbers: kept
    assert "w/nan_input[loud]" not in summary and "invalid value" not in summary  # the case's NaN: dropped


def test_quiet_keeps_warnings_of_an_adapter_that_raises():
    import warnings

    from normconf.expected_warnings import Quiet, certain

    class Raises:
        name = "raises"

        def run(self, case, inputs):
            warnings.warn("invalid value encountered in divide", RuntimeWarning, stacklevel=1)
            raise ValueError("boom")

    case = type("C", (), {"dtype": "float32"})()
    with pytest.warns(RuntimeWarning, match="invalid value"), pytest.raises(ValueError, match="boom"):
        Quiet(Raises()).run(case, {"x": np.ones((2, 2))})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError):
            Quiet(Raises()).run(case, {"x": np.zeros((0, 2))})  # an empty batch: expected, dropped
    assert caught == []
    # float16 sums past 65504 make an overflow certain; the same numbers in float32 do not
    big = np.full((1, 1, 100), 1000.0)
    assert certain({"x": big}, dtype="float16") and not certain({"x": big}, dtype="float32")


# ----------------------------------------------------------------------------- the plugin registers itself

def test_cases_option_with_a_space_and_no_conftest(suite):
    """The plugin comes from normconf's pytest11 entry point, before any conftest: `--cases DIR` with a
    space works (pytest used to take DIR for a test path before the conftest added the option)."""
    assert not (suite.path / "conftest.py").exists()
    write(suite, "mine/one.yaml", "cases: [{id: a, op: instance_norm, input: {shape: [1, 2, 3]}}]\n")
    result = suite.runpytest_subprocess(*QUIET, "--cases", "mine", "--adapters", "numpy", "-v")
    assert result.ret == 0, result.stdout.str()[-2000:] + result.stderr.str()[-2000:]
    result.stdout.fnmatch_lines(["*mine/one.yaml::one/a?numpy? PASSED*"])


def test_loading_it_again_by_name_is_a_no_op(suite):
    """`-p normconf.plugin` and a conftest's `pytest_plugins` naming it (the way before the entry point)
    find it registered under that name: no second registration, no error."""
    suite.makeconftest('pytest_plugins = ["normconf.plugin"]')
    write(suite, "cases/basic.yaml", BASIC)
    result = suite.runpytest_subprocess(*QUIET, "-p", "normconf.plugin", "--adapters", "numpy")
    assert result.ret == 0, result.stdout.str()[-2000:] + result.stderr.str()[-2000:]
    result.assert_outcomes(passed=2)


def test_a_project_that_does_not_use_it_is_left_alone(pytester, monkeypatch):
    """Installed, the plugin loads in every pytest run of the environment. Without a normconf option
    or a case folder in its paths, a run sees nothing of it: no header, no items, no report, and a
    broken adapter entry point of another distribution does not break it."""
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    site = pytester.mkdir("site")
    dist = site / "broken_adapters-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-adapters\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[normconf.adapters]\nbroken = no_such_module_anywhere:Nope\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(ROOT)]))
    pytester.makepyfile(test_plain="def test_x():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess(*QUIET)
    assert result.ret == 0, result.stdout.str()[-2000:] + result.stderr.str()[-2000:]
    result.assert_outcomes(passed=1)
    assert "normconf" not in result.stdout.str().split("collected")[0].replace("plugins: normconf", "")
    assert not (pytester.path / "reports").exists()
    # the same environment in a conformance run: the broken entry point is a usage error naming it
    used = pytester.runpytest_subprocess(*QUIET, "--adapters", "numpy")
    assert used.ret == pytest.ExitCode.USAGE_ERROR
    assert "no_such_module_anywhere" in used.stderr.str()


def test_large_cases_count_as_not_run_only_with_large(fast):
    """Without --large a large case is skipped whatever the adapter: a pair without an API does not
    list it (it would have had no record either)."""
    write(fast, "cases/big.yaml", "cases: [{id: big, op: layer_norm, input: {shape: [2, 3]}, tags: [large]}]\n")
    reprec, outcomes = inner(fast)
    assert outcomes == {"cases/big.yaml::big/big[numpy]": ("skipped", "a large case (tag `large`): run it with --large")}
    assert not (fast.path / "reports" / "conformance.json").exists()  # nothing ran
    reprec, outcomes = inner(fast, "--large")
    assert outcomes == {"cases/big.yaml::big/big[numpy]": ("passed", "")}
    assert [(e["adapter"], e["op"], e["cases"]) for e in report(fast)["not_run"]] == [("recipe-000-numpy", "layer_norm", 1)]


HOOKS_RAISE = '''
from adapters.numpy_adapter import NumpyAdapter


class RaisesInUnsupported(NumpyAdapter):
    name = "raises-in-unsupported"

    def unsupported(self, case):
        raise ValueError("cannot decide")


class RaisesInOutputs(NumpyAdapter):
    name = "raises-in-outputs"

    def unsupported_outputs(self, case):
        raise KeyError("no such output table")
'''


def test_an_exception_in_an_adapters_hook_is_that_items_error_with_its_record(fast):
    """unsupported() or unsupported_outputs() raising is an `error` item with a short failure text
    and a record in conformance.json, like an exception in run(); nothing else is lost."""
    fast.makepyfile(hook_adapters=HOOKS_RAISE)
    write(fast, "cases/h.yaml", """\
        defaults: {op: instance_norm, input: {shape: [2, 3, 4]}}
        cases: [{id: a}, {id: b}, {id: c, input: {shape: [1, 2, 5]}}]
        """)
    result = text_run(fast, "--adapters", "numpy", "--adapter", "hook_adapters:RaisesInUnsupported",
                      "--adapter", "hook_adapters:RaisesInOutputs")
    result.assert_outcomes(passed=3, failed=6)
    out = result.stdout.str()
    assert "raises-in-unsupported raised ValueError in unsupported(): cannot decide" in out
    assert "raises-in-outputs raised KeyError in unsupported_outputs()" in out
    assert len(out.splitlines()) < 250  # the failure texts with their last frames, not pytest's tracebacks
    records = report(fast)["results"]
    assert len(records) == 9  # one record per item
    assert sorted(r["status"] for r in records if r["adapter"] != "numpy") == ["error"] * 6
    assert all(r["traceback"] for r in records if r["adapter"] != "numpy")


# ----------------------------------------------------------------------------- default subsets

SUBSET_ADAPTER = '''
from adapters.numpy_adapter import NumpyAdapter


class Slow(NumpyAdapter):
    """NumPy's ops, but only the cases tagged `compiled` by default, as a compiled twin."""

    name, default_subset = "slow", ("compiled",)
'''

SUBSET_CASES = """\
cases:
  - {id: tagged, op: layer_norm, input: {shape: [2, 3]}, tags: [compiled]}
  - {id: other, op: layer_norm, input: {shape: [2, 3]}, tags: [edge]}
  - {id: plain, op: instance_norm, input: {shape: [1, 2, 4]}}
"""


def test_default_subset_runs_tagged_cases_and_lists_the_rest_once(fast):
    write(fast, "slow_adapter.py", SUBSET_ADAPTER)
    write(fast, "cases/sub.yaml", SUBSET_CASES)
    reprec, outcomes = inner(fast, "--adapters", "numpy", "--adapter", "slow_adapter:Slow")
    assert {k for k in outcomes if k.endswith("[slow]")} == {"cases/sub.yaml::sub/tagged[slow]"}
    assert sum(k.endswith("[numpy]") for k in outcomes) == 3  # an adapter without a subset runs every case
    assert report(fast)["not_run"] == [
        {"adapter": "slow", "op": None, "status": "subset", "cases": 2,
         "reason": "runs the cases tagged `compiled` by default; --all-cases runs every case"}]
    text = text_run(fast, "--adapters", "numpy", "--adapter", "slow_adapter:Slow").stdout.str()
    assert "slow                       2 cases outside its default subset: runs the cases tagged `compiled`" in text
    # --all-cases: every case, nothing left out
    reprec, outcomes = inner(fast, "--adapters", "numpy", "--adapter", "slow_adapter:Slow", "--all-cases")
    assert {k for k in outcomes if k.endswith("[slow]")} == {
        f"cases/sub.yaml::sub/{c}[slow]" for c in ("tagged", "other", "plain")}
    assert all(outcome == "passed" for outcome, _ in outcomes.values())
    assert report(fast)["not_run"] == []


def test_a_subset_entry_survives_a_merge_and_renders_as_not_run():
    from normconf.html import render
    from normconf.merge import merge_not_run

    entry = {"adapter": "slow", "op": None, "status": "subset", "cases": 2, "reason": "runs the cases tagged `c`"}
    ran = [{"case": "f/c", "adapter": "slow", "op": "layer_norm", "status": "pass"}]
    assert merge_not_run([[entry], [dict(entry, cases=3)]], ran, {}) == [dict(entry, cases=3)]
    doc = {"schema_version": 1, "environment": {"adapters": {"slow": {}}}, "cases": {}, "results": [],
           "matrices": {}, "not_run": [entry]}
    page = render(doc)
    assert "outside the adapter&#39;s default subset" in page or "outside the adapter's default subset" in page


# ----------------------------------------------------------------------------- --known PATH

THIRD_PARTY_KNOWN = """\
entries:
  - adapter: user-n-minus-1
    case: "basic/lit"
    cause: variance_divisor
    reason: the vendor kernel divides by n-1 (documented in its release notes)
    link: https://example.org/vendor/notes
"""


def test_known_option_adds_a_third_party_file_named_in_results(fast):
    write(fast, "cases/basic.yaml", BASIC)
    write(fast, "vendor/known.yaml", THIRD_PARTY_KNOWN)
    args = ("--adapters", "numpy", "--adapter", "user_adapters:WrongDivisor")
    reprec, outcomes = inner(fast, *args)
    assert outcomes["cases/basic.yaml::basic/lit[user-n-minus-1]"][0] == "failed"  # without it: a fail
    reprec, outcomes = inner(fast, *args, "--known", "vendor/known.yaml")
    outcome, why = outcomes["cases/basic.yaml::basic/lit[user-n-minus-1]"]
    assert outcome == "xfailed" and "vendor/known.yaml #1 (user-n-minus-1 on basic/lit)" in why
    (record,) = [r for r in report(fast)["results"] if r["adapter"] == "user-n-minus-1"]
    assert record["known"]["file"] == "vendor/known.yaml" and record["known"]["index"] == 1
    assert record["known"]["cause"] == "variance_divisor" and record["status"] == "expected"


@pytest.mark.parametrize("given, text, message", [
    ("vendor/none.yaml", None, "--known vendor/none.yaml: "),
    ("vendor", None, "found a folder"),
    ("vendor/bad.yaml", "entries: [{adapter: a, case: b, cause: no_such_cause, reason: r, link: https://x}]\n",
     "entry #1: key 'cause': found 'no_such_cause'"),
])
def test_known_option_refuses_a_missing_or_malformed_file(fast, given, text, message):
    write(fast, "cases/basic.yaml", BASIC)
    (fast.path / "vendor").mkdir(exist_ok=True)
    if text:
        write(fast, given, text)
    result = text_run(fast, "--adapters", "numpy", "--known", given)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"--known {given}:" in err and message in err

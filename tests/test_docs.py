"""The user documentation in docs/ against the code, so that the two cannot drift apart.

- ``docs/results.schema.json`` validates the ``conformance.json`` of real runs: the example adapter of
  docs/adapters.md over a shipped case file, a run built to reach every status (user adapters, a
  known-discrepancies file, framework defaults, gradients, a case error), and the two merged by
  ``python -m normconf report``; and it rejects documents that break it.
- The lists the code validates against (case keys, parameters and their defaults, ops, dtypes,
  layouts, inputs handed to adapters, outputs, cause ids, known-discrepancy keys, statuses, the
  adapter contract) are the lists the pages document.
- No page and no README line points outside the repository; every relative link resolves.

Two short subprocess runs (about 2 s each); nothing imports a framework.
"""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from normconf import adapter as adapter_mod
from normconf import cases as cases_mod
from normconf import known as known_mod
from normconf.engine import NATIVE_CAUSE
from normconf.inputs import generate
from normconf.plugin import OUTCOME
from normconf.report import SCHEMA_VERSION, STATUSES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = ("README.md", "case-format.md", "adapters.md", "causes.md", "known-discrepancies.md", "results.md")
CAUSE_IDS = set(known_mod.CAUSES) | {"unexplained"}


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first Markdown table after the line ``heading``."""
    lines = text.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        raise AssertionError(f"no line {heading!r}: the table this test reads has moved") from None
    rows, inside = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            inside = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):  # the |---| line
                rows.append(cells)
        elif inside:
            break
    assert rows, f"no table after {heading!r}"
    return rows[1:]  # without the header row


def ticked(cell: str) -> list[str]:
    """The `code` spans of a table cell."""
    return re.findall(r"`([^`]+)`", cell)


# ----------------------------------------------------------------------------- real runs

STATUS_CASES = """\
defaults:
  op: instance_norm
  input: {shape: [1, 2, 4], dtype: float64, data: [[[0, 0, 0, 4], [1, 2, 3, 4]]]}
  params: {eps: 0.0}
cases:
  - id: plain
    description: channel 0 has mean 1 and biased variance 3, channel 1 mean 2.5 and variance 1.25
    expect:
      values: {y: [[[-0.5774, -0.5774, -0.5774, 1.7321], [-1.3416, -0.4472, 0.4472, 1.3416]]]}
  - id: known_one
  - id: stale_one
  - id: other_cause
  - id: exact
    expect: {tolerance: {atol: 0.0, rtol: 0.0}}
  - id: nan_input
    input: {data: [[[.nan, 0, 0, 4], [1, 2, 3, 4]]]}
  - id: porting
    input: {shape: [2, 3, 4, 4], dtype: float32, generator: {dist: normal, std: 0.1, seed: 3}}
    params: {framework_defaults: true}
  - id: grads
    input: {shape: [2, 3, 4, 4], dtype: float32, generator: {dist: normal, seed: 4}}
    params: {eps: 1.0e-5, grad: true, weight: {generator: {dist: uniform, low: 0.5, high: 2.0, seed: 5}}}
  - id: overflow
    input: {shape: [1, 2, 4], dtype: float16, generator: {dist: normal, mean: 1.0e+5, seed: 6}}
  - id: no_bfloat16
    input: {dtype: bfloat16, data: null, generator: {dist: normal, seed: 8}}
  - id: other_op
    op: layer_norm
    input: {shape: [2, 8], generator: {dist: uniform, low: -1.0, high: 1.0, seed: 7}}
"""

STATUS_KNOWN = """\
entries:
  - adapter: user-n-minus-1
    case: "status/known_one"
    outputs: [y]
    cause: variance_divisor
    reason: the user adapter divides by n-1
    link: https://example.org/normconf/docs-test/1
  - adapter: my-instance-norm
    case: "status/stale_one"
    cause: variance_divisor
    reason: once divided by n-1, fixed since
    link: https://example.org/normconf/docs-test/2
  - adapter: user-n-minus-1
    case: "status/other_cause"
    cause: eps_value
    reason: declared with a cause the explanation does not find
    link: https://example.org/normconf/docs-test/3
"""

STATUS_ADAPTERS = '''
"""User adapters built on the example adapter of docs/adapters.md, one per status."""
from example_adapter import MyInstanceNorm


class NMinus1(MyInstanceNorm):
    """Divides by n-1 where the case asks for n: a fail, explained as variance_divisor."""

    name = "user-n-minus-1"

    def run(self, case, inputs):
        return super().run(case.with_params(variance="unbiased"), inputs)


class Declared(NMinus1):
    """The same, declared as a native convention: expected."""

    name = "user-declared"
    native = {"variance": "unbiased"}


class Raises(MyInstanceNorm):
    name = "user-raises"

    def run(self, case, inputs):
        raise RuntimeError("kaboom in the user adapter")


class Missing(MyInstanceNorm):
    name = "user-missing"
    requires = ("normconf_no_such_module",)


class TorchDefaults(MyInstanceNorm):
    name = "user-torch-defaults"
    defaults = {"instance_norm": {"eps": 1e-5}}


class KerasDefaults(MyInstanceNorm):
    name = "user-keras-defaults"
    defaults = {"instance_norm": {"eps": 1e-3}}
'''

USER_SPECS = ["example_adapter:MyInstanceNorm"] + [f"status_adapters:{c}" for c in
                                                   ("NMinus1", "Declared", "Raises", "Missing", "TorchDefaults",
                                                    "KerasDefaults")]


def run_pytest(args: list[str], cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in pythonpath] + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                           "-q", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory) -> dict:
    """The example adapter of docs/adapters.md, run as the page says, over a shipped case file."""
    out = tmp_path_factory.mktemp("example")
    proc = run_pytest(["cases/instance_norm.yaml", "--adapters", "numpy", "--adapter", "example_adapter:MyInstanceNorm",
                       f"--report-dir={out}"], ROOT, [DOCS, ROOT])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return json.loads((out / "conformance.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def status_run(tmp_path_factory) -> dict:
    """A run that reaches every status, every optional result key the engine writes for small cases."""
    work = tmp_path_factory.mktemp("status")
    (work / "cases").mkdir()
    (work / "cases" / "status.yaml").write_text(STATUS_CASES, encoding="utf-8")
    (work / "cases" / "known_discrepancies.yaml").write_text(STATUS_KNOWN, encoding="utf-8")
    (work / "status_adapters.py").write_text(textwrap.dedent(STATUS_ADAPTERS), encoding="utf-8")
    args = ["-p", "normconf.plugin", "cases", "--adapters", "numpy", "--report-dir=reports"]
    args += [a for spec in USER_SPECS for a in ("--adapter", spec)]
    proc = run_pytest(args, work, [work, DOCS, ROOT])
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]  # fail, stale and error items
    return json.loads((work / "reports" / "conformance.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def merged_run(example_run, status_run, tmp_path_factory) -> dict:
    """``python -m normconf report`` over both runs and a second copy of one whose record differs (a conflict)."""
    from normconf.cli import main

    work = tmp_path_factory.mktemp("merged")
    other = copy.deepcopy(status_run)
    for r in other["results"]:
        if r["case"] == "status/plain" and r["adapter"] == "my-instance-norm":
            r["status"], r["reason"] = "fail", "the same pair judged otherwise on another machine"
    paths = []
    for name, doc in (("cpu.json", example_run), ("status.json", status_run), ("other.json", other)):
        (work / name).write_text(json.dumps(doc), encoding="utf-8")
        paths.append(str(work / name))
    assert main(["report", *paths, "--json-out", str(work / "merged.json"), "-o", str(work / "merged.html")]) == 0
    return json.loads((work / "merged.json").read_text(encoding="utf-8"))


def result(doc: dict, case: str, adapter: str) -> dict:
    found = [r for r in doc["results"] if r["case"] == case and r["adapter"] == adapter]
    assert len(found) == 1, f"{case}[{adapter}]: {len(found)} records"
    return found[0]


# ----------------------------------------------------------------------------- the schema

@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (requirements.txt) validates docs/results.schema.json")
    schema = json.loads((DOCS / "results.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors_of(validator, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"[:300]
            for e in validator.iter_errors(doc)]


def test_example_adapter_passes_the_shipped_case_file(example_run):
    mine = [r for r in example_run["results"] if r["adapter"] == "my-instance-norm"]
    statuses = {r["status"] for r in mine}
    assert mine and statuses <= {"pass", "unsupported"}, sorted(statuses)
    assert sum(r["status"] == "pass" for r in mine) >= 60
    assert any(r["dtype"] == "bfloat16" and r["status"] == "pass" for r in mine)  # the bfloat16 hand-over
    assert any(r["layout"] == "channels_last" and r["status"] == "pass" for r in mine)


def test_status_run_reaches_every_status_and_key(status_run):
    assert {r["status"] for r in status_run["results"]} == set(STATUSES)
    assert result(status_run, "status/plain", "my-instance-norm")["outputs"]["y"]["vs_values"]["ok"] is True
    fail = result(status_run, "status/plain", "user-n-minus-1")
    assert fail["status"] == "fail" and fail["explanation"]["cause"] == "variance_divisor"
    assert result(status_run, "status/plain", "user-declared")["status"] == "expected"
    assert result(status_run, "status/known_one", "user-n-minus-1")["known"]["cause"] == "variance_divisor"
    assert result(status_run, "status/stale_one", "my-instance-norm")["status"] == "stale"
    mismatch = result(status_run, "status/other_cause", "user-n-minus-1")
    assert mismatch["explanation_mismatch"] == {"declared": ["eps_value"], "found": ["variance_divisor"]}
    assert result(status_run, "status/exact", "user-n-minus-1")["outputs"]["y"]["ratio"] == "inf"
    assert "traceback" in result(status_run, "status/plain", "user-raises")
    assert result(status_run, "status/overflow", "numpy")["reason"].startswith("case error: ")
    assert result(status_run, "status/plain", "user-missing")["status"] == "unavailable"
    grads = result(status_run, "status/grads", "my-instance-norm")
    assert grads["status"] == "pass" and set(grads["unsupported_outputs"]) == {"grad_x", "grad_weight"}
    assert status_run["cases"]["status/grads"]["tolerance"]["grad_x"]["scale"] == "max"
    assert result(status_run, "status/porting", "user-keras-defaults")["defaults"] == {"eps": 1e-3}
    assert any(p.get("cause") == "eps_value" for p in status_run["matrices"]["status/porting"]["pairs"])


@pytest.mark.parametrize("run", ["example_run", "status_run", "merged_run"])
def test_schema_validates_real_runs(run, validator, request):
    doc = request.getfixturevalue(run)
    assert doc["schema_version"] == SCHEMA_VERSION
    assert errors_of(validator, doc) == []


def test_merged_run_has_its_own_keys(merged_run):
    assert merged_run["conflicts"] and merged_run["merged"]["sources"]
    assert {"runs", "adapters"} <= set(merged_run["environment"])
    assert all("source" in r for r in merged_run["results"])


@pytest.mark.parametrize("change, where", [
    (lambda d: d["results"][0].update(status="passed"), "results/0/status"),
    (lambda d: d["results"][0].update(undocumented=1), "results/0"),
    (lambda d: d["results"][0]["outputs"]["y"].update(max_abs="big"), "results/0/outputs/y/max_abs"),
    (lambda d: d["results"][0].pop("adapter"), "results/0"),
    (lambda d: d["environment"].pop("adapters"), "environment"),
    (lambda d: d.update(schema_version=2), "schema_version"),
    (lambda d: next(r for r in d["results"] if r["explanation"]).update(explanation={"cause": "mystery", "detail": ""}),
     "results/"),
])
def test_schema_rejects_broken_documents(change, where, status_run, validator):
    doc = copy.deepcopy(status_run)
    doc["results"].sort(key=lambda r: (r["status"] != "pass", r["case"], r["adapter"]))  # results[0] has outputs.y
    change(doc)
    found = errors_of(validator, doc)
    assert any(e.startswith(where) for e in found), found


def test_schema_lists_the_code_enums():
    schema = json.loads((DOCS / "results.schema.json").read_text(encoding="utf-8"))
    defs = schema["$defs"]
    assert set(defs["status"]["enum"]) == set(STATUSES)
    assert set(defs["cause"]["enum"]) == CAUSE_IDS
    assert set(defs["op"]["enum"]) == set(cases_mod.OPS)
    assert set(defs["dtype"]["enum"]) == set(cases_mod.DTYPES)
    assert set(defs["layout"]["enum"]) == set(cases_mod.LAYOUTS)


def schema_keys(node) -> set[str]:
    keys = set()
    if isinstance(node, dict):
        keys |= set(node.get("properties", {}))
        for value in node.values():
            keys |= schema_keys(value)
    elif isinstance(node, list):
        for value in node:
            keys |= schema_keys(value)
    return keys


def test_every_schema_key_is_documented_in_results_page():
    schema = json.loads((DOCS / "results.schema.json").read_text(encoding="utf-8"))
    text = page("results.md")
    missing = sorted(k for k in schema_keys(schema) if f"`{k}`" not in text)
    assert missing == [], f"keys of docs/results.schema.json that docs/results.md does not describe: {missing}"


# ----------------------------------------------------------------------------- lists in the code vs the pages

def test_statuses_and_outcomes_match_the_plugin():
    rows = table(page("results.md"), "### Statuses")
    documented = {ticked(r[0])[0]: r[1] for r in rows}
    assert set(documented) == set(STATUSES)
    for status, outcome in OUTCOME.items():
        assert outcome in documented[status], f"{status}: the plugin reports {outcome!r}, the page says {documented[status]!r}"


def test_cause_ids_match_the_code():
    documented = set(re.findall(r"^## `([a-z_]+)`", page("causes.md"), flags=re.M))
    assert documented == CAUSE_IDS, (f"in the code only: {sorted(CAUSE_IDS - documented)}; "
                                     f"in docs/causes.md only: {sorted(documented - CAUSE_IDS)}")


def test_native_conventions_map_to_documented_causes():
    rows = {ticked(r[0])[0]: ticked(r[1]) for r in table(page("adapters.md"), "### Native conventions and their causes")}
    assert rows == {k: [v] for k, v in NATIVE_CAUSE.items()}


def test_case_keys_match_the_validator():
    text = page("case-format.md")
    rows = table(text, "### Case keys")
    documented = {k for r in rows for k in ticked(r[0])}
    wanted = (set(cases_mod.CASE_KEYS) - {"input", "expect"} | {f"input.{k}" for k in cases_mod.INPUT_KEYS}
              | {"expect.values", "expect.tolerance"})
    assert documented == wanted, (f"validator only: {sorted(wanted - documented)}; page only: {sorted(documented - wanted)}")
    for word in ("defaults", "cases", *cases_mod.OPS, *cases_mod.DTYPES, *cases_mod.LAYOUTS):
        assert f"`{word}`" in text, word
    gen_rows = {ticked(r[0])[0]: set(ticked(r[1])) for r in table(text, "### Generators")}
    assert gen_rows == {d: set(keys) - {"dist"} for d, keys in cases_mod.GENERATOR_KEYS.items()}


def test_parameters_and_defaults_match_the_validator():
    rows = table(page("case-format.md"), "### Parameters")
    documented = {}
    for cells in rows:
        default = cells[2].strip("`")
        value = cases_mod.REQUIRED if default == "required" else __import__("yaml").safe_load(default)
        for param in ticked(cells[0]):
            for op in ticked(cells[1]):
                assert (op, param) not in documented, f"{op}.{param} documented twice"
                documented[op, param] = value
    wanted = {(op, k): v for op, spec in cases_mod.PARAMS.items() for k, v in spec.items()}
    assert set(documented) == set(wanted), (f"validator only: {sorted(set(wanted) - set(documented))}; "
                                            f"page only: {sorted(set(documented) - set(wanted))}")
    wrong = {k: (documented[k], v) for k, v in wanted.items() if documented[k] != v and not (
        documented[k] is cases_mod.REQUIRED and v is cases_mod.REQUIRED)}
    assert wrong == {}, f"(op, param): (documented default, validator default): {wrong}"


def test_outputs_match_the_code():
    rows = {ticked(r[0])[0]: set(ticked(r[1])) for r in table(page("case-format.md"), "### Outputs")}
    for op in cases_mod.OPS:
        assert set(cases_mod.OUTPUTS[op]) <= rows[op], op
    assert rows["batch_norm"] >= {"y", "running_mean", "running_var"}
    assert rows["instance_norm"] >= {"running_mean", "running_var"}  # with track_running_stats
    section = page("case-format.md").split("### Outputs", 1)[1].split("\n## ", 1)[0]
    assert all(f"`{g}`" in section for g in cases_mod.GRADIENTS), "the gradient outputs are not described under Outputs"


def test_adapter_inputs_match_what_the_engine_hands_over():
    rows = {key: set(ticked(r[1])) for r in table(page("adapters.md"), "### The inputs dict") for key in ticked(r[0])}
    handed: dict[str, set[str]] = {}
    for case in cases_mod.load_paths([ROOT / "cases"])[0]:
        if "large" in case.tags:
            continue
        try:
            keys = generate(case)
        except cases_mod.CaseError:  # values that overflow the dtype: the case's error, not an input
            continue
        for key in keys:
            handed.setdefault(key, set()).add(case.op)
    assert set(rows) == set(handed), f"handed over: {sorted(handed)}; documented: {sorted(rows)}"
    for key, ops in handed.items():
        assert ops <= rows[key], f"inputs[{key!r}] is handed to {sorted(ops)}; the page lists {sorted(rows[key])}"


def test_adapter_contract_names_every_attribute_and_hook():
    text = page("adapters.md")
    public = [n for n in vars(adapter_mod.Adapter) if not n.startswith("_")]
    helpers = ["to_layout", "from_layout", "host_dtype", "host_output", "no_cuda_driver"]
    missing = [n for n in public + helpers if f"`{n}" not in text]
    assert missing == [], f"docs/adapters.md does not describe: {missing}"
    assert "normconf.adapters" in text and "--adapter" in text


def test_example_adapter_on_the_page_is_the_file_that_runs():
    code = (DOCS / "example_adapter.py").read_text(encoding="utf-8")
    assert f"```python\n{code}```" in page("adapters.md"), "docs/adapters.md shows another example than docs/example_adapter.py"


def test_known_keys_match_the_loader():
    rows = table(page("known-discrepancies.md"), "### Keys")
    documented = {ticked(r[0])[0] for r in rows}
    assert documented == set(known_mod.KEYS), (f"loader only: {sorted(set(known_mod.KEYS) - documented)}; "
                                               f"page only: {sorted(documented - set(known_mod.KEYS))}")


# ----------------------------------------------------------------------------- the repository stands alone

LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("name", ["README.md"] + [f"docs/{p}" for p in PAGES])
def test_pages_point_only_inside_the_repository(name):
    path = ROOT / name
    text = path.read_text(encoding="utf-8")
    # no pointer to the project's internal design notes beside the repository, which users never have
    assert not re.search(r"DESIGN\.md|\.\./shared\b", text)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file = (path.parent / target.split("#")[0]).resolve()
        assert file.exists(), f"{name}: link {target!r} leads nowhere"
        assert ROOT in file.parents or file == ROOT, f"{name}: link {target!r} leaves the repository"


def test_readme_links_every_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in PAGES:
        assert f"(docs/{name})" in text, f"README.md does not link docs/{name}"
    assert "(docs/results.schema.json)" in text

"""The HTML report: merging conformance documents, rendering one page, and that page in a real browser.

The browser tests drive Debian's Chromium (/usr/bin/chromium) with Selenium and /usr/bin/chromedriver;
they skip, naming what is missing, where either is not installed. Nothing is downloaded: the page is
opened from a file:// URL with the browser's background networking turned off.
"""
import copy
import html.parser
import json
import math
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from normconf.html import render
from normconf.merge import merge
from normconf.report import STATUSES, write_json

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
OPS = ("instance_norm", "batch_norm", "layer_norm", "group_norm")
EVIL = "<script>alert('x')</script>"


# ------------------------------------------------------------------------------------- documents

def outputs(op, ratio, max_abs=1e-7, ok=True):
    names = ("y", "running_mean", "running_var") if op == "batch_norm" else ("y",)
    return {n: {"max_abs": max_abs, "max_rel": 2 * max_abs, "max_ulp": 3.0, "worst_index": [0, 1, 2, 3],
                "expected_at_worst": 1.0, "actual_at_worst": 1.0 + max_abs, "ratio": ratio, "bad": 0 if ok else 4,
                "nan_expected": 0, "nan_actual": 0, "atol": 1.9e-6, "rtol": 9.5e-7, "ok": ok} for n in names}


def result(case, adapter, status="pass", ratio=0.05, op="instance_norm", dtype="float32", **more):
    ran = status not in ("unsupported", "unavailable", "error")
    r = {"case": case, "adapter": adapter, "op": op, "dtype": dtype, "layout": "channels_first",
         "shape": [2, 3, 4, 4], "tags": [], "status": status, "reason": None if status == "pass" else f"{status} here",
         "outputs": outputs(op, ratio, ok=status == "pass") if ran else {}, "explanation": None,
         "seconds": 0.01, "native": {}, "known": None}
    r.update(more)
    return r


def summary(case, op="instance_norm", dtype="float32", tags=(), mean=0.0, description=""):
    return {"file": f"/somewhere/cases/{case.split('/')[0]}.yaml", "op": op, "shape": [2, 3, 4, 4], "dtype": dtype,
            "layout": "channels_first", "params": {"eps": 1e-5}, "tags": list(tags), "description": description,
            "source": "https://example.org/doc",
            "input": {"generator": {"dist": "normal", "mean": mean, "std": 1.0, "seed": 0},
                      "min": -3.0, "max": 3.0, "mean": mean, "std": 1.0, "condition": 1.0},
            "tolerance": {"y": {"atol": 1.9e-6, "rtol": 9.5e-7}}}


def matrix(labels, value=1e-7):
    grid = [[0.0 if a == b else value for b in labels] for a in labels]
    return {"labels": list(labels), "max_abs": grid, "by_output": {"y": copy.deepcopy(grid)}}


def document(results, cases, matrices=None, adapters=("numpy", "torch"), **env):
    environment = {"python": "3.11.7", "platform": "Linux-x86_64", "numpy": "2.4.6",
                   "command": ["pytest", "--adapters", ",".join(adapters)],
                   "adapters": {a: {"version": "1.0", "framework": a, "device": "cpu", "available": True,
                                    "reason": None} for a in adapters}}
    environment.update(env)
    return {"schema_version": 1, "environment": environment, "results": results,
            "matrices": matrices or {}, "cases": cases}


def synthetic(n_results=5000, adapters=15, seed=0):
    """A run the size of a large merged report: every op, every status, long reasons, stability cases."""
    import random

    rng = random.Random(seed)
    names = ["numpy"] + [f"adapter-{i:02d}" for i in range(1, adapters)]
    dtypes = ("float64", "float32", "float16", "bfloat16")
    results, cases, matrices = [], {}, {}
    n_cases = math.ceil(n_results / adapters)
    for i in range(n_cases):
        op, dtype = OPS[i % len(OPS)], dtypes[(i // len(OPS)) % len(dtypes)]
        stable = i % 10 == 0
        mean = (1.0, 100.0, 1e4, 1e6)[(i // 10) % 4] if stable else 0.0
        key = f"{op}/case_{i:04d}@dtype={dtype},layout=channels_first"
        cases[key] = summary(key, op, dtype, tags=["stability"] if stable else ["seed"], mean=mean,
                             description=f"synthetic case {i}: mean offset {mean}, {'x' * 40}")
        cases[key]["params"]["weight"] = [rng.uniform(0.5, 2.0) for _ in range(64)]  # a literal array: summarized
        for a in names:
            if len(results) == n_results:
                break
            status = rng.choices(STATUSES, weights=(80, 4, 8, 1, 1, 4, 2))[0]
            more = {}
            if status == "expected":
                more["reason"] = ("y: known_discrepancies.yaml #1 (*numpy* on */half_offset_*): the sum over a few "
                                  "hundred values passes 65504, overflows to inf, and y collapses to 0. " * 3)
            if status == "error":
                more["traceback"] = "Traceback (most recent call last):\n  File ...\nRuntimeError: boom\n" * 5
            results.append(result(key, a, status, ratio=10 ** rng.uniform(-4, 3), op=op, dtype=dtype,
                                  **more))
        matrices[key] = matrix(["oracle"] + names, value=1e-7 * (1 + i % 7))
    return document(results, cases, matrices, adapters=names)


def small():
    """Two ops, three adapters, every status, a stability series, descriptions from a hostile case file."""
    results, cases, matrices = [], {}, {}
    for i, (op, mean) in enumerate([("instance_norm", 1.0), ("instance_norm", 100.0), ("instance_norm", 1e4),
                                    ("layer_norm", 1.0), ("layer_norm", 1e6), ("group_norm", 0.0)]):
        key = f"{op}/offset_{i}@mean={mean:g}"
        tags = ["stability"] if mean else ["edge"]
        cases[key] = summary(key, op, "float32", tags=tags, mean=mean, description=f"offset {mean:g}")
        for a, status in zip(("numpy", "torch", "tensorflow"), ("pass", STATUSES[i % 7], "expected"), strict=True):
            results.append(result(key, a, status, ratio=10.0 ** (i - 3), op=op, tags=tags))
        matrices[key] = matrix(["oracle", "numpy", "torch", "tensorflow"])
    key = "instance_norm/offset_0@mean=1"
    cases[key]["description"] = EVIL
    results[0]["reason"] = '<img src=x onerror="alert(1)">'
    results[0]["explanation"] = {"cause": "eps_value", "detail": "</script><b>fitted</b>", "params": {"eps": 1e-3}}
    return document(results, cases, matrices, adapters=("numpy", "torch", "tensorflow"))


# ------------------------------------------------------------------------------------------- HTML

class Page(html.parser.HTMLParser):
    """The parts of a rendered page the tests look at."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.cells, self.scripts, self._script = [], [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if "cell" in (attrs.get("class") or "").split() and "data-a" in attrs:
            self.cells.append(attrs)
        if tag == "script":
            self._script = [attrs, ""]

    def handle_data(self, data):
        if self._script is not None:
            self._script[1] += data

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append(tuple(self._script))
            self._script = None

    def blob(self):
        return json.loads(next(text for attrs, text in self.scripts if attrs.get("id") == "normconf-data"))


def pairs(doc):
    return {(r["case"], r["adapter"]) for r in doc["results"]}


# ------------------------------------------------------------------------------------------ merge

def test_merge_unions_results_and_tags_each_with_its_source():
    a = document([result("f/c1", "numpy"), result("f/c1", "torch")], {"f/c1": summary("f/c1")})
    b = document([result("f/c2", "numpy"), result("f/c1", "torch-cuda")], {"f/c2": summary("f/c2")},
                 adapters=("numpy", "torch-cuda"))
    m = merge([a, b], ["cpu.json", "gpu.json"])
    assert [(r["case"], r["adapter"], r["source"]) for r in m["results"]] == [
        ("f/c1", "numpy", "cpu.json"), ("f/c1", "torch", "cpu.json"), ("f/c1", "torch-cuda", "gpu.json"),
        ("f/c2", "numpy", "gpu.json")]
    assert set(m["cases"]) == {"f/c1", "f/c2"} and m["conflicts"] == []
    assert m["schema_version"] == 1 and m["merged"]["sources"] == ["cpu.json", "gpu.json"]
    assert "source" not in a["results"][0], "merge must not modify its inputs"


def test_merge_identical_duplicates_are_kept_once():
    a = document([result("f/c", "numpy"), result("f/c", "torch", "expected")], {"f/c": summary("f/c")})
    b = copy.deepcopy(a)
    b["results"][0]["seconds"] = 9.0  # timing is not a metric
    m = merge([a, b], ["one.json", "two.json"])
    assert len(m["results"]) == 2 and m["conflicts"] == []
    assert {r["source"] for r in m["results"]} == {"one.json"}


def test_merge_records_conflicts_and_keeps_every_distinct_record():
    a = document([result("f/c", "numpy"), result("f/c", "torch", ratio=0.1)], {"f/c": summary("f/c")})
    b = document([result("f/c", "numpy", "fail", ratio=3.0), result("f/c", "torch", ratio=0.2)],
                 {"f/c": summary("f/c")})
    m = merge([a, b], ["cpu.json", "gpu.json"])
    assert len(m["results"]) == 4
    got = {(c["adapter"], c["kind"]): (c["sources"], c["statuses"]) for c in m["conflicts"]}
    assert got == {("numpy", "status"): (["cpu.json", "gpu.json"], ["pass", "fail"]),
                   ("torch", "metrics"): (["cpu.json", "gpu.json"], ["pass", "pass"])}
    assert all(c["case"] == "f/c" for c in m["conflicts"])
    page = render(m)
    assert 'id="conflicts"' in page and "Different status (1)" in page and "different metrics (1)" in page
    cells = Page(page).cells
    assert len(cells) == 2, "one heatmap cell per (case, adapter), the disagreement shown in it"
    numpy_cell = next(c for c in cells if "runs disagree" in c["title"] and "fail" in c["title"])
    assert "st-fail" in numpy_cell["class"] and "cf" in numpy_cell["class"].split()


def test_merge_drops_unavailable_where_another_run_ran_the_pair():
    cpu = document([result("f/c", "torch-cuda", "unavailable", reason="no CUDA device")], {"f/c": summary("f/c")},
                   adapters=("torch-cuda",))
    cpu["environment"]["adapters"]["torch-cuda"].update(available=False, reason="no CUDA device")
    cpu["cases"]["f/c"]["input"] = {"generator": cpu["cases"]["f/c"]["input"]["generator"]}  # never computed
    gpu = document([result("f/c", "torch-cuda", "pass")], {"f/c": summary("f/c")}, adapters=("torch-cuda",))
    gpu["environment"]["adapters"]["torch-cuda"].update(device="cuda", tf32={"matmul": False, "cudnn": False})
    m = merge([cpu, gpu], ["cpu.json", "gpu.json"])
    assert [(r["status"], r["source"]) for r in m["results"]] == [("pass", "gpu.json")]
    assert m["conflicts"] == [] and m["merged"]["superseded_unavailable"] == 1
    assert m["cases"]["f/c"]["input"]["min"] == -3.0
    assert m["environment"]["adapters"]["torch-cuda"]["available"] is True  # the run where it ran describes it
    # unavailable in both runs, worded differently by each machine: one record, no conflict
    other = copy.deepcopy(cpu)
    other["results"][0]["reason"] = "torch sees no GPU"
    m = merge([cpu, other], ["a.json", "b.json"])
    assert len(m["results"]) == 1 and m["conflicts"] == []


def not_run(adapter, op=None, cases=2, reason=None):
    status = "unavailable" if op is None else "unsupported"
    return {"adapter": adapter, "op": op, "status": status, "cases": cases,
            "reason": reason or (f"{adapter} cannot run here" if op is None else f"{adapter} has no API for {op}")}


def test_merge_drops_not_run_entries_another_run_ran():
    cpu = document([result("f/c", "numpy"), result("f/l", "numpy", op="layer_norm")],
                   {"f/c": summary("f/c"), "f/l": summary("f/l", "layer_norm")}, adapters=("numpy",))
    cpu["not_run"] = [not_run("torch-cuda", cases=2, reason="no CUDA device"), not_run("jax", cases=2),
                      not_run("numpy", "group_norm", cases=1)]
    gpu = document([result("f/c", "torch-cuda"), result("f/l", "cupy", "unavailable", op="layer_norm")],
                   {"f/c": summary("f/c"), "f/l": summary("f/l", "layer_norm")}, adapters=("torch-cuda", "cupy"))
    gpu["not_run"] = [not_run("torch-cuda", "layer_norm", cases=1), not_run("jax", cases=1, reason="jax missing"),
                      not_run("cupy", "instance_norm", cases=1)]
    m = merge([cpu, gpu], ["cpu.json", "gpu.json"])
    got = [(e["adapter"], e["op"], e["status"], e["cases"], e["reason"]) for e in m["not_run"]]
    assert got == [
        # torch-cuda ran instance_norm in the GPU run: its every-op entry from the CPU run goes, the
        # GPU run's own entry for the op it has no API for stays
        ("jax", None, "unavailable", 2, "jax cannot run here"),  # in both runs: once, largest count, first reason
        ("numpy", "group_norm", "unsupported", 1, "numpy has no API for group_norm"),
        ("torch-cuda", "layer_norm", "unsupported", 1, "torch-cuda has no API for layer_norm"),
        ("cupy", "instance_norm", "unsupported", 1, "cupy has no API for instance_norm")]
    # an unavailable record is not a run: the entry of a pair with only such records stays
    gpu["not_run"].append(not_run("cupy", "layer_norm", cases=1))
    assert ("cupy", "layer_norm") in {(e["adapter"], e["op"]) for e in merge([cpu, gpu], ["a", "b"])["not_run"]}
    # a later run that ran the pair drops the entry, whichever order the files come in; the op of a
    # record without one comes from its case's summary
    ran = document([result("f/l", "torch-cuda", op=None), result("f/x", "numpy", op="group_norm")],
                   {"f/l": summary("f/l", "layer_norm")}, adapters=("numpy", "torch-cuda"))
    for docs in ([m, ran], [ran, m]):
        again = merge(docs, ["m.json", "ran.json"])
        assert [(e["adapter"], e["op"]) for e in again["not_run"]] == [("jax", None), ("cupy", "instance_norm")]
    assert "not_run" not in cpu["results"][0] and len(cpu["not_run"]) == 3, "merge must not modify its inputs"
    # documents from before not_run merge into an empty list
    assert merge([document([result("f/c", "numpy")], {})], ["old.json"])["not_run"] == []


def test_merge_unions_matrices_by_label_with_unknown_pairs_null():
    a = document([result("f/c", "numpy"), result("f/c", "torch")], {"f/c": summary("f/c")},
                 {"f/c": matrix(["oracle", "numpy", "torch"], 1e-7)})
    b = document([result("f/c", "numpy"), result("f/c", "torch-cuda")], {"f/c": summary("f/c")},
                 {"f/c": matrix(["oracle", "numpy", "torch-cuda"], 2e-7)})
    b["matrices"]["f/c"]["max_abs"][1][2] = b["matrices"]["f/c"]["max_abs"][2][1] = "nan"
    m = merge([a, b], ["cpu.json", "gpu.json"])["matrices"]["f/c"]
    assert m["labels"] == ["oracle", "numpy", "torch", "torch-cuda"]
    grid = {(x, y): m["max_abs"][i][j] for i, x in enumerate(m["labels"]) for j, y in enumerate(m["labels"])}
    assert grid["oracle", "numpy"] == 2e-7  # known from both runs: the larger
    assert grid["oracle", "torch"] == 1e-7 and grid["oracle", "torch-cuda"] == 2e-7
    assert grid["numpy", "torch-cuda"] == "nan"  # NaN where a number was due is the worst value
    assert grid["torch", "torch-cuda"] is None and grid["torch-cuda", "torch"] is None  # never in one run
    assert m["by_output"]["y"][0][3] == 2e-7
    assert m["label_sources"] == {"oracle": ["cpu.json", "gpu.json"], "numpy": ["cpu.json", "gpu.json"],
                                  "torch": ["cpu.json"], "torch-cuda": ["gpu.json"]}


def test_merge_keeps_each_runs_environment_and_unions_adapters():
    a = document([result("f/c", "numpy")], {}, adapters=("numpy", "torch"))
    b = document([result("f/c", "cupy")], {}, adapters=("numpy", "cupy"), python="3.12.1", platform="Linux-gpu")
    env = merge([a, b], ["cpu.json", "gpu.json"])["environment"]
    assert [run["source"] for run in env["runs"]] == ["cpu.json", "gpu.json"]
    assert env["runs"][1]["python"] == "3.12.1" and env["runs"][1]["adapters"] == b["environment"]["adapters"]
    assert env["runs"][0]["command"] == a["environment"]["command"]
    assert list(env["adapters"]) == ["numpy", "torch", "cupy"]
    assert env["python"] == "3.11.7 | 3.12.1"


def test_merging_a_merged_document_again_is_stable(tmp_path):
    a = document([result("f/c", "numpy")], {"f/c": summary("f/c")}, {"f/c": matrix(["oracle", "numpy"])})
    b = document([result("f/c", "torch")], {"f/c": summary("f/c")}, {"f/c": matrix(["oracle", "torch"])})
    once = merge([a, b], ["cpu.json", "gpu.json"])
    path = write_json(once, tmp_path / "merged.json")  # the CLI's --json-out: strict JSON, no NaN
    again = merge([json.loads(path.read_text()), a], [str(path), "cpu-again.json"])
    assert [r["source"] for r in again["results"]] == ["cpu.json", "gpu.json"]
    assert [run["source"] for run in again["environment"]["runs"]] == ["cpu.json", "gpu.json", "cpu-again.json"]
    assert again["conflicts"] == []
    assert again["matrices"]["f/c"]["label_sources"]["torch"] == ["gpu.json"]


def test_merge_rejects_what_is_not_a_conformance_document():
    with pytest.raises(ValueError, match="other.json: not a conformance.json"):
        merge([{"cases": []}], ["other.json"])
    with pytest.raises(ValueError, match="new.json: schema_version 2"):
        merge([dict(document([], {}), schema_version=2)], ["new.json"])


def test_cli_report_merges_and_renders(tmp_path, capsys):
    from normconf.cli import main

    a = document([result("f/c", "numpy")], {"f/c": summary("f/c")})
    b = document([result("f/c", "torch")], {"f/c": summary("f/c")})
    paths = [write_json(a, tmp_path / "cpu.json"), write_json(b, tmp_path / "gpu.json")]
    out = tmp_path / "out" / "report.html"
    assert main(["report", *map(str, paths), "-o", str(out), "--json-out", str(tmp_path / "m.json")]) == 0
    assert "2 results from 2 file(s)" in capsys.readouterr().out
    assert len(Page(out.read_text(encoding="utf-8")).cells) == 2
    assert len(json.loads((tmp_path / "m.json").read_text())["environment"]["runs"]) == 2


# ----------------------------------------------------------------------------------------- render

def test_render_escapes_everything_from_case_files():
    page = render(merge([small()], ["run.json"]))
    assert EVIL not in page and "<img src=x" not in page and "<b>fitted</b>" not in page
    # the description, in the case's summary line, as text (whichever entities spell it)
    assert EVIL in [html.unescape(d) for d in re.findall(r'<span class="desc">([^<]*)</span>', page)]
    parsed = Page(page)
    assert [attrs for attrs, _ in parsed.scripts if "src" in attrs] == []
    assert len(parsed.scripts) == 2, "the data blob and the page's script, nothing injected"
    blob = next(text for attrs, text in parsed.scripts if attrs.get("id") == "normconf-data")
    assert "</" not in blob and "<" not in blob
    data = parsed.blob()
    case = next(c for c in data["cases"] if c["k"] == "instance_norm/offset_0@mean=1")
    assert case["desc"] == EVIL and case["res"][0]["r"] == '<img src=x onerror="alert(1)">'
    assert case["res"][0]["x"]["detail"] == "</script><b>fitted</b>"


SCRIPT = "<script>alert(1)</script>"


def hostile(status):
    """A run whose every shown string holds a script element: case id, adapter, op, dtype, tag,
    reason, description, CPU, command, adapter version and reason."""
    key, adapter, op, dtype = f"layer_norm/{SCRIPT}@mean=10", f"torch{SCRIPT}", f"layer_norm{SCRIPT}", f"float32{SCRIPT}"
    tags = ["stability", SCRIPT]
    results = [result(key, "numpy", op=op, dtype=dtype, tags=tags),
               result(key, adapter, status, op=op, dtype=dtype, tags=tags, reason=SCRIPT)]
    doc = document(results, {key: summary(key, op, dtype, tags=tags, mean=10.0, description=SCRIPT)},
                   {key: matrix(["oracle", "numpy", adapter])}, adapters=("numpy", adapter),
                   cpu={"model": SCRIPT, "flags": [SCRIPT]}, command=["pytest", SCRIPT])
    doc["environment"]["adapters"][adapter].update(version=SCRIPT, available=False, reason=SCRIPT)
    return doc


def test_render_escapes_a_script_element_in_every_field_it_shows():
    page = render(merge([hostile("pass"), hostile("fail")], [f"cpu{SCRIPT}.json", "gpu.json"]))
    assert SCRIPT not in page and "<script>alert" not in page
    parsed = Page(page)
    assert len(parsed.scripts) == 2 and [attrs for attrs, _ in parsed.scripts if "src" in attrs] == []
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    header = page[page.index("<header>"):page.index("</header>")]
    assert header.count(escaped) >= 3, "the CPU model, its flags and the source file name"
    sections = dict(re.findall(r'<section id="(\w+)"(.*?)</section>', page, re.S))
    for name in ("filters", "overview", "conflicts", "heatmap", "cases", "environment"):
        assert escaped in sections[name], f"{name}: the hostile value is shown, as text"
    cells = Page(page).cells
    assert any(c["title"].startswith(f"torch{SCRIPT}: fail") for c in cells)  # an attribute, decoded
    blob = next(text for attrs, text in parsed.scripts if attrs.get("id") == "normconf-data")
    assert "<" not in blob
    res = {r["a"]: r for r in parsed.blob()["cases"][0]["res"]}
    assert res[f"torch{SCRIPT}"]["r"] == SCRIPT  # the page's script shows it with textContent


def test_render_leaves_the_document_alone_and_is_deterministic():
    from normconf.html import view

    doc = small()
    before = copy.deepcopy(doc)
    n = {s: sum(r["status"] == s for r in doc["results"]) for s in STATUSES}
    assert view(doc)["header"]["counts"] == [(s, n[s]) for s in STATUSES if n[s]]
    assert render(doc) == render(doc)
    assert doc == before


def test_inlined_stylesheet_and_script_cannot_end_their_element():
    import jinja2

    from normconf.html import _inline

    env = jinja2.Environment(loader=jinja2.DictLoader({"x.js": "var s = '</SCRIPT>';", "x.css": "a{}</style>",
                                                       "ok.css": "a{b:c}"}))
    with pytest.raises(ValueError, match="x.js: contains '</script'"):
        _inline(env, "x.js")
    with pytest.raises(ValueError, match="x.css: contains '</style'"):
        _inline(env, "x.css")
    assert _inline(env, "ok.css") == "a{b:c}"


def test_templates_ship_as_package_data():
    """An installed normconf renders from its package data: every file of normconf/templates/ is
    matched by pyproject.toml's package-data, and Jinja2 is a dependency."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["normconf"]
    folder = ROOT / "normconf" / "templates"
    files = sorted(p.relative_to(folder.parent).as_posix() for p in folder.iterdir())
    assert {"templates/report.html.j2", "templates/report.css", "templates/report.js"} <= set(files)
    assert [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)] == []
    assert any(re.match(r"jinja2\b", d, re.I) for d in config["project"]["dependencies"])


def test_render_one_heatmap_cell_per_result_with_status_and_number():
    doc = small()
    page = render(doc)
    cells = Page(page).cells
    assert len(cells) == len(doc["results"]) == len(pairs(doc))
    statuses = sorted(re.search(r"st-(\w+)", c["class"]).group(1) for c in cells)
    assert statuses == sorted(r["status"] for r in doc["results"])
    ran = [c for c in cells if re.search(r"\bb\d+\b", c["class"])]
    assert ran and all("error/tolerance" in c["title"] for c in ran)
    skipped = [c for c in cells if re.search("unavailable|unsupported", c["class"])]
    assert skipped and not any(re.search(r"\bb\d+\b", c["class"]) for c in skipped), "grey, not coloured"
    # numpy passes the six cases at 1e-3 .. 1e2 times the tolerance: two buckets a decade, 1e-4 is b0
    numpy = [re.search(r"\bb(\d+)\b", c["class"]).group(1) for c in cells if c["title"].startswith("numpy:")]
    assert sorted(map(int, numpy)) == [2, 4, 6, 8, 10, 12]


def fragile(doc):
    """Mark two results fragile: torch on the second case (strict), tensorflow on the third (under a
    platform_dependent entry: not strict)."""
    keys = sorted({r["case"] for r in doc["results"]})
    for r in doc["results"]:
        r.update(margin=0.01, margin_output="y", verdict="firm", strict=True)
        if (r["case"], r["adapter"]) == (keys[1], "torch"):
            r.update(margin=0.83, verdict="fragile")
        if (r["case"], r["adapter"]) == (keys[2], "tensorflow"):
            r.update(margin=1.4, verdict="fragile", strict=False,
                     known={"index": 7, "cause": "one_pass_variance", "reason": "r", "link": "https://example.org/7",
                            "platform_dependent": True, "observed": "mismatch"})
    return keys


def test_render_marks_fragile_verdicts_and_counts_them():
    doc = small()
    keys = fragile(doc)
    page = render(doc)
    header = page[page.index("<header>"):page.index("</header>")]
    assert "2 fragile verdicts (<b>1 strict</b>)" in header
    cells = {(c["title"].split(":")[0], c["class"]) for c in Page(page).cells if "fr" in c["class"].split()}
    assert {(a, "ns" in cls.split()) for a, cls in cells} == {("torch", False), ("tensorflow", True)}
    marked = [c for c in Page(page).cells if "fr" in c["class"].split()]
    assert all("fragile verdict: y at" in c["title"] for c in marked)
    data = {c["k"]: c for c in Page(page).blob()["cases"]}
    torch = next(r for r in data[keys[1]]["res"] if r["a"] == "torch")
    tf = next(r for r in data[keys[2]]["res"] if r["a"] == "tensorflow")
    assert torch["v"] == ["fragile", 0.83, "y", True] and "pd" not in torch
    assert tf["v"] == ["fragile", 1.4, "y", False] and tf["pd"] == [7, "mismatch"]
    assert '<option value="fragile, strict">' in page  # the verdict filter
    # a report from before the margin existed: no count to make up, nothing marked
    old = small()
    assert "fragile verdict" not in render(old).split("</header>")[0]


def test_render_header_shows_each_runs_cpu():
    a, b = small(), small()
    a["environment"]["cpu"] = {"model": "AMD EPYC 9654", "flags": ["avx2", "fma", "avx512f"]}
    b["environment"]["cpu"] = {"model": "Intel Xeon <E5>", "flags": ["avx2", "fma"]}
    header = render(merge([a, b], ["avx512.json", "avx2.json"])).split("</header>")[0]
    assert "CPU (<code>avx512.json</code>): <b>AMD EPYC 9654</b>; flags: <code>avx2 fma avx512f</code>" in header
    assert "CPU (<code>avx2.json</code>): <b>Intel Xeon &lt;E5&gt;</b>" in header
    assert "CPU: <b>AMD EPYC 9654</b>" in render(a).split("</header>")[0]
    assert "CPU" not in render(small()).split("</header>")[0], "no cpu recorded, no line"


def test_render_overview_counts_per_adapter_and_op():
    doc = small()
    page = render(doc)
    overview = page[page.index('id="overview"'):page.index('id="heatmap"')]
    for op in ("instance_norm", "layer_norm", "group_norm"):
        assert f"<th>{op}</th>" in overview
    tf = overview[overview.index(">tensorflow<"):].split("</tr>")[0]
    assert tf.count('class="n st-expected"') == 4  # three ops and the total
    assert 'title="6 expected' in tf
    for status in STATUSES:
        assert f'<span class="n st-{status}">{status}</span>' in overview  # the legend


def test_render_lists_not_run_once_and_not_as_failures():
    from normconf.html import view

    doc = small()
    doc["not_run"] = [not_run("torch-cuda", cases=6, reason=SCRIPT),
                      not_run("torch", "layer_norm", cases=2), not_run("jax", "group_norm", cases=1)]
    doc["results"] = [r for r in doc["results"] if not (r["adapter"] == "torch" and r["op"] == "layer_norm")]
    page = render(doc)
    assert SCRIPT not in page
    sections = dict(re.findall(r'<section id="(\w+)"(.*?)</section>', page, re.S))
    listed = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td><span class=\"n st-(\w+)\"[^>]*>\w+</span></td>"
                        r"<td class=\"num\">(\d+)</td><td>(.*?)</td></tr>", sections["not_run"])
    assert listed == [("torch-cuda", "<em>every op</em>", "unavailable", "6", "&lt;script&gt;alert(1)&lt;/script&gt;"),
                      ("torch", "layer_norm", "unsupported", "2", "torch has no API for layer_norm"),
                      ("jax", "group_norm", "unsupported", "1", "jax has no API for group_norm")]
    assert page.count("torch has no API for layer_norm") == 2, "the section's row and the overview cell's hover text"
    assert '<a href="#not_run">3 not run here</a>' in page and '<a href="#not_run">not_run</a>' in page
    overview = sections["overview"]
    # the adapters without results get a row that says they did not run, with no status counts
    for name, text in (("torch-cuda", "not run here: unavailable"), ("jax", "not run here: no API for group_norm")):
        row = overview[overview.index(f'<th class="rl">{name}</th>'):].split("</tr>")[0]
        assert row.startswith(f'<th class="rl">{name}</th><td class="nr" colspan="4">') and f">{text}</a>" in row
        assert 'class="n st-' not in row
    # torch's layer_norm cell, which has no results, says why instead of standing empty
    torch = overview[overview.index('<th class="rl">torch</th>'):].split("</tr>")[0]
    assert torch.count('<td class="nr">') == 1 and ">no API</a>" in torch
    total = overview[overview.index("all adapters"):].split("</tr>")[0]
    assert 'class="nr"' not in total and total.count('class="n st-') == sum(
        len(c) for c in view(doc)["overview"]["rows"][-1]["cells"])
    # no not_run, no section, no link
    doc["not_run"] = []
    page = render(doc)
    assert 'id="not_run"' not in page and "#not_run" not in page


def test_render_stability_plot_only_with_stability_cases():
    pytest.importorskip("matplotlib", reason="the stability plot is drawn with matplotlib (requirements.txt)")
    page = render(small())
    stability = page[page.index('id="stability"'):page.index('id="cases"')]
    assert "<svg" in stability and "instance_norm" in stability and "layer_norm" in stability
    assert "group_norm" not in stability, "a case with mean 0 and no stability tag is not on the plot"
    doc = small()
    for summary_ in doc["cases"].values():
        summary_["tags"] = ["edge"]
    for r in doc["results"]:
        r["tags"] = ["edge"]
    plain = render(doc)
    assert "<svg" not in plain and "No result of a case tagged" in plain


def test_render_loads_nothing_from_outside():
    page = render(merge([small(), synthetic(200, adapters=4)], ["a.json", "b.json"]))
    loading = re.findall(r"<(?:script|link|img|iframe|source|video|audio|embed|object|image|use)\b[^>]*?"
                         r"\b(?:src|href|data|xlink:href)\s*=\s*[\"']?\s*(?:https?:)?//", page, re.I)
    assert loading == []
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    assert not re.search(r"url\(\s*[\"']?(?:https?:)?//|@import", page, re.I)
    assert 'rel="icon" href="data:,"' in page  # no favicon request either


def test_render_case_details_data_is_compact():
    doc = small()
    data = Page(render(doc)).blob()
    assert [c["k"] for c in data["cases"]] == sorted({r["case"] for r in doc["results"]})
    case = data["cases"][0]
    assert case["path"] == "cases/group_norm.yaml" and case["opts"] == ""  # the repository's own cases/
    assert case["m"]["labels"] == ["oracle", "numpy", "torch", "tensorflow"]
    # strict=False: a row may end with one more item than the metrics (its vs_values / vs_native dict)
    y = dict(zip(data["metrics"], case["res"][0]["o"]["y"], strict=False))
    assert (y["max_abs"], y["max_rel"], y["worst_index"], y["ok"]) == (1e-7, 2e-7, [0, 1, 2, 3], True)
    assert case["m"]["v"][0] == [0.0, 1e-7, 1e-7, 1e-7]
    big = Page(render(synthetic(40, adapters=4))).blob()
    assert big["cases"][0]["params"]["weight"].startswith("array of 64 values")


def test_render_reproduce_paths_follow_the_case_file():
    doc = document([result("mine/c", "numpy"), result("batch_norm/c", "numpy")],
                   {"mine/c": dict(summary("mine/c"), file="/home/me/my cases/mine.yaml"),
                    "batch_norm/c": dict(summary("batch_norm/c"), file="/ci/checkout/cases/batch_norm.yaml")},
                   rootdir="/ci/checkout")
    data = {c["k"]: c for c in Page(render(doc)).blob()["cases"]}
    assert (data["batch_norm/c"]["path"], data["batch_norm/c"]["opts"]) == ("cases/batch_norm.yaml", "")
    assert data["mine/c"]["path"] == "/home/me/my cases/mine.yaml"
    assert data["mine/c"]["opts"] == " --cases '/home/me/my cases/mine.yaml'"  # not under cases/: pytest needs it
    assert data["mine/c"]["id"] == "c"


def test_render_without_matplotlib_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    page = render(small())
    assert "<svg" not in page and "No plot: matplotlib is not installed" in page


def test_render_size_and_time_of_a_5000_result_report(big_report, record_property):
    doc, page, seconds = big_report
    size = len(page.encode("utf-8"))
    record_property("html_bytes", size)
    record_property("render_seconds", round(seconds, 3))
    print(f"5,000-result report: {size / 1e6:.2f} MB, rendered in {seconds:.2f} s")
    assert len(doc["results"]) == 5000
    assert size < 5_000_000
    assert len(Page(page).cells) == 5000
    assert seconds < 20, f"rendering took {seconds:.1f} s"


@pytest.fixture(scope="module")
def big_report():
    doc = synthetic(5000)
    start = time.perf_counter()
    page = render(doc)
    return doc, page, time.perf_counter() - start


# ---------------------------------------------------------------------------------------- browser

@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Selenium; a skip naming what is missing."""
    if not CHROMIUM.exists():
        pytest.skip(reason=f"{CHROMIUM} not found (Debian: apt-get install chromium chromium-driver)")
    if not CHROMEDRIVER.exists():
        pytest.skip(reason=f"{CHROMEDRIVER} not found (Debian: apt-get install chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.skip(reason=f"selenium is not installed ({exc}; pip install selenium)")
    profile = tempfile.mkdtemp(prefix="normconf-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # The machine's network is closed: no sandbox (root), and none of Chromium's calls home.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,2000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver and binary: Selenium Manager is never asked to download one
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def severe(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def test_browser_heatmap_filters_and_details(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    a = small()
    for s in a["cases"].values():  # a gradient's atol is in units of its largest |expected|
        s["tolerance"]["grad_x"] = {"atol": 2.5e-6, "rtol": 0.0, "scale": "max"}
    keys = fragile(a)
    a["environment"]["cpu"] = {"model": "AMD EPYC", "flags": ["avx2", "avx512f"]}
    b = copy.deepcopy(a)
    b["results"] = [dict(r, status="fail") for r in b["results"] if r["adapter"] == "numpy"][:2]
    doc = merge([a, b], ["cpu.json", "gpu.json"])
    path = tmp_path / "report.html"
    path.write_text(render(doc), encoding="utf-8")
    browser.get(path.as_uri())
    assert browser.execute_script("return typeof window.normconfReady") == "number", severe(browser)

    cells = browser.find_elements(By.CSS_SELECTOR, "#hm .cell")
    assert len(cells) == len(pairs(doc))
    rows = browser.find_elements(By.CSS_SELECTOR, "#hm .row")
    assert len(rows) == len(doc["cases"]) and all(r.is_displayed() for r in rows)

    Select(browser.find_element(By.ID, "f-op")).select_by_value("layer_norm")
    shown = [r for r in rows if r.is_displayed()]
    assert len(shown) == 2 and all("layer_norm/" in r.text for r in shown)
    assert browser.find_element(By.ID, "f-count").text == "showing 2 of 6 cases"
    sections = browser.find_elements(By.CSS_SELECTOR, "details.case")
    assert sum(s.is_displayed() for s in sections) == 2
    Select(browser.find_element(By.ID, "f-adapter")).select_by_value("torch")
    assert all(not c.is_displayed() for c in browser.find_elements(By.CSS_SELECTOR, "#hm .row [data-a='0']"))
    Select(browser.find_element(By.ID, "f-op")).select_by_value("")
    Select(browser.find_element(By.ID, "f-status")).select_by_value("fail")
    assert len([r for r in rows if r.is_displayed()]) == 1  # torch fails one case
    Select(browser.find_element(By.ID, "f-adapter")).select_by_value("numpy")
    assert len([r for r in rows if r.is_displayed()]) == 2  # the conflicts: gpu.json says fail
    browser.find_element(By.ID, "f-reset").click()
    assert all(r.is_displayed() for r in rows)
    Select(browser.find_element(By.ID, "f-verdict")).select_by_value("fragile")
    assert [r.find_element(By.CSS_SELECTOR, ".rl").text for r in rows if r.is_displayed()] == keys[1:3]
    Select(browser.find_element(By.ID, "f-verdict")).select_by_value("fragile, strict")
    assert [r.find_element(By.CSS_SELECTOR, ".rl").text for r in rows if r.is_displayed()] == [keys[1]]
    browser.find_element(By.ID, "f-reset").click()
    assert all(r.is_displayed() for r in rows)
    header = browser.find_element(By.TAG_NAME, "header").text
    assert "2 fragile verdicts (1 strict)" in header and "CPU (cpu.json): AMD EPYC; flags: avx2 avx512f" in header
    assert len(browser.find_elements(By.CSS_SELECTOR, "#hm .cell.fr")) == 2

    target = browser.find_elements(By.CSS_SELECTOR, "#hm .row")[4].find_elements(By.CSS_SELECTOR, ".cell")[1]
    key = browser.find_elements(By.CSS_SELECTOR, "#hm .row")[4].find_element(By.CSS_SELECTOR, ".rl").text
    details = browser.find_element(By.ID, "case-" + key)
    assert details.get_attribute("open") is None
    target.click()
    assert details.get_attribute("open") is not None
    body = details.find_element(By.CSS_SELECTOR, ".body")
    assert "Results" in body.text and "Pairwise max" in body.text and "Reproduce" in body.text
    assert "tolerance grad_x atol 2.500e-6 \u00d7 max|expected|, rtol 0" in body.text
    assert "tolerance y atol 1.900e-6, rtol 9.500e-7" in body.text
    assert f"pytest 'cases/layer_norm.yaml::{key}[torch]'" in body.text
    assert f"normconf.reproduce('cases/layer_norm.yaml', '{key.split('/', 1)[1]}', 'torch')" in body.text
    assert body.find_elements(By.CSS_SELECTOR, "tr.hl"), "the clicked adapter's rows are highlighted"

    # the verdict under each status, and what a platform_dependent entry means
    fr = browser.find_element(By.ID, "case-" + keys[2])
    browser.execute_script("arguments[0].open = true; arguments[0].scrollIntoView({block: 'center'})", fr)
    WebDriverWait(browser, 10).until(lambda d: fr.find_element(By.CSS_SELECTOR, ".body").get_attribute("data-done"))
    assert "fragile (y 1.4\u00d7, not strict)" in fr.text and "firm (y 0.01\u00d7)" in fr.text
    assert "platform dependent: known_discrepancies.yaml #7 accepts a pass or its mismatch" in fr.text

    # the hostile description is shown as text, and nothing ran
    evil = browser.find_element(By.ID, "case-instance_norm/offset_0@mean=1")
    summary_el = evil.find_element(By.TAG_NAME, "summary")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary_el)  # not under the sticky filters
    summary_el.click()
    WebDriverWait(browser, 10).until(lambda d: evil.find_element(By.CSS_SELECTOR, ".body").get_attribute("data-done"))
    assert EVIL in evil.text and "</script><b>fitted</b>" in evil.text
    assert not browser.execute_script("return document.body.innerHTML.indexOf('<b>fitted</b>') >= 0")

    browser.execute_script("window.scrollTo(0, 0)")
    shot = ROOT / "reports" / "browser-test.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    assert severe(browser) == []


def test_browser_opens_a_5000_result_report_in_under_2_seconds(browser, big_report, tmp_path, record_property):
    from selenium.webdriver.common.by import By

    doc, page, _ = big_report
    path = tmp_path / "big.html"
    path.write_text(page, encoding="utf-8")
    loads = []
    for _ in range(3):  # the best of three loads: a busy machine slows one load, not the page
        browser.get(path.as_uri())
        loads.append(browser.execute_script(
            "var n = performance.getEntriesByType('navigation')[0];"
            "return {ready: window.normconfReady, dom: n.domContentLoadedEventEnd, load: n.loadEventEnd};"))
        if max(loads[-1].values()) < 2000:
            break
    best = min(loads, key=lambda t: max(t.values()))
    record_property("browser_load_ms", [round(t["load"]) for t in loads])
    print(f"5,000-result report in Chromium: loads {[round(t['load']) for t in loads]} ms; best: script done at "
          f"{best['ready']:.0f} ms, DOMContentLoaded {best['dom']:.0f} ms, load {best['load']:.0f} ms")
    assert max(best.values()) < 2000, loads
    assert len(browser.find_elements(By.CSS_SELECTOR, "#hm .cell")) == 5000
    last = browser.find_elements(By.CSS_SELECTOR, "#hm .cell")[-1]
    browser.execute_script("arguments[0].click()", last)
    opened = browser.execute_script("return document.querySelectorAll('details.case[open]').length")
    assert opened == 1
    assert severe(browser) == []

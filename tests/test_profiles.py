"""tools/profiles.py: the verdict comparison, its exit code, and one real run on a tiny case file."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from normconf.report import NUMERICS_ENV, environment

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("profiles_tool", ROOT / "tools" / "profiles.py")
profiles = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = profiles  # dataclasses look their module up there
spec.loader.exec_module(profiles)


def result(case, adapter, status, ratio=0.5, max_abs=1e-7, max_ulp=1.0):
    return {"case": case, "adapter": adapter, "status": status,
            "outputs": {"y": {"max_abs": max_abs, "max_ulp": max_ulp, "ratio": ratio}}}


def doc(*results, env=None, adapters=None):
    return {"schema_version": 1, "results": list(results),
            "environment": {"numerics_env": env or {}, "adapters": adapters or {}}}


def test_compare_finds_a_differing_status_with_both_ratios():
    ref = doc(result("f/a", "numpy", "pass", 0.9), result("f/b", "numpy", "pass"), result("f/c", "torch", "expected", 3.0))
    new = doc(result("f/a", "numpy", "fail", 1.4), result("f/b", "numpy", "pass"), result("f/c", "torch", "expected", 3.0))
    d = profiles.compare(ref, new)
    assert (d["items"], d["compared"], d["moved"]) == (3, 3, 0)
    assert d["differing"] == [{"case": "f/a", "adapter": "numpy", "reference": "pass", "status": "fail",
                               "reference_ratio": 0.9, "ratio": 1.4, "reference_margin": None, "margin": None,
                               "reference_reason": None, "reason": None}]
    assert d["accepted"] == [] and d["changed"] == []


def test_compare_counts_moved_numbers_and_items_the_reference_lacks():
    ref = doc(result("f/a", "jax", "pass", 0.2, max_abs=1e-7), result("f/b", "jax", "pass", 0.3, max_ulp=2.0),
              result("f/c", "jax", "expected", 3e5, max_abs=0.1))
    new = doc(result("f/a", "jax", "pass", 0.6, max_abs=3e-7), result("f/b", "jax", "pass", 0.3, max_ulp=2.0),
              result("f/c", "jax", "expected", 1e6, max_abs=0.3), result("f/new", "jax", "pass"))
    d = profiles.compare(ref, new)
    assert d["differing"] == [] and d["moved"] == 2 and d["only_here"] == ["f/new[jax]"]
    # the moved item that ends nearest a flip, not the one whose (huge, by design) ratio moved most
    closest = d["moved_closest"]
    assert (closest["case"], closest["reference_ratio"], closest["ratio"]) == ("f/a", 0.2, 0.6)
    # a scoped profile runs fewer items than the reference: the others are not "differing"
    assert profiles.compare(ref, doc(result("f/a", "jax", "pass", 0.2)))["compared"] == 1


def test_item_ratio_reads_the_json_spellings_of_inf_and_nan():
    assert profiles.item_ratio({"outputs": {"y": {"ratio": "inf"}, "m": {"ratio": 2.0}}}) == float("inf")
    assert profiles.item_ratio({"outputs": {"y": {"ratio": "nan"}}}) != profiles.item_ratio({"outputs": {"y": {"ratio": "nan"}}})
    assert profiles.item_ratio({"outputs": {}}) is None


def test_exit_code():
    assert profiles.exit_code([{"differing": []}, {"differing": [], "skipped": "no AVX-512"}]) == 0
    assert profiles.exit_code([{"differing": []}, {"differing": [{"case": "f/a"}]}]) == 1
    assert profiles.exit_code([{"differing": [{"case": "f/a"}]}, {"error": "XLA refused"}]) == 2


def test_a_differing_verdict_makes_the_tool_exit_nonzero(tmp_path, monkeypatch, capsys):
    """main() end to end with the pytest runs replaced by written reports: one status flips."""
    adapters = {"numpy": {"framework": "numpy"}, "torch": {"framework": "torch"}}
    reference = doc(result("f/a", "numpy", "pass", 0.4), result("f/a", "torch", "pass", 0.98), adapters=adapters)
    runs = []

    def fake_run(p, folder, base_cmd, adapters_arg, label, reference_report=None):
        runs.append((p.name, adapters_arg))
        folder.mkdir(parents=True, exist_ok=True)
        if p.name == "default":
            out = reference
        else:  # the torch profile: torch's ratio crosses 1
            out = doc(result("f/a", "torch", "fail", 1.03), env=p.env, adapters=adapters)
        (folder / "conformance.json").write_text(json.dumps(out))
        return {"seconds": 0.1, "pytest_exit": 0, "report": str(folder / "conformance.json"), "pytest_summary": ""}

    monkeypatch.setattr(profiles, "run_pytest", fake_run)
    monkeypatch.setattr(profiles, "run_check", lambda p: ("checked", None))
    code = profiles.main(["--profiles", "torch-default", "--work", str(tmp_path), "--out", str(tmp_path / "s.json")])
    text = capsys.readouterr().out
    assert code == 1, text
    assert runs == [("default", None), ("torch-default", "torch")]  # the torch profile runs torch's adapters only
    assert "f/a[torch]: pass (error/tolerance 0.98) -> fail (error/tolerance 1.03)" in text
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["exit"] == 1 and len(summary["profiles"][1]["differing"]) == 1


def test_every_profile_setting_is_recorded_in_the_report(monkeypatch):
    """The tool refuses a run whose recorded numerics_env is not its profile's: each variable it sets
    must be one that environment() records."""
    m = profiles.machine()
    for p in profiles.profiles(m):
        assert set(p.env) <= set(NUMERICS_ENV), p.name
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    env = environment({})
    assert env["numerics_env"]["ATEN_CPU_CAPABILITY"] == "default" and "XLA_FLAGS" not in env["numerics_env"]
    cpu = env["cpu"]
    assert set(cpu) == {"model", "flags", "count", "usable"} and isinstance(cpu["flags"], list)
    assert cpu["usable"] >= 1 and cpu["model"]
    if Path("/proc/cpuinfo").exists() and profiles.machine()["x86"]:
        assert "sse4_2" in cpu["flags"]  # every x86-64 CPU NumPy 2.4 runs on has it (its X86_V2 baseline)


def test_numpy_profiles_switch_off_only_targets_numpy_dispatches_here():
    m = profiles.machine()
    npy = m["numpy"]
    assert npy and npy["dispatch"] is not None
    for p in profiles.profiles(m):
        if p.name.startswith("numpy-") and not p.why_not:
            off = p.env["NPY_DISABLE_CPU_FEATURES"].split()
            assert off and set(off) <= set(npy["dispatch"]) and all(npy["features"][t] for t in off)
            assert not set(off) & set(npy["baseline"])


def test_real_run_on_a_tiny_case_file(tmp_path):
    """The tool itself, numpy adapter only, two cheap profiles, on one small case."""
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "tiny.yaml").write_text(
        "defaults:\n  op: instance_norm\ncases:\n"
        "  - id: tiny_2x3x4x4\n    input: {shape: [2, 3, 4, 4], dtype: float32,"
        " generator: {dist: normal, mean: 100.0, std: 1.0, seed: 3}}\n")
    out, work = tmp_path / "summary.json", tmp_path / "work"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "profiles.py"), "--profiles", "numpy-baseline,threads-1",
                           "--cases", str(cases), "--adapters", "numpy", "--work", str(work), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(out.read_text())
    recs = {r["profile"]: r for r in summary["profiles"]}
    assert list(recs) == ["default", "numpy-baseline", "threads-1"]
    assert recs["default"]["items"] == 1 and recs["default"]["pytest_exit"] == 0
    assert "[1/3] default" in proc.stdout and any(ln.split()[:3] == ["profile", "items", "differing"]
                                                   for ln in proc.stdout.splitlines() if ln.strip())
    for name in ("numpy-baseline", "threads-1"):
        rec = recs[name]
        if rec.get("skipped"):  # a CPU with no NumPy dispatch target, a one-CPU machine
            assert f"{name}: skipped: {rec['skipped']}" in proc.stdout
            continue
        assert rec["items"] == rec["compared"] == 1 and rec["differing"] == []
        report = json.loads((work / name / "conformance.json").read_text())
        assert report["environment"]["numerics_env"] == rec["env"] != {}
        assert report["results"][0]["status"] == "pass"


def test_a_setting_the_framework_refuses_is_a_clear_error():
    """NumPy raises at import when told to switch off a baseline feature: the profile is an error
    naming the setting and NumPy's message, and its pytest run does not start."""
    baseline = (profiles.machine()["numpy"] or {}).get("baseline") or []
    if not baseline:
        pytest.skip("this NumPy build has no baseline CPU feature to refuse")
    p = profiles.Profile("numpy-bad", "planted", {"NPY_DISABLE_CPU_FEATURES": baseline[0]},
                         check="import numpy; print('imported')")
    seen, error = profiles.run_check(p)
    assert seen is None and f"NPY_DISABLE_CPU_FEATURES={baseline[0]}" in error and "baseline" in error, error


def test_a_flip_under_a_platform_dependent_entry_is_accepted_and_an_edited_case_is_not_compared():
    entry = {"index": 7, "cause": "one_pass_variance", "reason": "r", "link": "l", "platform_dependent": True}
    ref = doc(dict(result("f/a", "jax", "expected", 1.37), known=dict(entry, observed="mismatch"), margin=1.37),
              result("f/b", "jax", "pass", 0.5))
    new = doc(dict(result("f/a", "jax", "pass", 0.44), known=dict(entry, observed="agrees"), margin=0.44),
              result("f/b", "jax", "fail", 1.5))
    ref["cases"] = {"f/a": {"op": "instance_norm", "dtype": "float16", "input": {"generator": {"seed": 1}, "std": 9.9}},
                    "f/b": {"op": "layer_norm", "params": {"eps": 1e-5}}}
    new["cases"] = {"f/a": {"op": "instance_norm", "dtype": "float16", "input": {"generator": {"seed": 1}, "std": 9.8}},
                    "f/b": {"op": "layer_norm", "params": {"eps": 1e-3}}}  # edited between the runs
    d = profiles.compare(ref, new)
    assert d["differing"] == [] and d["changed"] == ["f/b[jax]"] and d["compared"] == 1
    assert [(x["reference"], x["status"], x["reference_margin"], x["margin"]) for x in d["accepted"]] == \
        [("expected", "pass", 1.37, 0.44)]
    assert profiles.exit_code([{"differing": [], "accepted": d["accepted"]}]) == 0
    # the same flip without the platform_dependent entry is a differing verdict
    strict = dict(entry, platform_dependent=False)
    ref["results"][0]["known"], new["results"][0]["known"] = dict(strict, observed="mismatch"), None
    assert [x["case"] for x in profiles.compare(ref, new)["differing"]] == ["f/a"]


def test_each_profile_compiles_its_own_torch_kernels(tmp_path, monkeypatch):
    """Inductor's on-disk cache does not key on ATEN_CPU_CAPABILITY: a profile that reused the
    default run's kernels got inf (avx2) or a C++ compile error (default). Each gets its own cache."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/shared/cache")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    avx2 = profiles.Profile("torch-avx2", "doc", env={"ATEN_CPU_CAPABILITY": "avx2"})
    default = profiles.Profile("default", "doc")
    one, two = profiles.profile_env(avx2, tmp_path / "a"), profiles.profile_env(default, tmp_path / "b")
    assert one["ATEN_CPU_CAPABILITY"] == "avx2" and "ATEN_CPU_CAPABILITY" not in two
    assert one["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "a" / "inductor-cache")
    assert two["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "b" / "inductor-cache")

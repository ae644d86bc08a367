"""Adoption from outside the checkout: normconf built as a wheel and installed into a fresh virtual
environment, then used from another folder against a third-party adapter, as a kernel author's CI
would use it.

Offline, as CI runs it: the wheel is built from a copy of the source with the build backend already
installed here (``pip wheel --no-deps --no-build-isolation --no-index``) and installed with
``--no-deps --no-index``. The fresh environment gets normconf's runtime dependencies (NumPy, PyYAML,
pytest, Jinja2 and theirs, read from the wheel's metadata) from this environment, and nothing else:
no torch, no TensorFlow, no JAX, no ``adapters`` or ``normconf`` from the checkout. NumPy is the
framework. About 15 s on 2 cores, most of it the pytest sessions.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

THIRD_PARTY = '''
"""A kernel author's adapters, in their own package: NumPy instance norm, right and wrong."""
import numpy as np

from normconf.adapter import Adapter


class MyNorm(Adapter):
    """Instance norm with the n divisor, computed in float64 and returned in the case's dtype."""

    name, framework = "my-norm", "numpy"
    ddof = None  # the case's variance

    def unsupported_outputs(self, case):
        return {k: "no backward pass or running statistics" for k in case.outputs if k != "y"}

    def instance_norm(self, case, inputs):
        x = np.asarray(inputs["x"], dtype=np.float64)
        axes = tuple(range(2, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        ddof = self.ddof if self.ddof is not None else int(case.params.get("variance") == "unbiased")
        var = ((x - mean) ** 2).sum(axis=axes, keepdims=True) / (np.prod([x.shape[a] for a in axes]) - ddof)
        y = (x - mean) / np.sqrt(var + case.params["eps"])
        weight, bias = inputs.get("weight"), inputs.get("bias")
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if weight is not None:
            y = y * np.asarray(weight).reshape(shape)
        if bias is not None:
            y = y + np.asarray(bias).reshape(shape)
        return {"y": y.astype("float32" if case.dtype == "bfloat16" else case.dtype)}


class WrongDivisor(MyNorm):
    """Divides by n-1: the suite must catch it."""

    name = "my-norm-n1"
    ddof = 1
'''

MY_CASES = """\
cases:
  - id: mine
    op: instance_norm
    input: {shape: [2, 3, 5], generator: {dist: normal, mean: 2.0, std: 3.0, seed: 7}}
"""


def _requirements(dist: importlib.metadata.Distribution) -> list[str]:
    """The names of ``dist``'s unconditional requirements (no extras) that apply here."""
    from packaging.requirements import Requirement

    names = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(req.name)
    return names


def _closure(names: list[str]) -> list[importlib.metadata.Distribution]:
    """These distributions of this environment and everything they require."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        dist = importlib.metadata.distribution(name)
        seen[key] = dist
        todo += _requirements(dist)
    return list(seen.values())


def _link_distributions(dists, target: Path) -> None:
    """Each distribution's top-level files and folders (and its metadata), linked into ``target``."""
    target.mkdir()
    for dist in dists:
        base = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if ".." not in Path(str(f)).parts}
        for top in tops:
            if (base / top).exists() and not (target / top).exists():
                (target / top).symlink_to(base / top)


def _run(cmd, cwd: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """A fresh venv with the normconf wheel, and a project folder elsewhere with a third-party adapter
    package. Returns (python, folder, env, seconds per step)."""
    pytest.importorskip("setuptools", reason="the wheel is built offline with the installed build backend")
    pytest.importorskip("packaging")
    base = tmp_path_factory.mktemp("install")
    seconds = {}
    start = time.perf_counter()
    src = base / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("normconf", "adapters", "cases"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                  "-w", str(base / "dist"), str(src)], base, dict(os.environ))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (base / "dist").glob("normconf-*.whl")
    seconds["wheel"] = time.perf_counter() - start

    start = time.perf_counter()
    venv = base / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], base, dict(os.environ))
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                      "-q", str(wheel)], base, dict(os.environ))
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    required = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    from packaging.requirements import Requirement

    names = [Requirement(r).name for r in required if Requirement(r).marker is None]
    deps = base / "deps"
    _link_distributions(_closure(names), deps)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "normconf_test_deps.pth").write_text(f"{deps}\n")
    seconds["venv"] = time.perf_counter() - start

    project = base / "elsewhere"
    (project / "mypkg").mkdir(parents=True)
    (project / "mypkg" / "__init__.py").write_text("")
    (project / "mypkg" / "mod.py").write_text(THIRD_PARTY)
    (project / "mycases").mkdir()
    (project / "mycases" / "one.yaml").write_text(MY_CASES)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    return python, project, env, seconds


def test_the_wheel_holds_every_package_and_case_file(outside):
    """A subpackage left out of pyproject.toml's list would import here and not from an install."""
    python, *_ = outside
    site = next((python.parent.parent / "lib").glob("python*/site-packages"))
    for top in ("normconf", "adapters"):
        for init in (ROOT / top).rglob("__init__.py"):
            assert (site / init.relative_to(ROOT)).is_file(), f"{init.parent.relative_to(ROOT)} is not in the wheel"
    shipped = site / "normconf" / "shipped_cases"
    assert sorted(p.name for p in shipped.glob("*.yaml")) == sorted(p.name for p in (ROOT / "cases").glob("*.yaml"))
    assert (site / "normconf" / "schemas").is_dir()


def test_the_installed_copy_is_the_one_used(outside):
    python, project, env, _ = outside
    out = _run([str(python), "-c", "import normconf, adapters, normconf.plugin, numpy\n"
                "from normconf.shipped import shipped_cases\n"
                "print(normconf.__file__); print(adapters.__file__); print(shipped_cases())\n"
                "import importlib.util; print(importlib.util.find_spec('torch'))"], project, env)
    assert out.returncode == 0, out.stderr
    normconf_file, adapters_file, shipped, torch = out.stdout.split()
    site = str(python.parent.parent)
    assert normconf_file.startswith(site) and adapters_file.startswith(site), out.stdout
    assert shipped.startswith(site) and shipped.endswith("normconf/shipped_cases")
    assert not shipped.startswith(str(ROOT)) and not normconf_file.startswith(str(ROOT))
    assert torch == "None"  # only NumPy: the framework of the adapters under test


def test_pyargs_normconf_runs_the_shipped_cases_against_a_third_party_adapter(outside):
    python, project, env, seconds = outside
    start = time.perf_counter()
    proc = _run([str(python), "-m", "pytest", "--pyargs", "normconf", "--adapter", "mypkg.mod:MyNorm",
                 "--adapters", "my-norm", "-p", "no:cacheprovider", "-q", "-rs"], project, env)
    seconds["run"] = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Traceback" not in out
    doc = json.loads((project / "reports" / "conformance.json").read_text())
    results = doc["results"]
    # every shipped instance norm case ran on the adapter; the other ops are listed once, not skipped
    from normconf.cases import load_paths

    shipped, _ = load_paths([ROOT / "cases"])
    instance = {c.key for c in shipped if c.op == "instance_norm" and "large" not in c.tags}
    assert {r["case"] for r in results} == instance
    assert {r["adapter"] for r in results} == {"my-norm"}
    statuses = {r["status"] for r in results}
    assert statuses <= {"pass", "unsupported", "expected"}, sorted(statuses)
    assert sum(r["status"] == "pass" for r in results) > 0.8 * len(results)
    ops = {e["op"] for e in doc["not_run"] if e["adapter"] == "my-norm"}
    assert ops == {"batch_norm", "layer_norm", "group_norm", "normalize", "channel_stats", "rms_norm"}
    assert all(e["status"] == "unsupported" and "no API" in e["reason"] for e in doc["not_run"])
    # the built-ins of a machine without torch, TensorFlow, JAX: unavailable, said once in the header
    env_adapters = doc["environment"]["adapters"]
    assert env_adapters["torch"]["available"] is False and env_adapters["numpy"]["available"] is True
    assert doc["environment"]["case_paths"] == [str(next((python.parent.parent / "lib").glob("python*/site-packages"))
                                                     / "normconf" / "shipped_cases")]
    print(f"adoption: wheel {seconds['wheel']:.1f} s, venv {seconds['venv']:.1f} s, "
          f"{len(results)} shipped cases {seconds['run']:.1f} s")


def test_a_failure_reproduces_from_that_folder(outside):
    python, project, env, _ = outside
    proc = _run([str(python), "-m", "pytest", "--pyargs", "normconf", "--adapter", "mypkg.mod:WrongDivisor",
                 "--adapters", "my-norm-n1", "-k", "seeds", "-p", "no:cacheprovider", "-q",
                 "--report-dir", str(project / "n1")], project, env)
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "MISMATCH: seeds/" in proc.stdout and "explanation:" in proc.stdout
    line = next(t.strip() for t in proc.stdout.splitlines() if t.strip().startswith("pytest ") and "my-norm-n1" in t)
    argv = shlex.split(line)[1:]
    # the shipped case file is outside the rootdir: the line names it by its installed path
    assert argv[0].startswith(str(python.parent.parent)) and "::seeds/" in argv[0], line
    again = _run([str(python), "-m", "pytest", *argv, "-p", "no:cacheprovider", "-q",
                  "--report-dir", str(project / "again")], project, env)
    assert again.returncode == 1 and "1 failed" in again.stdout, again.stdout[-3000:] + again.stderr[-2000:]


def test_cases_dir_with_a_space_and_the_command_line_tool(outside):
    python, project, env, _ = outside
    proc = _run([str(python), "-m", "pytest", "--cases", "mycases", "--adapter", "mypkg.mod:MyNorm",
                 "--adapters", "my-norm", "-p", "no:cacheprovider", "-v", "--report-dir", str(project / "mine")],
                project, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "mycases/one.yaml::one/mine[my-norm] PASSED" in proc.stdout
    listed = _run([str(python.parent / "normconf"), "list", "--adapter", "mypkg.mod:MyNorm"], project,
                  dict(env, PYTHONPATH=str(project)))
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "my-norm" in listed.stdout and "seeds/blog_2x3x5x5_biased" in listed.stdout

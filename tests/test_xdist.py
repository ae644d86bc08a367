"""The JSON report is the same from a serial run and from pytest-xdist (-n 2)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("xdist", reason="pytest-xdist is needed for -n")
ROOT = Path(__file__).resolve().parents[1]
CASES = """
cases:
  - id: inorm
    op: instance_norm
    input: {shape: [2, 3, 4, 4], generator: {dist: normal, seed: 1}}
    matrix: {input.dtype: [float64, float32, float16], input.layout: [channels_first, channels_last]}
  - id: bnorm
    op: batch_norm
    input: {shape: [4, 3, 5], generator: {dist: normal, mean: 1.0, seed: 2}}
    params: {steps: 2, variance: unbiased}
  - id: stats
    op: channel_stats
    input: {shape: [4, 2, 3, 3], dtype: float64, generator: {dist: uniform, seed: 3}}
    matrix: {params.method: [pooled, per_image_mean]}
"""


def run(tmp_path, name, *extra):
    out = tmp_path / name
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "normconf.plugin",
           "--cases", str(tmp_path / "cases"), "--adapters", "numpy,recipe-000-numpy,recipe-004-calculate-norm",
           "--report-dir", str(out), "--no-header", *extra, str(tmp_path / "cases")]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode in (0, 1), proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads((out / "conformance.json").read_text())


def test_serial_and_xdist_reports_agree(tmp_path):
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "mini.yaml").write_text(CASES)
    serial, parallel = run(tmp_path, "serial"), run(tmp_path, "xdist", "-n", "2")

    def key(doc):
        return [(r["case"], r["adapter"], r["status"], json.dumps(r["outputs"], sort_keys=True),
                 json.dumps(r["explanation"], sort_keys=True)) for r in doc["results"]]

    # numpy runs the 9 cases; each recipe only those of its op (6 instance norms, 2 channel stats)
    assert len(serial["results"]) == 9 + 6 + 2
    assert key(serial) == key(parallel)
    assert serial["matrices"] == parallel["matrices"]
    # what got no items comes from the workers' collection, the same as the serial run's
    assert serial["not_run"] == parallel["not_run"]
    assert [(e["adapter"], e["op"], e["status"], e["cases"]) for e in serial["not_run"]] == [
        ("recipe-000-numpy", "batch_norm", "unsupported", 1), ("recipe-000-numpy", "channel_stats", "unsupported", 2),
        ("recipe-004-calculate-norm", "instance_norm", "unsupported", 6),
        ("recipe-004-calculate-norm", "batch_norm", "unsupported", 1)]
    assert any(len(m["labels"]) > 2 for m in serial["matrices"].values())


CRASHY = '''
import os
import signal

from adapters.numpy_adapter import NumpyAdapter


class Crashy(NumpyAdapter):
    """NumPy, except that it kills its own process (SIGSEGV) on the batch-norm case."""

    name = "crashy"

    def run(self, case, inputs):
        if case.op == "batch_norm":
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().run(case, inputs)
'''


def test_a_crashing_adapter_loses_only_its_own_result(tmp_path):
    """A segfault in a framework kills an xdist worker: that item is an error record in the JSON,
    xdist starts a new worker, and every other result is still there."""
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "mini.yaml").write_text(CASES)
    (tmp_path / "crashmod.py").write_text(CRASHY)
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "normconf.plugin",
           "--cases", str(tmp_path / "cases"), "--adapters", "numpy", "--adapter", "crashmod:Crashy",
           f"--report-dir={out}", "-n", "2", str(tmp_path / "cases")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "crashed while running" in proc.stdout
    doc = json.loads((out / "conformance.json").read_text())
    by = {(r["case"], r["adapter"]): r for r in doc["results"]}
    assert len(by) == 2 * 9  # nothing lost: 9 cases x (numpy, crashy)
    crashed = by[("mini/bnorm", "crashy")]
    assert crashed["status"] == "error" and "crashed" in crashed["reason"] and crashed["op"] == "batch_norm"
    assert by[("mini/bnorm", "numpy")]["status"] == "pass"
    assert {r["status"] for k, r in by.items() if k != ("mini/bnorm", "crashy")} == {"pass"}
    assert (out / "conformance.html").exists()


def test_n_alone_groups_items_by_framework(tmp_path):
    """`-n 2` without --dist runs each framework's items on one worker (loadgroup, frameworks packed
    by cost into one group per worker): numpy's on one, torch's on the other."""
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "mini.yaml").write_text(CASES)
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "normconf.plugin",
           "--cases", str(tmp_path / "cases"), "--adapters", "numpy,recipe-000-numpy,recipe-000-torch",
           f"--report-dir={tmp_path / 'r'}", "-n", "2", str(tmp_path / "cases")]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    framework = {"numpy": "numpy", "recipe-000-numpy": "numpy", "recipe-000-torch": "torch"}
    workers: dict[str, set[str]] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("[gw") and "::" in line:
            adapter = line.rsplit("[", 1)[-1].split("]")[0]
            workers.setdefault(framework[adapter], set()).add(line.split("]")[0].lstrip("["))
    assert set(workers) == {"numpy", "torch"}, proc.stdout[-3000:]
    assert all(len(w) == 1 for w in workers.values()) and workers["numpy"] != workers["torch"], workers


def test_frameworks_are_packed_by_cost_and_a_costly_one_is_split():
    from normconf.plugin import pack_frameworks

    items = [("jax", f) for f in "abcd" for _ in range(10)] + [("torch", "a")] * 40 + [("tensorflow", "b")] * 10
    # jax costs 90 of 120 s: more than a worker's share, so its files spread over both workers, while
    # torch and tensorflow each stay on one worker
    groups = pack_frameworks(items, 2, {"jax": 90.0, "torch": 20.0, "tensorflow": 10.0})
    assert len(set(groups.values())) == 2
    jax_groups = {groups[("jax", f)] for f in "abcd"}
    assert len(jax_groups) == 2 and ":" not in groups[("torch", "a")].split("+")[-1]
    # without a last run, items are counted: jax (40 items) is not above the share of 45
    counted = pack_frameworks(items, 2, {})
    assert len({counted[("jax", f)] for f in "abcd"}) == 1


FAR_AWAY = '''
from pathlib import Path

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """On each xdist worker, before normconf's own configure: hide the controller's run folder, as on
    another machine (xdist --tx ssh=...), where that path does not exist."""
    if hasattr(config, "workerinput"):
        (Path(config.workerinput["normconf_tmp"]) / "controller").unlink(missing_ok=True)
'''


def test_workers_on_other_machines_send_their_outputs_back(tmp_path):
    """Workers that cannot see the controller's run folder keep their outputs and send them back
    at the end: the matrices are the same as a serial run's."""
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "mini.yaml").write_text(CASES)
    (tmp_path / "faraway.py").write_text(FAR_AWAY)
    serial = run(tmp_path, "serial")
    env_path = os.pathsep.join([str(ROOT), str(tmp_path)])
    out = tmp_path / "remote"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "normconf.plugin", "-p", "faraway",
           "--cases", str(tmp_path / "cases"), "--adapters", "numpy,recipe-000-numpy,recipe-004-calculate-norm",
           f"--report-dir={out}", "-n", "2", str(tmp_path / "cases")]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=env_path))
    assert proc.returncode in (0, 1), proc.stdout[-2000:] + proc.stderr[-2000:]
    remote = json.loads((out / "conformance.json").read_text())
    assert remote["matrices"] and remote["matrices"] == serial["matrices"]

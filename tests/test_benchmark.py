"""benchmarks/run.py on a small matrix: it measures the floor and the suite on the same cases, counts
the same framework calls as the suite runs, and finds the xdist JSON equal to the serial one."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = """
cases:
  - id: inorm
    op: instance_norm
    input: {shape: [2, 3, 4, 4], generator: {dist: normal, seed: 1}}
    matrix: {input.dtype: [float64, float32]}
  - id: lnorm
    op: layer_norm
    input: {shape: [3, 5], generator: {dist: normal, mean: 2.0, seed: 2}}
  - id: stats
    op: channel_stats
    input: {shape: [4, 2, 3, 3], generator: {dist: uniform, seed: 3}}
"""


def test_benchmark_runs_floor_and_suite_on_the_same_matrix(tmp_path):
    pytest.importorskip("xdist")
    (tmp_path / "mini.yaml").write_text(CASES)
    out = tmp_path / "figures.json"
    adapters = "numpy,recipe-000-numpy"  # recipe-000 implements only instance_norm: 2 calls of its own
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "--cases", str(tmp_path / "mini.yaml"),
                           "--adapters", adapters, "--xdist", "2", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["floor"]["cases"] == 4 and figures["floor"]["calls"] == 4 + 2
    assert figures["floor"]["adapters"] == adapters.split(",")
    runs = figures["runs"]
    assert {"floor", "collect", "suite", "xdist"} <= set(runs)
    assert all(r["exit"] == 0 and r["wall_s"] > 0 and r["largest_process_gib"] > 0 for r in runs.values())
    assert runs["xdist"]["same_json_as_serial"] is True
    assert figures["overhead_ratio"] == pytest.approx(runs["suite"]["wall_s"] / runs["floor"]["wall_s"], abs=1e-3)
    assert "harness overhead: suite / floor =" in proc.stdout

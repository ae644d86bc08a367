"""Importing the engine imports neither a framework nor the adapters package; the registry then loads
the built-in adapters through their entry point, and asking every adapter whether it is available
still imports no framework (a fresh process)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "tensorflow", "jax", "jaxlib", "flax", "keras", "cupy", "torchvision", "labml_nn", "einops")


def test_engine_and_adapters_import_no_framework():
    code = (
        "import sys, json\n"
        "import normconf, normconf.cases, normconf.engine, normconf.oracle, normconf.plugin, normconf.report\n"
        "from normconf.adapter import registry\n"
        "engine_only = 'adapters' in sys.modules\n"
        "reg = registry()\n"
        "from normconf.adapter import no_cuda_driver\n"
        "# every adapter's availability (the report header asks for all of them); on a machine with an\n"
        "# NVIDIA driver the CUDA adapters must ask their framework, so only the CPU ones are checked there\n"
        "gpu = no_cuda_driver() is None\n"
        "info = {name: a.available() for name, a in reg.items() if a.device == 'cpu' or not gpu}\n"
        f"print(json.dumps({{'loaded': [m for m in {FRAMEWORKS!r} if m in sys.modules], 'adapters': sorted(reg),\n"
        "                  'adapters_by_engine': engine_only, 'adapters_by_registry': 'adapters' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["loaded"] == [], f"importing the engine loaded {got['loaded']}"
    assert not got["adapters_by_engine"], "importing the engine imported the adapters package"
    assert got["adapters_by_registry"], "the registry did not load the built-in adapters from the adapters package"
    assert {"numpy", "torch"} <= set(got["adapters"])

"""The floor of a conformance run: what no harness can avoid, measured with no harness.

    python benchmarks/floor.py [--cases PATH ...] [--adapters A,B] [--large] [--all-cases]

For the same cases and adapters as ``pytest``: import the frameworks (the modules the adapters
declare in ``requires``; anything they import lazily is imported inside the calls, as in the suite),
draw each case's inputs and
compute its float64 oracle once, and make every framework call (each adapter's ``run``: the user's
few lines of framework code, a thin translation of conventions). No comparison, no explanation, no
pytest, no report. Prints one JSON object: seconds per part and the number of calls.

Run by ``benchmarks/run.py``, which also times the interpreter's start and reads peak memory.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))



def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", action="append", default=[], help="case files or folders (default: cases/)")
    parser.add_argument("--adapters", default=None, help="comma list (default: every registered adapter)")
    parser.add_argument("--large", action="store_true", help="include the cases tagged large")
    parser.add_argument("--all-cases", action="store_true", help="every case also for adapters with a default subset")
    opt = parser.parse_args(argv)
    start = time.perf_counter()
    from normconf import oracle
    from normconf.adapter import registry
    from normconf.cases import load_paths
    from normconf.inputs import generate

    times = {"engine_import": time.perf_counter() - start}
    adapters = registry([])
    names = opt.adapters.split(",") if opt.adapters else list(adapters)
    chosen = [adapters[n] for n in names if adapters[n].available() is None]

    # the modules the adapters declare (Adapter.requires); what they import lazily besides (torchvision
    # for Normalize, flax.linen) is imported inside the framework calls, as in the suite
    t = time.perf_counter()
    modules = list(dict.fromkeys(m for a in chosen for m in a.requires))
    if "tensorflow" in modules and importlib.util.find_spec("triton") is not None:
        modules.insert(0, "triton")  # as the TensorFlow adapter does: tensorflow/tensorflow#124205
    for module in modules:
        __import__(module)
    times["framework_imports"] = time.perf_counter() - t

    t = time.perf_counter()
    cases, errors = load_paths([Path(p) for p in opt.cases] or [ROOT / "cases"])
    cases = [c for c in cases if opt.large or "large" not in c.tags]
    times["case_loading"] = time.perf_counter() - t

    times.update(inputs=0.0, oracle=0.0, framework_calls=0.0)
    calls = raised = 0
    for case in cases:
        t = time.perf_counter()
        inputs = generate(case)
        times["inputs"] += time.perf_counter() - t
        t = time.perf_counter()
        oracle.reference(case, inputs)
        times["oracle"] += time.perf_counter() - t
        for adapter in chosen:
            # as pytest: an adapter with a default subset (the compiled twins) runs its tagged cases only;
            # its calls include the compilations, the floor of a compiled framework call
            if adapter.unsupported(case) or not (opt.all_cases or adapter.in_default_subset(case)):
                continue
            defaults = adapter.defaults_for(case)
            run_case = case.with_params(**defaults) if defaults else case
            t = time.perf_counter()
            try:
                adapter.run(run_case, inputs)
            except Exception:  # the suite reports these as errors or unsupported; the call still cost time
                raised += 1
            times["framework_calls"] += time.perf_counter() - t
            calls += 1
    times["total_in_process"] = time.perf_counter() - start
    return {"cases": len(cases), "adapters": [a.name for a in chosen], "calls": calls, "raised": raised,
            "seconds": {k: round(v, 3) for k, v in times.items()}}


if __name__ == "__main__":
    print(json.dumps(main()))

"""Benchmark: the conformance matrix under pytest against its floor, measured in the same run.

    .venv/bin/python benchmarks/run.py [--adapters A,B] [--cases PATH] [--large] [--all-cases] [--xdist N] [--out FILE]

Runs, each in a fresh process, one after the other:

1. ``floor``: ``benchmarks/floor.py``: framework imports + inputs + the float64 oracle + every bare
   framework call, no harness;
2. ``collect``: ``pytest --collect-only`` of the same matrix;
3. ``suite``: ``pytest`` on the same matrix, serially (``-p no:xdist``), writing its JSON and HTML
   reports to a temporary folder;
4. with ``--xdist N``: the same under ``pytest -n N`` (its report folder starting with the serial
   run's report, the last run whose times balance the workers), and whether its JSON equals the
   serial one (results and matrices, timings aside).

For each: wall time (from process start to exit) and peak memory: the largest resident set of any
one process, and the peak of the sum over the process tree (sampled every 0.2 s; the same as the
first without xdist). The harness overhead is ``suite wall / floor wall`` (goal: at most 1.25).
Prints a table and writes every figure to ``--out`` (JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (Linux /proc)."""
    parent, rss = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            parent[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += [p for p, pp in parent.items() if pp == pid]
    return total


def measure(cmd: list[str], env=None) -> dict:
    """Run ``cmd``; its wall time, exit code, output, largest process and peak tree memory."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.2):
            if sys.platform == "linux":
                peak[0] = max(peak[0], _tree_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    largest = usage.ru_maxrss * 1024  # kilobytes on Linux: the largest of the process and its waited-for children
    return {"cmd": " ".join(cmd), "wall_s": round(wall, 2), "exit": proc.returncode,
            "largest_process_gib": round(largest / 2**30, 2),
            "tree_peak_gib": round(max(peak[0], largest) / 2**30, 2), "output": output}


def comparable(path: Path) -> dict:
    """The parts of a conformance.json that must not depend on how the run was scheduled."""
    doc = json.loads(path.read_text())
    drop = ("seconds", "explain_seconds")
    results = sorted(({k: v for k, v in r.items() if k not in drop} for r in doc["results"]),
                     key=lambda r: (r["case"], r["adapter"]))
    return {"results": results, "matrices": doc["matrices"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", default=None, help="comma list (default: every registered adapter)")
    parser.add_argument("--cases", action="append", default=[], help="case files or folders (default: cases/)")
    parser.add_argument("--large", action="store_true", help="include the 1 GiB cases tagged large")
    parser.add_argument("--all-cases", action="store_true",
                        help="every case for the adapters with a default subset (the compiled twins, deployment)")
    parser.add_argument("--xdist", type=int, default=0, metavar="N", help="also run pytest -n N and compare")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    opt = parser.parse_args(argv)
    py = sys.executable
    select = ((["--adapters", opt.adapters] if opt.adapters else []) + (["--large"] if opt.large else [])
              + (["--all-cases"] if opt.all_cases else []))
    paths = opt.cases or ["cases"]
    work = Path(tempfile.mkdtemp(prefix="normconf-bench-"))
    env = dict(os.environ, PYTHONHASHSEED="0")
    runs = {}

    print(f"normconf benchmark on {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}",
          flush=True)
    floor_cmd = [py, "benchmarks/floor.py"] + [a for p in paths for a in ("--cases", p)] + select
    runs["floor"] = measure(floor_cmd, env)
    floor = json.loads(runs["floor"]["output"].strip().splitlines()[-1])
    # --cases=P makes the plugin collect P (a case file outside cases/ too); P itself keeps the engine tests out
    # -c/-p: the repository's settings and plugin also for case files outside it
    pytest = ([py, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p", "normconf.plugin",
               "-p", "no:cacheprovider", "-q"] + select + [f"--cases={p}" for p in paths] + paths)
    runs["collect"] = measure(pytest + ["--collect-only"], env)
    runs["suite"] = measure(pytest + ["-p", "no:xdist", f"--report-dir={work / 'serial'}"], env)
    if opt.xdist:
        # as in a repository where reports/ holds the last run: its time per framework balances the
        # workers' groups (normconf.plugin.pack_frameworks); the run overwrites it
        (work / "xdist").mkdir(parents=True, exist_ok=True)
        serial_report = work / "serial" / "conformance.json"
        if serial_report.exists():
            (work / "xdist" / "conformance.json").write_bytes(serial_report.read_bytes())
        runs["xdist"] = measure(pytest + ["-n", str(opt.xdist), f"--report-dir={work / 'xdist'}"], env)
        reports = [work / name / "conformance.json" for name in ("serial", "xdist")]
        runs["xdist"]["same_json_as_serial"] = (all(p.exists() for p in reports)
                                                and comparable(reports[0]) == comparable(reports[1]))

    print(f"\n{'run':<9} {'wall s':>8} {'largest GiB':>12} {'tree GiB':>9}  exit")
    for name, r in runs.items():
        print(f"{name:<9} {r['wall_s']:>8.1f} {r['largest_process_gib']:>12.2f} {r['tree_peak_gib']:>9.2f}  "
              f"{r['exit']}")
    s = floor["seconds"]
    print("\nfloor parts (s): " + ", ".join(f"{k} {v:.1f}" for k, v in s.items()))
    print(f"floor: {floor['cases']} cases, {floor['calls']} framework calls ({floor['raised']} raised), "
          f"adapters {','.join(floor['adapters'])}")
    ratio = runs["suite"]["wall_s"] / runs["floor"]["wall_s"]
    print(f"harness overhead: suite / floor = {ratio:.3f} (goal <= 1.25)")
    summary = {"machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform()},
               "floor": floor, "overhead_ratio": round(ratio, 3),
               "runs": {k: {kk: vv for kk, vv in v.items() if kk != "output"} for k, v in runs.items()}}
    tail = runs["suite"]["output"].strip().splitlines()[-1:]
    print(f"suite: {tail[0] if tail else ''}")
    if opt.xdist:
        speedup = runs["suite"]["wall_s"] / runs["xdist"]["wall_s"]
        summary["xdist_speedup"] = round(speedup, 3)
        print(f"pytest -n {opt.xdist}: {speedup:.2f}x faster than serial; same JSON as serial: "
              f"{runs['xdist']['same_json_as_serial']}")
    if opt.out:
        Path(opt.out).write_text(json.dumps(summary, indent=1))
        print(f"figures: {opt.out}")
    bad = [n for n, r in runs.items() if r["exit"] not in (0, 1)]  # 1: a conformance item failed
    if bad:
        print(f"runs that did not complete: {bad}; their output:\n" +
              "\n".join(runs[n]["output"][-3000:] for n in bad), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Simulated machines: the conformance matrix under settings that change numerics as another CPU would.

    .venv/bin/python tools/profiles.py [--profiles NAME,...] [--cases PATH]... [--adapters A,B]
                                       [-n N] [--out FILE] [--work DIR] [--list] [-- PYTEST ARGS]

A float32 sum's rounding error depends on the order of its additions, and that order depends on the
machine: the vector width (SSE 128 bits, AVX2 256, AVX-512 512), whether a*b+c is fused (FMA), the
kernel a library dispatches to, and the number of threads that split the reduction. A verdict
(``pass``, ``expected``, ...) must hold on every machine. Without another machine, each *profile*
below sets what the frameworks themselves document for choosing their kernels, and the whole
matrix runs again in a fresh pytest process (``--report-dir`` per profile, under ``--work``). The
per-item ``status`` of each profile's ``conformance.json`` is compared with the ``default``
profile's (always run first: it is the reference). The tool prints per profile the items run, the
items whose status differs (with the largest error / tolerance ratio and the verdict's ``margin``
in both runs) and the items whose numbers moved without changing status, then one summary table;
it exits 1 when a verdict differs anywhere, 2 when a profile could not run (a framework rejected
its setting, pytest crashed), 0 otherwise. A flip between ``pass`` and ``expected`` under one
``platform_dependent`` known entry is listed apart and does not fail: that entry accepts either
outcome by design. The case paths are copied to ``--work``/_cases first, so that every profile runs
the same cases even if they are edited meanwhile (the code is not copied: do not edit it during a
run); an item whose case definition still differs between two reports is not compared.

A profile that changes one framework runs only the adapters built on it (``framework`` in the
default run's environment); NumPy profiles run everything, because the oracle and the input
rounding are NumPy too. The numerics variables in your own environment are dropped for every
profile, ``default`` included, so each profile differs from the reference by its settings only.

Profiles (``--list`` shows which ones apply on this machine and why the others do not):

``xla-avx2`` / ``xla-avx`` / ``xla-sse4_2``: ``XLA_FLAGS=--xla_cpu_max_isa=AVX2`` (``AVX``, ``SSE4_2``),
    the newest instruction set XLA:CPU may generate code for (values SSE4_2, AVX, AVX2, AVX512, ...;
    https://github.com/openxla/xla/blob/main/xla/debug_options_flags.cc, JAX's XLA_FLAGS:
    https://docs.jax.dev/en/latest/xla_flags.html). Runs the jax and tensorflow adapters (TensorFlow
    reads XLA_FLAGS too; its adapter runs eagerly, so XLA does not compile its ops). jaxlib 0.10.2
    aborts the process on an unknown flag name but only warns on an unknown ISA value; the tool
    checks that JAX starts under the flags before running. ``AVX`` is a CPU without FMA (Sandy
    Bridge): codegen changes (the dumped kernels use 128-bit registers in part, and no FMA).
    ``xla-sse4_2`` is not run by default: with it, jaxlib 0.10.2 cannot compile a float16
    conversion (``LLVM compilation error: Symbols not found: [ __extendhfsf2 ]``), so every float16
    JAX item would be an ``error`` that says nothing about numerics.
``torch-default`` / ``torch-avx2`` / ``torch-avx512``: ``ATEN_CPU_CAPABILITY``, the kernel set
    ATen's dispatcher picks (``torch.backends.cpu.get_cpu_capability()`` reports it;
    https://pytorch.org/docs/stable/backends.html#torch-backends-cpu; read in
    https://github.com/pytorch/pytorch/blob/main/aten/src/ATen/native/DispatchStub.cpp). ``default``
    is the non-vectorized build of each kernel; avx2/avx512 only where the CPU has them.
``tf-no-onednn``: ``TF_ENABLE_ONEDNN_OPTS=0``, TensorFlow's own kernels instead of oneDNN's
    (https://www.tensorflow.org/install/pip, the message TensorFlow prints at import).
``tf-onednn-avx2``: ``ONEDNN_MAX_CPU_ISA=AVX2``, oneDNN's newest ISA
    (https://uxlfoundation.github.io/oneDNN/dev_guide_cpu_dispatcher_control.html); on CPUs with AVX-512.
``numpy-avx2`` / ``numpy-baseline``: ``NPY_DISABLE_CPU_FEATURES``, NumPy's dispatched targets to
    switch off (https://numpy.org/doc/stable/reference/simd/build-options.html#runtime-dispatch).
    The names are NumPy's (``numpy._core._multiarray_umath.__cpu_dispatch__``, e.g. X86_V3 X86_V4
    AVX512_ICL AVX512_SPR in NumPy 2.4) and found per machine: ``numpy-avx2`` switches off the
    targets above AVX2 that the CPU has, ``numpy-baseline`` all of them. NumPy refuses a baseline
    feature (RuntimeError at import) and ignores a name it does not dispatch (ImportWarning): the
    check runs with ImportWarning as an error.
``threads-1``: one thread everywhere: ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
    ``OPENBLAS_NUM_THREADS`` (torch's intra-op pool:
    https://pytorch.org/docs/stable/notes/cpu_threading_torchscript_inference.html),
    ``TF_NUM_INTRAOP_THREADS``/``TF_NUM_INTEROP_THREADS`` (TensorFlow's pools,
    https://www.tensorflow.org/api_docs/python/tf/config/threading), and
    ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` (the same file as above). The
    ``intra_op_parallelism_threads=1`` often pasted after it is no XLA flag (no ``--``) and is left out.
``one-core``: ``taskset -c <first CPU>``: the process may use one CPU, as in a one-CPU container;
    every framework sizes its pools from the affinity mask
    (https://man7.org/linux/man-pages/man1/taskset.1.html).
``xdist``: the scheduling: ``pytest -n 2`` against a serial default, serial against ``-n N``
    (https://pytest-xdist.readthedocs.io/); each item still runs in one process, so a difference
    here is state leaking between items.

Extra arguments after ``--`` (or any this parser does not know) go to every pytest run, e.g.
``-- -k "float16 or offset"``.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from normconf.report import NUMERICS_ENV, environment  # noqa: E402  (imports NumPy, no framework)

PY = sys.executable
REFERENCE = "default"


@dataclasses.dataclass
class Profile:
    """One simulated machine: what it sets, which adapters it can change, and how to check it took."""

    name: str
    doc: str
    env: dict = dataclasses.field(default_factory=dict)
    frameworks: tuple | None = None  # adapters whose framework is one of these; None: all
    pytest_args: tuple = ()
    wrapper: tuple = ()  # a command the pytest process runs under (taskset)
    check: str | None = None  # Python code printing, in one line, what the framework sees
    default: bool = True  # run without --profiles
    why_not: str | None = None  # why it cannot run (or would equal the reference) on this machine

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.env.items()] + list(self.wrapper) + list(self.pytest_args)
        return " ".join(parts) or "(nothing set)"


# ------------------------------------------------------------------------------------------ the machine

def machine() -> dict:
    """This machine as the profiles need it: CPU flags, usable CPUs, NumPy's dispatch targets."""
    cpu = environment({})["cpu"]
    info = {"cpu": cpu, "x86": platform.machine().lower() in ("x86_64", "amd64", "i686", "i386"),
            "taskset": shutil.which("taskset") if sys.platform == "linux" else None,
            "xdist": importlib.util.find_spec("xdist") is not None, "numpy": None}
    # in a clean child: this process's NumPy may itself run under NPY_DISABLE_CPU_FEATURES
    code = ("import json\ntry:\n from numpy._core import _multiarray_umath as m\nexcept ImportError:\n"
            " from numpy.core import _multiarray_umath as m\n"
            "print(json.dumps({'dispatch': list(m.__cpu_dispatch__), 'baseline': list(m.__cpu_baseline__),"
            " 'features': {k: bool(v) for k, v in m.__cpu_features__.items()}}))")
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=clean_env(), cwd=ROOT)
    if proc.returncode == 0:
        info["numpy"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return info


def clean_env(extra: dict | None = None) -> dict:
    """The environment of a profile: this one without any numerics variable, plus the profile's."""
    env = {k: v for k, v in os.environ.items() if k not in NUMERICS_ENV}
    env["PYTHONHASHSEED"] = "0"
    env.update(extra or {})
    return env


def profile_env(p: Profile, folder: Path) -> dict:
    """The environment of profile ``p``'s pytest run into ``folder``: :func:`clean_env` with the
    profile's variables, and a torch.compile kernel cache of its own. Inductor's on-disk cache does
    not key on ATEN_CPU_CAPABILITY: a kernel built under AVX-512 and served under avx2 gave inf (under
    `default`, a C++ compile error). A simulated machine, like a real one, starts without this
    machine's kernels (README, "Simulated machines")."""
    return clean_env({**p.env, "TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor-cache")})


def _above_avx2(name: str) -> bool:
    return name.upper().startswith(("AVX512", "X86_V4", "AMX"))


def profiles(m: dict, n: int = 0) -> list[Profile]:
    """Every profile, with ``why_not`` filled in for this machine; the reference first."""
    flags = set(m["cpu"].get("flags") or [])
    x86, usable = m["x86"], m["cpu"].get("usable") or 1
    not_x86 = None if x86 else f"an x86 setting; this CPU is {platform.machine()}"
    avx512 = {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags
    torch_check = ("import torch; print(f'torch dispatches to {torch.backends.cpu.get_cpu_capability()}, "
                   "{torch.get_num_threads()} threads')")
    threads_check = ("import os, importlib.util as u\n"
                     "n = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()\n"
                     "t = __import__('torch').get_num_threads() if u.find_spec('torch') else '-'\n"
                     "print(f'{n} usable CPU(s), torch {t} thread(s)')")
    xla_check = ("import jax, jax.numpy as jnp; jnp.ones(3).sum().block_until_ready(); "
                 "print('XLA started under XLA_FLAGS on', jax.devices()[0].platform)")
    tf_check = ("from tensorflow.python.util import _pywrap_util_port as p; "
                "print('TensorFlow oneDNN ops', 'on' if p.IsMklEnabled() else 'off')")
    out = [Profile(REFERENCE, "the frameworks' own choice on this machine (the reference)",
                   pytest_args=(("-n", str(n)) if n else ("-p", "no:xdist")))]

    def xla(isa, need, default=True, doc=""):
        why = not_x86 or (None if need in flags else f"the CPU has no {need}: XLA generates at most {isa} here already")
        return Profile(f"xla-{isa.lower()}", f"XLA:CPU generates code for at most {isa}{doc}",
                       {"XLA_FLAGS": f"--xla_cpu_max_isa={isa}"}, ("jax", "tensorflow"), check=xla_check,
                       default=default, why_not=why)

    out += [xla("AVX2", "avx512f", doc=" (256-bit vectors, FMA): an AVX2 machine"),
            xla("AVX", "avx2", doc=" (no FMA): a Sandy Bridge"),
            xla("SSE4_2", "avx", default=False,
                doc=" (128-bit): not by default, jaxlib 0.10.2 then cannot convert float16 (__extendhfsf2)")]
    for cap, need in (("default", None), ("avx2", "avx2"), ("avx512", "avx512")):
        why = None
        if need:
            has = avx512 if need == "avx512" else need in flags
            why = not_x86 or (None if has else f"the CPU has no {need}")
        out.append(Profile(f"torch-{cap}", f"ATen kernels built for {cap}", {"ATEN_CPU_CAPABILITY": cap},
                           ("torch",), check=torch_check, why_not=why))
    out.append(Profile("tf-no-onednn", "TensorFlow's own kernels instead of oneDNN's",
                       {"TF_ENABLE_ONEDNN_OPTS": "0"}, ("tensorflow",), check=tf_check))
    out.append(Profile("tf-onednn-avx2", "oneDNN kernels for at most AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2"},
                       ("tensorflow",), check=tf_check,
                       why_not=not_x86 or (None if "avx512f" in flags
                                           else "the CPU has no AVX-512: oneDNN already stops at AVX2")))
    npy = m.get("numpy")
    for name, pick, doc in (("numpy-avx2", _above_avx2, "NumPy without its dispatched targets above AVX2"),
                            ("numpy-baseline", lambda _: True, "NumPy's baseline loops only (no dispatched target)")):
        off, why = [], "NumPy's dispatch targets could not be read"
        if npy:
            off = [t for t in npy["dispatch"] if pick(t) and npy["features"].get(t)]
            targets = " ".join(npy["dispatch"]) or "(none)"
            why = None if off else f"this CPU runs none of NumPy's dispatch targets {targets} that it would switch off"
        check = ("import os\ntry:\n from numpy._core import _multiarray_umath as m\nexcept ImportError:\n"
                 " from numpy.core import _multiarray_umath as m\n"
                 "d = os.environ['NPY_DISABLE_CPU_FEATURES'].split()\n"
                 "print('NumPy dispatch targets off:', ' '.join(t for t in d if not m.__cpu_features__.get(t)))")
        out.append(Profile(name, doc, {"NPY_DISABLE_CPU_FEATURES": " ".join(off)} if off else {}, None,
                           check=check, why_not=why))
    one = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}
    out.append(Profile("threads-1", "one thread in every framework", one, None, check=threads_check,
                       why_not=None if usable > 1 else "this process may use one CPU only: the default is one thread"))
    first = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    out.append(Profile("one-core", "one usable CPU (a one-CPU container)", {}, None,
                       wrapper=("taskset", "-c", str(first)),
                       check=threads_check,
                       why_not=("taskset is Linux's (util-linux) and was not found" if not m["taskset"]
                                else None if usable > 1 else "this process may use one CPU only already")))
    out.append(Profile("xdist", "serial run" if n else "pytest -n 2 (items spread over 2 processes)", {}, None,
                       pytest_args=(("-p", "no:xdist") if n else ("-n", "2")),
                       why_not=None if m["xdist"] else "pytest-xdist is not installed"))
    return out


# ------------------------------------------------------------------------------------------ comparison

def item_ratio(result: dict):
    """The largest error / tolerance over a result's outputs (``None`` when it has none)."""
    best = None
    for metrics in (result.get("outputs") or {}).values():
        r = (metrics or {}).get("ratio")
        if r is None:
            continue
        try:
            r = float(r)
        except (TypeError, ValueError):
            continue
        if math.isnan(r):
            return r
        best = r if best is None else max(best, r)
    return best


def _numbers(result: dict) -> dict:
    return {name: tuple(str((m or {}).get(k)) for k in ("max_abs", "max_ulp"))
            for name, m in (result.get("outputs") or {}).items()}


def _definition(doc: dict, result: dict) -> str:
    """What defines an item apart from the machine: its case as written (not the input statistics,
    which the profile's NumPy computes, nor the tolerance derived from them)."""
    case = (doc.get("cases") or {}).get(result["case"]) or {}
    given = {k: case.get(k) for k in ("op", "shape", "dtype", "layout", "params")}
    given["input"] = {k: v for k, v in (case.get("input") or {}).items() if k in ("generator", "data")}
    return json.dumps(given, sort_keys=True, default=str)


def _entry(result: dict):
    """The known entry a result names, without what this machine observed; None if it names none."""
    k = result.get("known")
    return None if not k else tuple(k.get(f) for f in ("index", "cause", "reason", "platform_dependent"))


def _either_accepted(a: dict, b: dict) -> bool:
    """A flip between a pass and the explained mismatch that one platform_dependent entry accepts."""
    ka = _entry(a)
    return (ka is not None and ka[3] is True and ka == _entry(b)
            and {a.get("status"), b.get("status")} <= {"pass", "expected"})


def _log_distance(x):
    """|log x|: how far an error / tolerance (or margin) is from 1, the point where a verdict flips."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return abs(math.log(x)) if x > 0 and math.isfinite(x) else None


def compare(reference: dict, other: dict) -> dict:
    """Per-item comparison of two conformance.json documents (``other`` against ``reference``).

    ``items``: results in ``other``; ``compared``: those also in the reference with the same case
    definition; ``differing``: one record per item whose status differs (case, adapter, both
    statuses, ratios, margins and reasons); ``accepted``: the same for flips between ``pass`` and
    ``expected`` under one ``platform_dependent`` known entry, which accepts either outcome by
    design (they do not fail the tool); ``moved``: items with the same status whose max_abs or
    max_ulp changed, and ``moved_closest``, the moved item that ends closest to a flip (its margin, or
    else its error / tolerance, nearest 1 on a log scale); ``only_here``: items the
    reference lacks; ``changed``: items whose case, or the known entry both results name, was edited
    between the two runs (not compared: that difference would not be the machine's).

    >>> ref = {"results": [{"case": "f/c", "adapter": "a", "status": "pass", "outputs": {"y": {"ratio": 0.9}}}]}
    >>> new = {"results": [{"case": "f/c", "adapter": "a", "status": "fail", "outputs": {"y": {"ratio": 1.2}}}]}
    >>> d = compare(ref, new); d["compared"], [(x["reference"], x["status"], x["ratio"]) for x in d["differing"]]
    (1, [('pass', 'fail', 1.2)])
    """
    ref = {(r["case"], r["adapter"]): r for r in reference.get("results") or []}
    results = other.get("results") or []
    out = {"items": len(results), "compared": 0, "differing": [], "accepted": [], "moved": 0,
           "moved_closest": None, "only_here": [], "changed": []}
    for r in results:
        key = (r["case"], r["adapter"])
        base = ref.get(key)
        if base is None:
            out["only_here"].append(f"{key[0]}[{key[1]}]")
            continue
        edited_entry = None not in (_entry(base), _entry(r)) and _entry(base) != _entry(r)
        if edited_entry or _definition(reference, base) != _definition(other, r):
            out["changed"].append(f"{key[0]}[{key[1]}]")
            continue
        out["compared"] += 1
        a, b = item_ratio(base), item_ratio(r)
        if base.get("status") != r.get("status"):
            record = {"case": key[0], "adapter": key[1], "reference": base.get("status"),
                      "status": r.get("status"), "reference_ratio": a, "ratio": b,
                      "reference_margin": base.get("margin"), "margin": r.get("margin"),
                      "reference_reason": base.get("reason"), "reason": r.get("reason")}
            out["accepted" if _either_accepted(base, r) else "differing"].append(record)
        elif _numbers(base) != _numbers(r):
            out["moved"] += 1
            ma, mb = base.get("margin"), r.get("margin")
            closeness = _log_distance(mb if isinstance(mb, (int, float)) else b)
            best = out["moved_closest"]
            if closeness is not None and (best is None or closeness < best["distance"]):
                out["moved_closest"] = {"case": key[0], "adapter": key[1], "reference": base.get("status"),
                                        "status": r.get("status"), "reference_ratio": a, "ratio": b,
                                        "reference_margin": ma, "margin": mb, "distance": closeness}
    return out


def exit_code(summary: list[dict]) -> int:
    """2 when a profile could not run, else 1 when a verdict differs, else 0."""
    if any(p.get("error") for p in summary):
        return 2
    return 1 if any(p.get("differing") for p in summary) else 0


# ------------------------------------------------------------------------------------------ running

def _side(status, ratio, margin) -> str:
    parts = ([f"error/tolerance {ratio:.3g}"] if ratio is not None else []) + (
        [f"margin {margin:.3g}"] if isinstance(margin, (int, float)) else [])
    return f"{status} ({', '.join(parts)})" if parts else str(status)


def flip_text(d: dict) -> str:
    """``case[adapter]: reference status (ratio, margin) -> status (ratio, margin)``."""
    return (f"{d['case']}[{d['adapter']}]: {_side(d['reference'], d['reference_ratio'], d.get('reference_margin'))}"
            f" -> {_side(d['status'], d['ratio'], d.get('margin'))}")


def snapshot(paths: list[str], folder: Path) -> list[str]:
    """Copies of the case paths as they are now, so that every profile runs the same cases even if
    they are edited during the run (with the known_discrepancies.yaml beside a single file)."""
    shutil.rmtree(folder, ignore_errors=True)
    copies = []
    for i, given in enumerate(paths):
        src = Path(given) if Path(given).is_absolute() else ROOT / given
        dest = folder / str(i) / src.name
        if src.is_dir():
            shutil.copytree(src, dest)
        elif src.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
            if (src.parent / "known_discrepancies.yaml").is_file():
                shutil.copy2(src.parent / "known_discrepancies.yaml", dest.parent / "known_discrepancies.yaml")
        else:
            raise SystemExit(f"--cases {given}: no such file or folder")
        copies.append(str(dest))
    return copies


def _elapsed(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s" if seconds >= 60 else f"{seconds:.1f}s"


def run_check(p: Profile) -> tuple[str | None, str | None]:
    """``(what the framework reports, error)``: the profile's check run under its settings."""
    if not p.check:
        return None, None
    cmd = list(p.wrapper) + [PY, "-W", "error::ImportWarning", "-c", p.check]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(p.env), cwd=ROOT)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    if proc.returncode != 0:
        # the message: from the last line that names an error (a Python exception, an absl FATAL
        # "F1130 ... Unknown flag in XLA_FLAGS") through its continuation lines (NumPy's run over three)
        named = [i for i, ln in enumerate(lines) if re.search(r"(Error|Warning)\b|Unknown|^F\d{4} ", ln)]
        at = max(named or [len(lines) - 1])
        why = " ".join(ln.strip() for ln in lines[at:at + 3] if not ln.startswith(("***", "  File"))) if lines else ""
        return None, f"the framework refused {p.describe()}: {why[:400]} (exit {proc.returncode})"
    out = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return (out[-1].strip() if out else ""), None


def run_pytest(p: Profile, folder: Path, base_cmd: list[str], adapters: str | None, label: str,
               reference: Path | None = None) -> dict:
    """One pytest run of the profile into ``folder``; its record (without the comparison).

    Under ``-n`` the folder starts with the reference's report: its times per framework balance
    the xdist workers (normconf.plugin), and the run overwrites it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / "conformance.json"
    report.unlink(missing_ok=True)
    cmd = list(p.wrapper) + base_cmd + [f"--report-dir={folder}"] + list(p.pytest_args)
    if "-n" in cmd and reference is not None and reference.exists():
        shutil.copyfile(reference, report)
    started = time.time()
    if adapters:
        cmd += ["--adapters", adapters]
    log = folder / "pytest.log"
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=profile_env(p, folder))
        done = threading.Event()

        def heartbeat():
            while not done.wait(30):
                pct = re.findall(r"\[\s*(\d+)%\]", log.read_text(encoding="utf-8", errors="replace")[-4000:])
                print(f"    {label} {p.name}: {pct[-1] + '% of items, ' if pct else ''}"
                      f"{_elapsed(time.perf_counter() - start)}", flush=True)

        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()
        rc = proc.wait()
        done.set()
    record = {"seconds": round(time.perf_counter() - start, 1), "pytest_exit": rc, "report": str(report),
              "log": str(log), "command": " ".join(cmd)}
    tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    # pytest's own summary line ("3 failed, 40 passed in 9.1s"), which a crash after it does not hide
    done_line = [ln for ln in tail if re.search(r"\d+ (passed|failed|skipped|xfailed|errors?)\b.* in [\d.]+s", ln)]
    record["pytest_summary"] = (done_line or tail or [""])[-1].strip("= ")
    fresh = report.exists() and report.stat().st_mtime >= started
    if rc not in (0, 1) or not fresh:
        why = ("pytest collected nothing" if rc == 5
               else f"pytest exited {rc}" + ("" if fresh else " and wrote no conformance.json"))
        record["error"] = f"{why}; last lines of {log}:\n" + "\n".join(tail[-15:])
    return record


def scoped_adapters(p: Profile, reference: dict) -> tuple[str | None, str | None]:
    """``(--adapters value, why not run)`` for a profile that changes some frameworks only."""
    if p.frameworks is None:
        return None, None
    env_adapters = (reference.get("environment") or {}).get("adapters") or {}
    ran = {r["adapter"] for r in reference.get("results") or [] if r.get("status") != "unavailable"}
    names = sorted(a for a in ran if (env_adapters.get(a) or {}).get("framework") in p.frameworks)
    if not names:
        return None, f"no adapter of {', '.join(p.frameworks)} ran in the reference run"
    return ",".join(names), None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default=None, metavar="NAME,...",
                        help="profiles to run (default: every default profile that applies here)")
    parser.add_argument("--cases", action="append", default=[], metavar="PATH",
                        help="case files or folders, forwarded (default: cases/)")
    parser.add_argument("--adapters", default=None, metavar="A,B", help="forwarded to pytest")
    parser.add_argument("-n", type=int, default=0, metavar="N", help="run every profile under pytest -n N")
    parser.add_argument("--out", default=None, metavar="FILE", help="write the summary here as JSON")
    parser.add_argument("--work", default=str(ROOT / "reports" / "profiles"), metavar="DIR",
                        help="one report folder per profile here (default: reports/profiles)")
    parser.add_argument("--list", action="store_true", help="list the profiles and whether they apply here")
    opt, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]

    m = machine()
    every = profiles(m, opt.n)
    by_name = {p.name: p for p in every}
    if opt.list:
        for p in every:
            state = f"not here: {p.why_not}" if p.why_not else ("runs by default" if p.default else "on request")
            print(f"{p.name:<15} {p.describe():<60} {state}\n{'':<15} {p.doc}")
        return 0
    if opt.profiles:
        names = [s.strip() for s in opt.profiles.split(",") if s.strip()]
        unknown = [s for s in names if s not in by_name]
        if unknown:
            parser.error(f"--profiles: unknown {', '.join(unknown)}; known: {', '.join(by_name)}")
        chosen = [by_name[REFERENCE]] + [by_name[s] for s in names if s != REFERENCE]
    else:
        chosen = [p for p in every if p.default]

    stripped = {k: os.environ[k] for k in NUMERICS_ENV if k in os.environ}
    if stripped:
        print(f"note: every profile runs without your {', '.join(f'{k}={v}' for k, v in stripped.items())}")
    paths = opt.cases or ["cases"]
    work = Path(opt.work)
    copies = snapshot(paths, work / "_cases")
    # -c/-p: the repository's settings and plugin also for case files outside it; the paths keep
    # the engine tests (tests/) out
    base_cmd = ([PY, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p", "normconf.plugin",
                 "-p", "no:cacheprovider", "-q"] + [f"--cases={c}" for c in copies] + copies + extra)
    cpu = m["cpu"]
    print(f"simulated machines on {cpu.get('model')} ({' '.join(cpu.get('flags') or [])}; "
          f"{cpu.get('usable')} of {cpu.get('count')} CPUs): {len(chosen)} profiles, cases {' '.join(paths)}"
          + (f", adapters {opt.adapters}" if opt.adapters else "") + (f", pytest {' '.join(extra)}" if extra else ""),
          flush=True)

    summary, reference, start = [], None, time.perf_counter()
    for k, p in enumerate(chosen, 1):
        label = f"[{k}/{len(chosen)}]"
        rec = {"profile": p.name, "doc": p.doc, "env": p.env, "pytest_args": list(p.pytest_args),
               "wrapper": list(p.wrapper), "frameworks": list(p.frameworks) if p.frameworks else None}
        summary.append(rec)
        if p.why_not:
            rec["skipped"] = p.why_not
            print(f"{label} {p.name}: skipped: {p.why_not}", flush=True)
            continue
        adapters = opt.adapters
        if p.name != REFERENCE:
            if reference is None:
                rec["skipped"] = "the reference run failed"
                print(f"{label} {p.name}: skipped: {rec['skipped']}", flush=True)
                continue
            scoped, why = scoped_adapters(p, reference)
            if why:
                rec["skipped"] = why
                print(f"{label} {p.name}: skipped: {why}", flush=True)
                continue
            adapters = scoped or adapters
        rec["adapters"] = adapters
        seen, error = run_check(p)
        rec["check"] = seen
        print(f"{label} {p.name}: {p.describe()}" + (f"; {seen}" if seen else "")
              + (f"; adapters {adapters}" if adapters and adapters != opt.adapters else "")
              + f" (elapsed {_elapsed(time.perf_counter() - start)})", flush=True)
        if error:
            rec["error"] = error
            print(f"    {error}", flush=True)
            continue
        rec.update(run_pytest(p, work / p.name, base_cmd, adapters, label,
                              None if p.name == REFERENCE else work / REFERENCE / "conformance.json"))
        if rec.get("error"):
            print(f"    {p.name} failed after {_elapsed(rec['seconds'])}: {rec['error']}", flush=True)
            continue
        doc = json.loads(Path(rec["report"]).read_text(encoding="utf-8"))
        recorded = (doc.get("environment") or {}).get("numerics_env")
        if recorded is not None and recorded != p.env:
            rec["error"] = f"the run recorded numerics_env {recorded}, not the profile's {p.env}"
            print(f"    {rec['error']}", flush=True)
            continue
        if p.name == REFERENCE:
            reference = doc
            rec.update(items=len(doc.get("results") or []), compared=None, differing=[], accepted=[], moved=None)
            print(f"    {rec['items']} items in {_elapsed(rec['seconds'])}: {rec['pytest_summary']}", flush=True)
            continue
        rec.update(compare(reference, doc))
        print(f"    {rec['items']} items in {_elapsed(rec['seconds'])}: {len(rec['differing'])} verdict"
              f"{' differs' if len(rec['differing']) == 1 else 's differ'}, {len(rec['accepted'])} flipped under a "
              f"platform_dependent entry, {rec['moved']} moved without changing verdict"
              + (f"; {len(rec['changed'])} not compared, their case or known entry was edited meanwhile"
                 if rec["changed"] else "")
              + (f"; {len(rec['only_here'])} not in the reference run" if rec["only_here"] else ""), flush=True)
        for d in rec["differing"]:
            print(f"      {flip_text(d)}", flush=True)
        if rec["moved_closest"]:
            print(f"      moved closest to a flip: {flip_text(rec['moved_closest'])}", flush=True)

    print(f"\n{'profile':<15} {'items':>6} {'differing':>9} {'accepted':>8} {'moved':>6} {'time':>8}  env")
    for rec in summary:
        env = " ".join([f"{k}={v}" for k, v in rec["env"].items()] + rec["wrapper"] + rec["pytest_args"])
        if rec.get("skipped") or rec.get("error"):
            state = f"skipped: {rec['skipped']}" if rec.get("skipped") else "ERROR: " + rec["error"].splitlines()[0]
            print(f"{rec['profile']:<15} {'-':>6} {'-':>9} {'-':>8} {'-':>6} {'-':>8}  {env}  ({state})")
            continue
        moved = "-" if rec.get("moved") is None else str(rec["moved"])
        differing, accepted = (("-", "-") if rec["profile"] == REFERENCE
                               else (str(len(rec["differing"])), str(len(rec["accepted"]))))
        print(f"{rec['profile']:<15} {rec['items']:>6} {differing:>9} {accepted:>8} {moved:>6} "
              f"{_elapsed(rec['seconds']):>8}  {env}")
    for key, title in (("accepted", "flipped under a platform_dependent known entry (either outcome accepted)"),
                       ("differing", "differ from the default run")):
        flips = [(rec["profile"], d) for rec in summary for d in rec.get(key) or []]
        if flips:
            print(f"\n{len(flips)} verdict{'s' if len(flips) > 1 else ''} {title}:")
            for name, d in flips:
                print(f"  {name:<15} {flip_text(d)}")
    code = exit_code(summary)
    print(f"\n{'no verdict differs' if code == 0 else 'verdicts differ' if code == 1 else 'a profile could not run'}"
          f" ({_elapsed(time.perf_counter() - start)}); reports in {work}/<profile>/")
    if opt.out:
        Path(opt.out).write_text(json.dumps({"machine": m, "python": platform.python_version(),
                                             "cases": paths, "adapters": opt.adapters, "n": opt.n,
                                             "pytest_args": extra, "exit": code, "profiles": summary},
                                            indent=1, default=str), encoding="utf-8")
        print(f"summary: {opt.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())

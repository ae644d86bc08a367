"""Results to ``reports/conformance.json``: environment, result records, pairwise matrices.

Arrays travel between processes as ``.npz`` files in a run folder (one per case and adapter, and
one for the oracle), so the matrices come out the same from a serial run and from pytest-xdist.
Results are :class:`~normconf.records.Result` records (or their JSON form, as pytest items hand
them over); numbers stay floats until :func:`write_json` encodes NaN and infinities as strings.
"""
from __future__ import annotations

import json
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from .records import STATUSES, Result, Status, as_ratio, encode_tree  # noqa: F401 (STATUSES: re-exported)

SCHEMA_VERSION = 1


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=,@-]+", "_", text)


#: Outputs with more elements than this are stored (for the pairwise matrices) as an evenly strided
#: sample of about this many elements: 8 MB per output instead of 2 GB for a 1 GiB float32 tensor.
#: Each adapter's distance to the oracle in ``results`` is always over every element.
SAMPLE = 1 << 20


class ArrayStore:
    """Outputs of each (case, adapter) as .npz files under ``root``; large outputs as a sample."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, case_key: str, label: str) -> Path:
        return self.root / safe_name(case_key) / f"{safe_name(label)}.npz"

    def save(self, case_key: str, label: str, arrays: dict) -> None:
        path = self.path(case_key, label)
        if not arrays or path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # written beside, then moved into place: a reader never sees half a file. The name is this
        # process's own (xdist workers are processes); mkstemp's random names cost 4% of a run.
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
        stored: dict[str, np.ndarray] = {}
        for k, v in arrays.items():
            v = np.asarray(v)
            if v.size > SAMPLE:  # the same elements for every adapter: flat indices 0, step, 2 step...
                step = -(-v.size // SAMPLE)
                stored[k] = np.asarray(v.reshape(-1)[::step], dtype=np.float64)
                stored[SAMPLED + k] = np.array([step, v.size])
            else:
                stored[k] = np.asarray(v, dtype=np.float64)
        with open(tmp, "wb") as fh:
            # mypy matches the unpacked arrays against savez's allow_pickle: bool too; the keys are output names
            np.savez(fh, **stored)  # type: ignore[arg-type]
        os.replace(tmp, path)

    def load(self, case_key: str, label: str) -> dict | None:
        """``{name: array}``; a sampled output also has ``SAMPLED + name``: ``[step, size]``."""
        path = self.path(case_key, label)
        if not path.exists():
            return None
        with np.load(path) as data:
            return {k: data[k] for k in data.files}


SAMPLED = "sampled:"


def pairwise(arrays: dict[str, dict]) -> dict:
    """``{"labels", "max_abs", "by_output"}``: max |a - b| between every pair of labelled outputs.

    ``max_abs`` is the largest over the outputs both sides have (None where they share none); NaN
    where one side has NaN where the other has a number."""
    labels = list(arrays)
    names = sorted({n for a in arrays.values() for n in a if not n.startswith(SAMPLED)})
    by_output = {}
    for name in names:
        grid: list[list[float | None]] = [[None] * len(labels) for _ in labels]
        for i, a in enumerate(labels):
            for j, b in enumerate(labels):
                if name in arrays[a] and name in arrays[b] and arrays[a][name].shape == arrays[b][name].shape:
                    grid[i][j] = _max_abs(arrays[a][name], arrays[b][name])
        by_output[name] = grid
    overall: list[list[float | None]] = [[None] * len(labels) for _ in labels]
    for i in range(len(labels)):
        for j in range(len(labels)):
            vals = [by_output[n][i][j] for n in names if by_output[n][i][j] is not None]
            overall[i][j] = _worst(vals) if vals else None
    out = {"labels": labels, "max_abs": overall, "by_output": by_output}
    sampled = {n[len(SAMPLED):]: {"every": int(v[0]), "of": int(v[1])}
               for a in arrays.values() for n, v in a.items() if n.startswith(SAMPLED)}
    if sampled:  # large outputs: the cells are over a strided sample (the oracle's row is exact, see build)
        out["sampled"] = dict(sorted(sampled.items()))
    return out


def pair_explanations(matrix: dict, results: list[Result]) -> list[dict]:
    """Why two adapters differ, from each one's explanation against the oracle (no extra work):
    ``[{"a", "b", "max_abs", "detail"}]`` for every pair where at least one side is off."""
    by_adapter = {r.adapter: r for r in results}
    labels = matrix["labels"]
    out = []
    for i, a in enumerate(labels):
        for j in range(i + 1, len(labels)):
            b = labels[j]
            ra, rb = by_adapter.get(a), by_adapter.get(b)
            if a == "oracle" or ra is None or rb is None or (ra.status is Status.PASS and rb.status is Status.PASS):
                continue
            out.append({"a": a, "b": b, "max_abs": matrix["max_abs"][i][j],
                        "detail": f"{a}: {_why(ra)}; {b}: {_why(rb)}"})
    # framework_defaults cases (porting view): the defaults that differ, for every pair that ran
    ran = [r for r in results if r.defaults is not None]
    for i, ra in enumerate(ran):
        for rb in ran[i + 1:]:
            da, db = ra.defaults or {}, rb.defaults or {}  # both set (ran)
            differ = [k for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k)]
            if differ:
                detail = "; ".join(f"{k} {_val(da.get(k))} ({ra.adapter}) vs {_val(db.get(k))} ({rb.adapter})"
                                   for k in differ)
                out.append({"a": ra.adapter, "b": rb.adapter, "max_abs": _cell(matrix, ra.adapter, rb.adapter),
                            "detail": f"framework defaults differ: {detail}", "cause": _default_cause(differ)})
    return out


def _val(v) -> str:
    return "the case's" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def _cell(matrix: dict, a: str, b: str):
    labels = matrix["labels"]
    return matrix["max_abs"][labels.index(a)][labels.index(b)] if a in labels and b in labels else None


def _default_cause(keys) -> str:
    causes = {"eps": "eps_value", "momentum": "momentum_convention", "variance": "variance_divisor"}
    return "+".join(causes.get(k, k) for k in keys)


SHOWN_PARAMS = ("variance", "running_variance", "n", "eps", "momentum", "method", "groups", "dtype", "layout")


def _why(result: Result) -> str:
    if result.status is Status.PASS:
        return "agrees with the oracle"
    ex = result.explanation
    if ex and ex.cause != "unexplained":
        causes = "+".join(ex.causes or [ex.cause])
        params = ", ".join(f"{k} {_val(v)}" for k, v in (ex.params or {}).items()
                           if k in SHOWN_PARAMS and not isinstance(v, (list, dict)))
        return f"{causes} ({params})" if params else causes
    return f"{result.status}, unexplained"


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b|: NaN meets NaN and inf the same inf; NaN against a number is NaN (the worst)."""
    same = (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))
    with np.errstate(invalid="ignore"):
        d = np.where(same, 0.0, np.abs(a - b))
    return float(d.max()) if d.size else 0.0  # NaN propagates through max


def _worst(values) -> float:
    """The worst of some max |diff|: NaN (a NaN where a number was due) before any number."""
    return max(values, key=lambda v: (v != v, v))


# Environment variables that change the numbers a framework computes on a CPU (instruction set,
# library dispatch, thread count, determinism), recorded when set: `tools/profiles.py` sets them to
# simulate another machine, and a report must say which machine it simulated.
NUMERICS_ENV = ("XLA_FLAGS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
                "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                "TF_DETERMINISTIC_OPS", "NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES",
                "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_CBWR",
                "MKL_ENABLE_INSTRUCTIONS", "NVIDIA_TF32_OVERRIDE", "JAX_DEFAULT_MATMUL_PRECISION")
# /proc/cpuinfo flags that decide which kernels (vector width, FMA, half-precision arithmetic) run
CPU_FLAGS = ("sse4_2", "avx", "f16c", "fma", "avx2", "avx512f", "avx512dq", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx512_fp16",  # x86
             "asimd", "fphp", "asimdhp", "asimddp", "bf16", "i8mm", "sve", "sve2")  # Arm


def environment(adapters: dict, command: list[str] | None = None) -> dict:
    """Where the results were computed: versions, the CPU and the numerics settings in force.

    ``cpu``: ``model`` and the ISA ``flags`` of :data:`CPU_FLAGS` (and ``amx_*``) the CPU has (Linux:
    ``/proc/cpuinfo``; elsewhere ``platform.processor()`` and no flags), ``count`` CPUs of which
    ``usable`` by this process (``taskset`` lowers it). ``numerics_env``: the :data:`NUMERICS_ENV`
    variables that are set. Never raises for want of a ``/proc``.
    """
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "command": command or sys.argv,
        "adapters": {name: a.describe() for name, a in adapters.items()},
        "cpu": _cpu(),
        "numerics_env": {k: os.environ[k] for k in NUMERICS_ENV if k in os.environ},
    }


def _cpu() -> dict:
    model: str | None = None
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu model", "hardware") and model is None:
                    model = value.strip() or None
                elif key in ("flags", "features") and not flags:  # x86 / Arm; the first CPU stands for all
                    flags = set(value.split())
    except OSError:
        pass
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    known = [f for f in CPU_FLAGS if f in flags] + sorted(f for f in flags if f.startswith("amx"))
    return {"model": model or platform.processor() or platform.machine() or None, "flags": known,
            "count": os.cpu_count(), "usable": usable}


def build(results: list[Result | dict], env: dict, store: ArrayStore | None, cases: dict) -> dict:
    """The conformance document: results in a stable order, matrices from the stored arrays.

    ``results``: :class:`~normconf.records.Result` records, or their JSON form (read with
    :meth:`~normconf.records.Result.from_json`, which names a key it does not know)."""
    records = sorted((r if isinstance(r, Result) else Result.from_json(r) for r in results),
                     key=lambda r: (r.case, r.adapter))
    matrices = {}
    if store is not None:
        by_case: dict[str, list[str]] = {}
        results_of: dict[str, list[Result]] = {}
        for r in records:
            by_case.setdefault(r.case, [])
            results_of.setdefault(r.case, []).append(r)
            if r.has_arrays:
                by_case[r.case].append(r.adapter)
        for key, adapters in by_case.items():
            oracle = store.load(key, "oracle")
            if oracle is None:
                continue
            arrays = {"oracle": oracle}
            for name in adapters:
                got = store.load(key, f"adapter-{name}")
                if got is not None:
                    arrays[name] = got
            matrices[key] = pairwise(arrays)
            if "sampled" in matrices[key]:
                _exact_oracle_row(matrices[key], results_of[key])
            matrices[key]["pairs"] = pair_explanations(matrices[key], results_of[key])
    return {"schema_version": SCHEMA_VERSION, "environment": env, "results": [r.to_json() for r in records],
            "matrices": matrices, "cases": cases}


def _exact_oracle_row(matrix: dict, results: list[Result]) -> None:
    """Replace the oracle's row and column of a sampled matrix with each adapter's ``max_abs`` over
    every element (from its result), so only adapter-to-adapter cells are sample estimates."""
    labels = matrix["labels"]
    for r in results:
        if r.adapter not in labels or r.defaults is not None:  # framework_defaults: judged against another oracle
            continue
        j = labels.index(r.adapter)
        for name, grid in matrix["by_output"].items():
            if name in r.outputs and grid[0][j] is not None:
                grid[0][j] = grid[j][0] = r.outputs[name].max_abs
        vals = [g[0][j] for g in matrix["by_output"].values() if g[0][j] is not None]
        if vals:
            matrix["max_abs"][0][j] = matrix["max_abs"][j][0] = _worst(vals)


def write_json(doc: dict, path: str | Path) -> Path:
    """Write ``doc`` atomically (a reader never sees half a file), NaN and infinities as the strings
    ``"nan"``, ``"inf"``, ``"-inf"`` (:func:`normconf.records.encode_number`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".conformance-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(_json_safe(doc), fh, indent=1, default=_json_default, allow_nan=False)
    os.replace(tmp, path)
    return path


def _json_safe(value):
    """``value`` with every NaN and infinity as the string 'nan', 'inf' or '-inf', as the records
    write them: JSON has no such numbers, and NaN/inf inputs and parameters put them in params,
    input summaries, matrices and explanations."""
    return encode_tree(value)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def case_summary(case, ctx=None) -> dict:
    """What a report shows of a case: its definition and, when computed, a summary of its input."""
    params = dict(case.params)
    out = {"file": case.file, "op": case.op, "shape": list(case.shape), "dtype": case.dtype,
           "layout": case.layout, "params": params, "tags": list(case.tags),
           "description": case.description, "source": case.source,
           "input": {"data": "literal"} if case.data is not None else {"generator": case.generator}}
    if ctx is not None and "x" in ctx.inputs:  # no inputs: a case error found while drawing them
        if not hasattr(ctx, "input_summary"):  # once per case, not once per adapter
            ctx.input_summary = input_summary(ctx.inputs["x"])
        out["input"].update(ctx.input_summary, condition=ctx.condition)
        out["tolerance"] = ctx.tolerance
    return out


def input_summary(x: np.ndarray, chunk: int = 1 << 22) -> dict:
    """min, max, mean, std (two passes) and the count of non-finite values of ``x``, in slices of
    ``chunk`` elements: no float64 temporary the size of a 1 GiB input. An empty batch has no values
    to summarize: only the count."""
    flat = x.reshape(-1)
    parts = [flat[lo:lo + chunk] for lo in range(0, flat.size, chunk)]
    out = {"nonfinite": int(sum(p.size - np.isfinite(p).sum() for p in parts))}
    if not flat.size:
        return out
    with np.errstate(invalid="ignore", over="ignore"):
        mean = float(sum(np.sum(p, dtype=np.float64) for p in parts) / flat.size)
        var = float(sum(np.sum(np.square(p - mean), dtype=np.float64) for p in parts) / flat.size)
    return dict(out, min=float(min(np.min(p) for p in parts)), max=float(max(np.max(p) for p in parts)),
                mean=mean, std=float(np.sqrt(var)))


def headroom(results: list[Result | dict]) -> dict[str, tuple[float, str]]:
    """Per dtype, the largest error / tolerance among passing results (1.0 = at the tolerance).

    Results where a native convention differs from the case's are left out: they pass only because
    the convention's effect is below the tolerance, which says nothing about the tolerance itself.
    So are passes under a ``platform_dependent`` known entry: a discrepancy that happens to stay
    within tolerance on this machine. ``results``: records or their JSON form."""
    out: dict[str, tuple[float, str]] = {}
    for r in results:
        r = r if isinstance(r, Result) else Result.from_json(r)
        if r.status is not Status.PASS or r.native or (r.known or {}).get("platform_dependent"):
            continue  # a pass under a platform_dependent entry says nothing about the tolerance either
        for name, m in r.outputs.items():
            ratio = as_ratio(m.ratio)
            if ratio > out.get(r.dtype, (-1.0, ""))[0]:
                out[r.dtype] = (ratio, f"{r.label} {name}")
    return dict(sorted(out.items()))

"""``python -m normconf list | golden | report | schema``.

    python -m normconf list                      # adapters (with availability) and cases
    python -m normconf golden cases/seeds.yaml --out golden/
    python -m normconf report reports/conformance.json gpu.json -o reports/conformance.html
    python -m normconf schema [--check]          # the JSON Schemas of case files, for editors
"""
from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
from pathlib import Path

import numpy as np

from .adapter import AdapterLoadError, registry
from .cases import load_paths
from .engine import context
from .report import safe_name, write_json
from .shipped import shipped_cases


def main(argv=None) -> int:
    if hasattr(signal, "SIGPIPE"):  # `normconf list | head` ends quietly
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = argparse.ArgumentParser(prog="python -m normconf",
                                     description="normconf: conformance of normalization layers")
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="list adapters (with availability) and cases")
    p_list.add_argument("--cases", action="append", default=[], metavar="PATH",
                        help="case file or folder (default: the shipped cases)")
    p_list.add_argument("--adapter", action="append", default=[], metavar="MODULE:CLASS", help="also list this adapter")
    p_list.add_argument("--json", action="store_true", help="print JSON instead of text")

    p_gold = sub.add_parser("golden", help="write inputs and oracle outputs as .npz + manifest.json")
    p_gold.add_argument("paths", nargs="+", metavar="CASEFILE", help="case files or folders")
    p_gold.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")

    p_rep = sub.add_parser("report", help="merge conformance JSON files and render the HTML report")
    p_rep.add_argument("inputs", nargs="+", metavar="JSON", help="conformance.json files (a CPU run, a GPU run, ...)")
    p_rep.add_argument("-o", "--output", default="reports/conformance.html", metavar="HTML")
    p_rep.add_argument("--json-out", default=None, metavar="JSON", help="also write the merged JSON here")

    p_schema = sub.add_parser("schema", help="write the JSON Schemas of case files and known_discrepancies.yaml")
    p_schema.add_argument("--out", default=None, metavar="DIR",
                          help="output folder (default: normconf/schemas/, shipped)")
    p_schema.add_argument("--check", action="store_true",
                          help="write nothing; exit 1 if the shipped schemas are stale")

    args = parser.parse_args(argv)
    return {"list": cmd_list, "golden": cmd_golden, "report": cmd_report, "schema": cmd_schema}[args.command](args)


def cmd_list(args) -> int:
    try:
        adapters = registry(args.adapter)
    except AdapterLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        cases, errors = load_paths(args.cases or [shipped_cases()])
    except ModuleNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"adapters": {n: a.describe() for n, a in adapters.items()},
                          "cases": [{"case": c.key, "op": c.op, "shape": list(c.shape), "dtype": c.dtype,
                                     "layout": c.layout, "tags": list(c.tags)} for c in cases],
                          "errors": [str(e) for e in errors]}, indent=1))
        return 1 if errors else 0
    print(f"adapters ({len(adapters)}):")
    for name, adapter in adapters.items():
        d = adapter.describe()
        state = "available" if d["available"] else f"unavailable: {d['reason']}"
        print(f"  {name:<28} {d['framework']:<11} {d['version'] or '-':<12} {d['device']:<5} {state}")
    print(f"\ncases ({len(cases)}):")
    for c in cases:
        tags = f"  [{', '.join(c.tags)}]" if c.tags else ""
        print(f"  {c.key:<70} {c.op:<14} {c.dtype:<9} {c.layout:<15} {list(c.shape)}{tags}")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


def cmd_golden(args) -> int:
    """Golden vectors: per case one .npz of float64 arrays (inputs hold values exact in the case dtype).

    Never a traceback: a case that cannot be written (inputs that overflow its dtype, an exception
    of the harness, a file that cannot be saved) is named on stderr with the reason and the others
    are written. Exit status 0 when every case was written cleanly; 1 when a case file has errors, a
    case could not be written, or a written case's oracle disagrees with its ``expect.values``
    (recorded as ``problem`` in the manifest); 2 when nothing could be written at all."""
    cases, errors = load_paths(args.paths)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not cases:
        print("error: no valid case to write", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: --out {args.out}: cannot create the folder: {exc}", file=sys.stderr)
        return 2
    entries: list[dict] = []
    failed: list[str] = []
    names: set[str] = set()
    warned = 0
    for i, case in enumerate(cases, start=1):
        try:
            entry = _golden_case(case, out, names)
        except Exception as exc:  # named, not a traceback: the other cases are still written
            reason = str(exc) if isinstance(exc, NotWritten) else f"{type(exc).__name__}: {exc}"
            failed.append(case.key)
            print(f"[{i}/{len(cases)}] error: {case.key}: not written: {reason}", file=sys.stderr)
            continue
        entries.append(entry)
        print(f"[{i}/{len(cases)}] {case.key} -> {entry['file']}", file=sys.stderr)
        if entry["problem"]:
            warned += 1
            print(f"warning: {case.key}: written, but {entry['problem']}", file=sys.stderr)
    manifest = {"schema_version": 1, "generator": "normconf golden",
                "note": ("arrays are float64; input values are exactly representable in the case dtype; "
                         "outputs are the float64 oracle (two-pass statistics); canonical [N, C, *spatial] order"),
                "cases": entries}
    try:
        write_json(manifest, out / "manifest.json")
    except (OSError, TypeError, ValueError) as exc:
        print(f"error: {out / 'manifest.json'}: not written: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    failures = f"; {len(failed)} not written: {', '.join(failed)}" if failed else ""
    print(f"wrote {len(entries)} cases to {out}/ (manifest.json){failures}")
    return 1 if errors or failed or warned else 0


class NotWritten(Exception):
    """A case golden cannot write, for a reason the message gives in full."""


def _golden_case(case, out: Path, names: set) -> dict:
    """Write one case's .npz into ``out``; returns its manifest entry (raises what goes wrong)."""
    ctx = context(case)
    if not ctx.inputs:  # found while drawing the inputs (values that overflow the dtype): nothing to write
        raise NotWritten(ctx.problem)
    arrays = {f"input.{k}": np.asarray(v, dtype=np.float64) for k, v in ctx.inputs.items() if k != "x_steps"}
    for k, xk in enumerate(ctx.inputs.get("x_steps", [])):
        arrays[f"input.x_step{k}"] = np.asarray(xk, dtype=np.float64)
    arrays.update({f"output.{k}": np.asarray(v, dtype=np.float64) for k, v in ctx.expected.items()})
    stem = f"{safe_name(case.stem)}__{safe_name(case.id)}"
    name, n = f"{stem}.npz", 1
    while name in names:  # the same stem and id in two folders: keep both files
        n += 1
        name = f"{stem}__{n}.npz"
    names.add(name)
    # mypy matches the unpacked arrays against savez's allow_pickle: bool too; the keys are array names
    np.savez(out / name, **arrays)  # type: ignore[arg-type]
    digest = hashlib.sha256((out / name).read_bytes()).hexdigest()
    return {"case": case.key, "file": name, "sha256": digest, "op": case.op, "dtype": case.dtype,
            "layout": case.layout, "shape": list(case.shape), "params": dict(case.params),
            "arrays": {k: list(v.shape) for k, v in arrays.items()},
            "tolerance": {k: ctx.tolerance[k] for k in ctx.expected},
            "default_tolerance_formula": "see README, Tolerances",
            "problem": ctx.problem}


def cmd_report(args) -> int:
    from .html import render
    from .merge import merge

    docs = []
    for path in args.inputs:
        try:
            docs.append(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 2
    try:
        merged = merge(docs, [str(p) for p in args.inputs])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json_out:
        write_json(merged, args.json_out)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(render(merged), encoding="utf-8")
    print(f"wrote {args.output} ({len(merged['results'])} results from {len(docs)} file(s))")
    return 0


def cmd_schema(args) -> int:
    """The JSON Schemas editors use, generated from the validator's tables (normconf/schema.py)."""
    from . import schema

    folder = Path(args.out) if args.out else schema.SCHEMA_DIR
    if args.check:
        stale = schema.stale(folder)
        for name in stale:
            print(f"error: {folder / name} differs from the validator's tables: run `python -m normconf schema`",
                  file=sys.stderr)
        return 1 if stale else 0
    for path in schema.write(folder):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compare two conformance.json files result by result, timings aside.

    python tools/compare_reports.py BEFORE.json AFTER.json [--ignore-key KEY ...]

Every (case, adapter) record of BEFORE must be in AFTER with the same fields (``seconds`` and
``explain_seconds`` are timings and ignored), unless AFTER lists it as not run (its ``not_run``
section: an adapter unavailable here, an (adapter, op) pair without an API) and BEFORE had it as
``unsupported`` or ``unavailable``. Matrices are compared too. Prints the counts and up to 20
differences; exits 1 when any result or matrix differs. The check the refactor of the house
(typed records, plugin package, explain package, adapters dispatching on the op) was held to.
"""
from __future__ import annotations

import argparse
import json
import sys

TIMINGS = {"seconds", "explain_seconds"}


def key(record: dict) -> tuple[str, str]:
    return record["case"], record["adapter"]


def not_run(doc: dict) -> tuple[set[str], set[tuple[str, str]]]:
    """Adapters listed as unavailable and (adapter, op) pairs listed as having no API."""
    adapters, pairs = set(), set()
    for entry in doc.get("not_run") or []:
        if entry.get("op"):
            pairs.add((entry["adapter"], entry["op"]))
        else:
            adapters.add(entry["adapter"])
    return adapters, pairs


def strip(record: dict, ignore: set[str]) -> dict:
    return {k: v for k, v in record.items() if k not in TIMINGS | ignore}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--ignore-key", action="append", default=[], help="a result key not to compare")
    opt = parser.parse_args(argv)
    with open(opt.before, encoding="utf-8") as f:
        before = json.load(f)
    with open(opt.after, encoding="utf-8") as f:
        after = json.load(f)
    ignore = set(opt.ignore_key)
    b = {key(r): r for r in before["results"]}
    a = {key(r): r for r in after["results"]}
    gone_adapters, gone_pairs = not_run(after)
    same = differ = moved = 0
    problems: list[str] = []
    for k, rb in b.items():
        ra = a.get(k)
        if ra is None:
            if rb["status"] in ("unsupported", "unavailable") and (
                    rb["adapter"] in gone_adapters or (rb["adapter"], rb["op"]) in gone_pairs):
                moved += 1
            else:
                differ += 1
                problems.append(f"{k}: {rb['status']} before, missing after")
            continue
        sb, sa = strip(rb, ignore), strip(ra, ignore)
        if sb == sa:
            same += 1
        else:
            differ += 1
            keys = sorted(x for x in set(sb) | set(sa) if sb.get(x) != sa.get(x))
            problems.append(f"{k}: differs in {keys}: status {rb['status']} -> {ra['status']}")
    new = [k for k in a if k not in b]
    differ += len(new)
    problems += [f"{k}: new after ({a[k]['status']})" for k in new]
    mb, ma = before.get("matrices", {}), after.get("matrices", {})
    matrix_differ = sorted(c for c in set(mb) | set(ma) if mb.get(c) != ma.get(c))
    print(f"results: {len(b)} before, {len(a)} after; equal {same}, listed once as not run {moved}, "
          f"different {differ}")
    print(f"matrices: {len(mb)} before, {len(ma)} after; different {len(matrix_differ)}")
    for line in problems[:20]:
        print("  " + line)
    for c in matrix_differ[:5]:
        print(f"  matrix {c} differs")
    return 1 if differ or matrix_differ else 0


if __name__ == "__main__":
    sys.exit(main())

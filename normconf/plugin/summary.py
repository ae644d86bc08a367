"""The end of a run in the terminal: status counts per op and adapter, what was not run, the largest
discrepancies, the tolerance headroom, fuzzing, where the report went, and the fragile verdicts."""
from __future__ import annotations

import time
from typing import Any

from ..compare import fmt
from ..report import headroom
from .state import STATE

#: Fragile verdicts listed by name at the end of a run (the strict ones always; the rest up to this).
FRAGILE_LISTED = 20

SHORT = {"pass": "P", "fail": "F", "expected": "X", "stale": "S", "unsupported": "U", "unavailable": "-", "error": "E"}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state = config.stash[STATE]
    if hasattr(config, "workerinput") or not (state.results or getattr(state, "fuzz", None)):
        return
    tr = terminalreporter
    tr.section("normconf conformance")
    lines = status_lines(state.results, list(state.adapters))
    lines += not_run_lines(state.not_run, state.adapters)
    lines += discrepancy_lines(state.results) + headroom_lines(state.results)
    explained = [r.get("explain_seconds", 0.0) for r in state.results if r.get("explanation")]
    if explained:
        elapsed = time.perf_counter() - state.started
        lines.append(f"explanations: {len(explained)} mismatches explained in {sum(explained):.1f} s of worker time "
                     f"({100 * sum(explained) / max(elapsed * max(1, _workers(config)), 1e-9):.1f}% of the run)")
    if getattr(state, "fuzz", None):
        lines += fuzz_lines(state.fuzz)
    lines += [f"results: {path}" for path in getattr(state, "written", ())]
    lines += fragile_lines(state.results)
    for line in lines:
        tr.write_line(line)


def status_lines(results: list[dict], adapters: list[str]) -> list[str]:
    """Per op, the count of each status per adapter."""
    ops = sorted({r["op"] for r in results})
    ran = [a for a in adapters if any(r["adapter"] == a for r in results)]
    lines = ["per op, adapter: P pass, X expected, F fail, S stale, E error, U unsupported, - unavailable"]
    for op in ops:
        cells = []
        for a in ran:
            counts: dict[str, int] = {}
            for r in results:
                if r["op"] == op and r["adapter"] == a:
                    counts[r["status"]] = counts.get(r["status"], 0) + 1
            cells.append(f"{a}: " + " ".join(f"{SHORT[s]}{n}" for s, n in counts.items()))
        lines.append(f"  {op:<14} " + " | ".join(cells))
    return lines


def not_run_lines(not_run: list[dict] | None, adapters: dict) -> list[str]:
    """What got no items, once per adapter: unavailable here (with the reason), the cases its default
    subset leaves out (without ``--all-cases``), or the ops it has no API for with their case counts
    (a reason other than the standard one is quoted)."""
    if not not_run:
        return []
    lines = ['not run (no items; "not_run" in conformance.json):']
    by_adapter: dict[str, list[dict]] = {}
    for entry in not_run:
        by_adapter.setdefault(entry["adapter"], []).append(entry)
    for name, entries in by_adapter.items():
        for entry in (e for e in entries if e["status"] == "unavailable"):
            lines.append(f"  {name:<26} unavailable, {_cases(entry['cases'])}: {entry['reason']}")
        for entry in (e for e in entries if e["status"] == "subset"):
            lines.append(f"  {name:<26} {_cases(entry['cases'])} outside its default subset: {entry['reason']}")
        ops = [e for e in entries if e["status"] not in ("unavailable", "subset")]
        if not ops:
            continue
        adapter = adapters.get(name)
        standard = [e for e in ops if adapter is not None and hasattr(adapter, "no_api")
                    and e["reason"] == adapter.no_api(e["op"])]
        if standard:
            lines.append(f"  {name:<26} no API for " + ", ".join(f"{e['op']} ({_cases(e['cases'])})" for e in standard))
        by_reason: dict[str, list[dict]] = {}
        for e in ops:
            if e not in standard:
                by_reason.setdefault(e["reason"], []).append(e)
        for reason, es in by_reason.items():
            lines.append(f"  {name:<26} not run for " + ", ".join(f"{e['op']} ({_cases(e['cases'])})" for e in es)
                         + f": {reason}")
    return lines


def _cases(n: int) -> str:
    return f"{n:,} case" + ("" if n == 1 else "s")


def discrepancy_lines(results: list[dict]) -> list[str]:
    worst = sorted((r for r in results if r["status"] in ("fail", "expected", "stale")),
                   key=lambda r: -max([_ratio(m) for m in r["outputs"].values()] or [0]))[:10]
    if not worst:
        return []
    lines = ["largest discrepancies (error / tolerance):"]
    for r in worst:
        ratio = max([_ratio(m) for m in r["outputs"].values()] or [0])
        why = (r.get("explanation") or {}).get("detail") or r.get("reason") or ""
        lines.append(f"  {ratio:>10.3g}x  {r['status']:<8} {r['case']}[{r['adapter']}]  {why[:110]}")
    return lines


def headroom_lines(results: list[Any]) -> list[str]:
    rows = headroom(results)
    if not rows:
        return []
    lines = ["tolerance headroom (largest error / tolerance among passing results, per dtype):"]
    lines += [f"  {dtype:<9} {ratio:8.3f}  at {where}" for dtype, (ratio, where) in rows.items()]
    return lines


def fuzz_lines(f: dict) -> list[str]:
    lines = [f"fuzzing: {f['cases']} drawn cases, {f['results']} results, {f['known']} known discrepancies met"
             + (f" in {f['seconds']:.0f} s" if "seconds" in f else "")
             + (f" (--fuzz-seconds: the cases after the first {f['stopped']} were not run)" if "stopped" in f else "")
             + (" (findings: see the failure)" if f.get("finding") else "")]
    if f.get("statuses"):
        lines.append("  per status: " + ", ".join(f"{s} {n}" for s, n in sorted(f["statuses"].items())))
        for a, per in f.get("adapters", {}).items():
            lines.append(f"  {a:<26} " + ", ".join(f"{s} {n}" for s, n in sorted(per.items())))
        for key, n in sorted(f.get("causes", {}).items()):
            lines.append(f"  known: {key} x{n}")
    return lines


def fragile_lines(results: list[dict]) -> list[str]:
    """The end of every run: ``fragile verdicts: N (S strict)`` and the fragile results, strict ones
    first, each with its margin (error / tolerance of the comparison closest to flipping). A strict
    fragile verdict could flip on another machine and change the run's outcome; a non-strict one is
    under a ``platform_dependent`` known entry, where both outcomes are accepted."""
    fragile = [r for r in results if r.get("verdict") == "fragile"]
    fragile.sort(key=lambda r: (not r.get("strict"), r["case"], r["adapter"]))
    strict = sum(bool(r.get("strict")) for r in fragile)
    lines = [f"fragile verdicts: {len(fragile)} ({strict} strict)"]
    for i, r in enumerate(fragile):
        if i >= max(strict, FRAGILE_LISTED):
            lines.append(f"  ... and {len(fragile) - i} more (\"verdict\": \"fragile\" in conformance.json)")
            break
        known = r.get("known") or {}
        source = known.get("file", "known_discrepancies.yaml")
        why = (f"  (platform_dependent: {source} #{known.get('index')}, {known.get('observed')} here)"
               if known.get("platform_dependent") else "")
        strict_mark = "strict" if r.get("strict") else "not strict"
        lines.append(f"  {strict_mark:<10} {fmt(r.get('margin')):>7}x  {r['status']:<8} "
                     f"{r['case']}[{r['adapter']}] {r.get('margin_output')}{why}")
    return lines


def _workers(config) -> int:
    n = getattr(config.option, "numprocesses", None)
    return n if isinstance(n, int) and n > 0 else 1


def _ratio(m) -> float:
    r = m.get("ratio", 0)
    return float("inf") if isinstance(r, str) else float(r)

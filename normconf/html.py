"""The HTML report: :func:`render` one self-contained page from a conformance document.

    python -m normconf report reports/conformance.json gpu/conformance.json -o reports/conformance.html

This module is the view: :func:`view` turns the document into plain data (counts, heatmap cells,
their colour classes and hover texts, the case data the page's script reads), and the Jinja2
templates of ``normconf/templates/`` lay it out, escaping every value (autoescape). The page loads
nothing (no network): ``report.css`` and ``report.js`` are inlined at render time, the stability
plot is an inline SVG drawn with matplotlib. The heatmap and the overview are plain HTML; each
case's details are drawn by the page's script from one embedded JSON blob when they are opened,
which keeps a 5,000-result report small and quick to open. Documents merged from several runs come
from :func:`normconf.merge.merge`.

>>> page = render({"schema_version": 1, "environment": {}, "results": [], "matrices": {}, "cases": {}})
>>> page.startswith("<!doctype html>")
True
"""
from __future__ import annotations

import functools
import io
import itertools
import json
import math
import shlex
from pathlib import Path

try:
    import jinja2
    from markupsafe import Markup  # a dependency of Jinja2
except ImportError as exc:  # the plugin renders the page at the end of every run: say what to install
    raise ImportError(f"the HTML report needs Jinja2 (pip install Jinja2; requirements.txt pins it): {exc}") from exc

from .margin import FIRM_AGREE, FIRM_DIFFER
from .records import NONFINITE, as_ratio
from .report import STATUSES

# Most severe first: the status a heatmap cell shows when merged runs disagree.
SEVERITY = ("error", "fail", "stale", "expected", "pass", "unsupported", "unavailable")
ICONS = {"pass": "", "fail": "F", "expected": "X", "stale": "S", "error": "E", "unsupported": "U",
         "unavailable": "\u2013"}
STATUS_TEXT = {"pass": "pass", "fail": "fail: out of tolerance",
               "expected": "expected (declared or known discrepancy)",
               "stale": "stale: an expected mismatch that matches",
               "error": "error: the adapter raised (or the case is wrong)",
               "unsupported": "unsupported by the framework",
               "unavailable": "unavailable here (module or device missing)"}
# ``not_run`` statuses: a result's, and ``subset`` (cases outside an adapter's default subset).
NOT_RUN_TEXT = {**STATUS_TEXT, "subset": "outside the adapter's default subset (--all-cases runs them)"}
# The verdict filter's choices: a strict fragile verdict is one the run enforces (no platform_dependent entry).
VERDICTS = ("firm", "fragile", "fragile, strict")
# Heatmap colours: error / tolerance on a log scale, 1e-4 .. 1e4 in half decades (17 buckets).
LOG_LOW, LOG_HIGH, PER_DECADE = -4, 4, 2
STOPS = [(-4, (238, 247, 238)), (-2, (191, 227, 180)), (-1, (140, 207, 126)), (-0.25, (210, 230, 110)),
         (0, (255, 224, 102)), (1, (253, 141, 60)), (2, (227, 26, 28)), (4, (103, 0, 13))]
METRICS = ("max_abs", "max_rel", "max_ulp", "worst_index", "ratio", "atol", "rtol", "ok")
TEMPLATE = "report.html.j2"


def render(doc: dict) -> str:
    """The self-contained HTML page of a conformance document (a run's, or one from
    :func:`normconf.merge.merge`)."""
    return _templates().get_template(TEMPLATE).render(view(doc))


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("normconf", "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        finalize=lambda value: "" if value is None else value)  # a missing version prints as nothing
    # `tojson` writes the case data into a <script> element: compact, strict JSON; it turns '<', '>',
    # '&' and "'" into \u escapes (the same characters inside JSON strings), so no "</script>" or
    # "<!--" in a description can end the element early
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "allow_nan": False, "default": str}
    env.globals.update(inline=_inline, STATUSES=STATUSES, STATUS_TEXT=STATUS_TEXT, FIRM_AGREE=FIRM_AGREE,
                       FIRM_DIFFER=FIRM_DIFFER)
    return env


@jinja2.pass_environment
def _inline(env: jinja2.Environment, name: str) -> Markup:
    """A stylesheet or script of the templates folder, as it is (not a template): the page's own code."""
    assert env.loader is not None  # _environment gives it the templates folder
    text = env.loader.get_source(env, name)[0]
    end = "</style" if name.endswith(".css") else "</script"
    if end in text.lower():  # it would end its element early and the rest would show as text
        raise ValueError(f"normconf/templates/{name}: contains {end!r}, which cannot be inlined")
    return Markup(text)


def view(doc: dict) -> dict:
    """What the page shows, as plain data: the templates' context. Values are not escaped here (the
    templates do it); the only markup is the matplotlib SVG and the generated colour rules (CSS).

    >>> v = view({"results": [{"case": "f/c", "adapter": "numpy", "status": "pass", "outputs": {}}]})
    >>> v["header"]["counts"], v["heatmap"]["rows"][0]["cells"][0]["cls"]
    ([('pass', 1)], 'cell st-pass')
    """
    results = doc.get("results") or []
    env = doc.get("environment") or {}
    cases_info = doc.get("cases") or {}
    by_case: dict[str, list[dict]] = {}
    for r in results:
        by_case.setdefault(r["case"], []).append(r)
    case_keys = sorted(by_case)
    order = list(env.get("adapters") or {})
    seen = {r["adapter"] for r in results}
    adapters = [a for a in order if a in seen] + sorted(seen - set(order))
    info = {key: _case_info(key, cases_info.get(key) or {}, by_case[key]) for key in case_keys}
    not_run = _not_run(doc.get("not_run") or [])
    return {"bucket_css": Markup(_bucket_css()),
            "header": _header(doc, results, adapters, case_keys),
            "filters": _filters(info, adapters),
            "overview": _overview(results, adapters, not_run),
            "not_run": not_run,
            "conflicts": _conflicts(doc.get("conflicts") or []),
            "heatmap": _heatmap(case_keys, info, by_case, adapters),
            "stability": _stability(doc, results),
            "cases": _case_sections(case_keys, info, by_case),
            "runs": _runs(env),
            "data": _data(doc, case_keys, info, by_case, adapters)}


# --------------------------------------------------------------------------------------------- the view

def _header(doc, results, adapters, case_keys) -> dict:
    counts = _count(results)
    merged = doc.get("merged") or {}
    fragile = [r for r in results if r.get("verdict") == "fragile"]
    nav = (["overview"] + (["not_run"] if doc.get("not_run") else []) + ["heatmap", "stability", "cases", "environment"]
           + (["conflicts"] if doc.get("conflicts") else []))
    return {"results": len(results), "cases": len(case_keys), "adapters": len(adapters),
            "counts": [(s, counts[s]) for s in STATUSES if counts.get(s)],
            # a document from before verdicts had a margin has nothing to count
            "fragile": (len(fragile), sum(bool(r.get("strict")) for r in fragile))
                       if any("verdict" in r for r in results) else None,
            "cpus": _cpus(doc.get("environment") or {}),
            "sources": list(merged.get("sources") or []),
            "superseded": merged.get("superseded_unavailable") or 0, "nav": nav,
            "not_run": len(doc.get("not_run") or [])}


def _cpus(env: dict) -> list[dict]:
    """The CPU of each run (``environment.cpu``: model and the ISA flags that change numerics), when
    the runs recorded it: verdicts near their tolerance depend on it."""
    runs = env.get("runs")
    if not isinstance(runs, list):
        runs = [env]
    lines = []
    for run in runs:
        cpu = run.get("cpu")
        if not isinstance(cpu, dict):
            continue
        flags = cpu.get("flags")
        flags = " ".join(str(f) for f in flags) if isinstance(flags, list) else str(flags or "")
        lines.append({"source": run.get("source"), "model": cpu.get("model") or "unknown", "flags": flags})
    return lines


def _count(results) -> dict:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.get("status")] = counts.get(r.get("status"), 0) + 1
    return counts


def _filters(info, adapters) -> list[tuple[str, list[str]]]:
    """Each filter's name and its choices (besides "all")."""
    return [("op", sorted({i["op"] for i in info.values()})), ("adapter", list(adapters)),
            ("dtype", sorted({i["dtype"] for i in info.values()})), ("status", list(STATUSES)),
            ("verdict", list(VERDICTS)), ("tag", sorted({t for i in info.values() for t in i["tags"]}))]


def _not_run(entries: list[dict]) -> list[dict]:
    """The ``not_run`` entries as the page lists them: what got no items (no results, not failures)."""
    return [{"adapter": e.get("adapter") or "", "op": e.get("op") or "every op", "status": e.get("status") or "",
             "text": NOT_RUN_TEXT.get(e.get("status") or "", e.get("status") or ""), "cases": e.get("cases"),
             "reason": e.get("reason") or "", "every": e.get("op") is None} for e in entries]


def _overview(results, adapters, not_run=()) -> dict:
    """Status counts per adapter and op, with totals: each cell a list of (status, count). A cell
    without results of a pair in ``not_run`` gets a neutral mark (``marks``: text and hover text, or
    None), and an adapter with no results but entries in ``not_run`` a row of its own that says so
    (``not_run``), so that nothing in the table reads as a failure of theirs."""
    ops = sorted({r.get("op") or "" for r in results})
    grid: dict[tuple[str, str], dict[str, int]] = {}
    for r in results:
        for key in ((r["adapter"], r.get("op") or ""), (r["adapter"], "*"), ("*", r.get("op") or ""), ("*", "*")):
            cell = grid.setdefault(key, {})
            cell[r.get("status")] = cell.get(r.get("status"), 0) + 1

    def cells(row):
        return [[(s, grid[row, op][s]) for s in STATUSES if grid.get((row, op), {}).get(s)] for op in ops + ["*"]]

    skipped: dict[str, dict[str | None, dict]] = {}
    for e in not_run:
        if e["status"] != "subset":  # the adapter ran its subset: its cells have results or stay empty
            skipped.setdefault(e["adapter"], {})[None if e["every"] else e["op"]] = e

    def marks(row: str) -> list[tuple[str, str] | None]:
        mine = skipped.get(row, {})
        out: list[tuple[str, str] | None] = []
        for op in ops + ["*"]:
            e = mine.get(op) or mine.get(None)
            if grid.get((row, op)) or e is None or op == "*":
                out.append(None)
            else:
                out.append(("unavailable" if e["every"] else "no API", f"not run here, {e['status']}: {e['reason']}"))
        return out

    rows = [{"label": a, "total": False, "cells": cells(a), "marks": marks(a), "not_run": None} for a in adapters]
    for name, entries in skipped.items():
        if name not in adapters:
            what = "; ".join(e["status"] if e["every"] else f"no API for {e['op']}" for e in entries.values())
            rows.append({"label": name, "total": False, "cells": [], "marks": [], "not_run": f"not run here: {what}",
                         "title": "; ".join(e["reason"] for e in entries.values())})
    rows.append({"label": "all adapters", "total": True, "cells": cells("*"), "marks": [None] * (len(ops) + 1),
                 "not_run": None})
    return {"ops": ops, "rows": rows}


def _conflicts(conflicts) -> dict | None:
    if not conflicts:
        return None
    rows = [{"case": c["case"], "anchor": _anchor(c["case"]), "adapter": c["adapter"],
             "runs": list(zip(c["statuses"], c["sources"], strict=True)), "kind": c.get("kind")} for c in conflicts]
    return {"count": len(rows), "status": [c for c in rows if c["kind"] != "metrics"],
            "metrics": [c for c in rows if c["kind"] == "metrics"]}


def _heatmap(case_keys, info, by_case, adapters) -> dict:
    """One row per case, one cell per adapter (None where the adapter has no result)."""
    col = {a: j for j, a in enumerate(adapters)}
    rows = []
    for key in case_keys:
        per: dict[str, list[dict]] = {}
        for r in by_case[key]:
            per.setdefault(r["adapter"], []).append(r)
        cells: list[dict | None] = [None] * len(adapters)
        for adapter, records in per.items():
            cells[col[adapter]] = _cell(adapter, records)
        rows.append({"key": key, "anchor": info[key]["anchor"], "cells": cells})
    return {"adapters": adapters, "rows": rows,
            "legend": [(b, _legend_label(b)) for b in range((LOG_HIGH - LOG_LOW) * PER_DECADE + 1)],
            "icons": [(s, ICONS[s] or "\u00a0") for s in STATUSES]}


def _cell(adapter: str, records: list[dict]) -> dict:
    """A heatmap cell: its classes (status, colour bucket, conflict, fragile mark), icon and hover text."""
    # where runs disagree, the most severe status and the largest error
    shown = min(records, key=lambda r: SEVERITY.index(r["status"]) if r.get("status") in SEVERITY else 0)
    ratios = [x for x in (_ratio(r) for r in records) if x is not None]
    ratio = max(ratios) if ratios else None
    status = str(shown.get("status") or "error")
    bucket = _bucket(ratio) if status not in ("unsupported", "unavailable", "error") else None
    fragile = [r for r in records if r.get("verdict") == "fragile"]
    classes = (f"cell st-{status}" + (f" b{bucket}" if bucket is not None else "")
               + (" cf" if len(records) > 1 else "")
               + ((" fr" if any(r.get("strict") for r in fragile) else " fr ns") if fragile else ""))
    title = f"{adapter}: {status}"
    if ratio is not None:
        title += f", error/tolerance {_fmt(ratio)}"
        worst = max(((n, m) for n, m in (shown.get("outputs") or {}).items()),
                    key=lambda nm: as_ratio(nm[1].get("ratio")), default=None)
        if worst:
            title += f" ({worst[0]}: max_abs {_fmt(worst[1].get('max_abs'))})"
    for r in fragile:
        title += (f"; fragile verdict: {r.get('margin_output')} at {_fmt(r.get('margin'))} x tolerance"
                  + ("" if r.get("strict") else " (platform_dependent: either outcome accepted)"))
    if len(records) > 1:
        title += "; runs disagree: " + ", ".join(f"{r.get('status')} in {r.get('source')}" for r in records)
    return {"cls": classes, "title": title, "icon": ICONS.get(status, "?")}


def _case_sections(case_keys, info, by_case) -> list[dict]:
    out = []
    for key in case_keys:
        it = info[key]
        statuses = _count(by_case[key])
        out.append({"key": key, "anchor": it["anchor"], "op": it["op"], "dtype": it["dtype"],
                    "counts": [(s, statuses[s]) for s in STATUSES if statuses.get(s)],
                    "desc": it["summary"].get("description") or ""})
    return out


def _runs(env: dict) -> list[dict]:
    """Each run's environment: its own keys as text, and one row per adapter."""
    runs = env.get("runs")
    if not isinstance(runs, list):
        runs = [dict(env, source=None)]
    out = []
    for run in runs:
        rows = []
        for key, value in run.items():
            if key in ("adapters", "source"):
                continue
            if key == "command" and isinstance(value, list):
                value = shlex.join(str(v) for v in value)
            elif isinstance(value, (dict, list)):
                value = json.dumps(value, default=str)
            rows.append((key, value))
        adapters = []
        for name, a in (run.get("adapters") or {}).items():
            a = a or {}
            adapters.append({
                "name": name, "framework": a.get("framework"), "version": a.get("version"),
                "device": a.get("device"), "available": bool(a.get("available")),
                "state": "available" if a.get("available") else f"unavailable: {a.get('reason') or ''}",
                "tf32": _plain(a.get("tf32")) if "tf32" in a else "",  # torch-cuda reports {matmul, cudnn}
                "more": ", ".join(f"{k}={_plain(v)}" for k, v in a.items() if k not in ADAPTER_COLUMNS)})
        out.append({"source": run.get("source"), "rows": rows, "adapters": adapters})
    return out


def _stability(doc: dict, results: list[dict]) -> dict:
    """The plot (SVG markup), or why there is none."""
    try:
        svg = _stability_svg(doc, results)
    except ImportError as exc:
        return {"svg": None, "missing": str(exc)}
    # matplotlib's SVG writer escapes the text it draws (op and adapter names): markup of its own only
    return {"svg": Markup(svg) if svg is not None else None, "missing": None}


def _data(doc, case_keys, info, by_case, adapters) -> dict:
    """The case details the page's script draws when a case is opened (short keys: it is large)."""
    matrices = doc.get("matrices") or {}
    env = doc.get("environment") or {}
    cases = []
    for key in case_keys:
        s = info[key]["summary"]
        file = s.get("file") or ""
        path, options = _case_path(file, env)
        entry = {"k": key, "a": info[key]["anchor"], "op": info[key]["op"], "dtype": info[key]["dtype"],
                 "layout": s.get("layout"), "shape": s.get("shape") or by_case[key][0].get("shape"),
                 "tags": info[key]["tags"], "desc": s.get("description") or "", "src": s.get("source") or "",
                 "file": file, "path": path, "opts": options, "id": key.split("/", 1)[-1],
                 "params": _compact(s.get("params") or {}), "input": _compact(s.get("input") or {}),
                 "tol": _compact(s.get("tolerance") or {}), "res": [_result_entry(r) for r in by_case[key]]}
        m = matrices.get(key)
        if m:
            entry["m"] = {"labels": m.get("labels"), "v": _round(m.get("max_abs")),
                          "ls": m.get("label_sources"),
                          "why": [[p.get("a"), p.get("b"), p.get("detail")] for p in m.get("pairs") or []]}
        cases.append(entry)
    return {"adapters": adapters, "metrics": METRICS, "cases": cases}


# ------------------------------------------------------------------------------------------ helpers

def _anchor(key: str) -> str:
    """The id of a case's section (ids may hold any character but white space)."""
    return "case-" + "_".join(key.split())


def _case_info(key: str, summary: dict, records: list[dict]) -> dict:
    first = records[0]
    return {"key": key, "anchor": _anchor(key), "op": summary.get("op") or first.get("op") or "",
            "dtype": summary.get("dtype") or first.get("dtype") or "",
            "tags": list(summary.get("tags") or first.get("tags") or []), "summary": summary}


def _ratio(result: dict) -> float | None:
    """Max over outputs of error / tolerance ('inf'/'nan' count as infinitely far); None where
    nothing was compared."""
    values = [as_ratio(m.get("ratio")) for m in (result.get("outputs") or {}).values() if m.get("ratio") is not None]
    return max(values) if values else None


def _bucket(ratio: float | None) -> int | None:
    if ratio is None:
        return None
    if ratio <= 0:
        return 0
    level = min(max(math.log10(ratio) if math.isfinite(ratio) else LOG_HIGH, LOG_LOW), LOG_HIGH)
    return int(round((level - LOG_LOW) * PER_DECADE))


def _colour(level: float) -> tuple[int, int, int]:
    for (x0, c0), (x1, c1) in itertools.pairwise(STOPS):
        if level <= x1:
            t = (level - x0) / (x1 - x0)
            r, g, b = (int(round(lo + (hi - lo) * t)) for lo, hi in zip(c0, c1, strict=True))
            return r, g, b
    return STOPS[-1][1]


def _bucket_css() -> str:
    rules = []
    for b in range((LOG_HIGH - LOG_LOW) * PER_DECADE + 1):
        r, g, bl = _colour(LOG_LOW + b / PER_DECADE)
        ink = "#fff" if 0.299 * r + 0.587 * g + 0.114 * bl < 140 else "#222"
        rules.append(f".b{b}{{background:#{r:02x}{g:02x}{bl:02x};color:{ink}}}")
    return "".join(rules)


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return "\u2014" if value is None else str(value)
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    return str(value)



def _legend_label(bucket: int) -> str:
    level = LOG_LOW + bucket / PER_DECADE
    if level == int(level):
        text = "1" if level == 0 else f"1e{int(level)}"
        return ("\u2264" if level == LOG_LOW else "\u2265" if level == LOG_HIGH else "") + text
    return "\u00a0"


def _num(value) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return math.inf if isinstance(value, str) else -1.0



ADAPTER_COLUMNS = ("version", "framework", "device", "available", "reason", "tf32")


def _plain(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return json.dumps(value, default=str)
    return _fmt(value)


# ------------------------------------------------------------------------------------------- stability

def _stability_svg(doc: dict, results: list[dict]) -> str | None:
    cases = doc.get("cases") or {}
    points: dict[str, dict[tuple[str, str], dict[float, float]]] = {}
    tolerance: dict[str, dict[str, dict[float, float]]] = {}
    for r in results:
        summary = cases.get(r["case"]) or {}
        if "stability" not in (summary.get("tags") or r.get("tags") or []):
            continue
        mean = ((summary.get("input") or {}).get("generator") or {}).get("mean")
        y = (r.get("outputs") or {}).get("y")
        if not isinstance(mean, (int, float)) or mean == 0 or not y:
            continue
        err = y.get("max_abs")
        err = float(err) if isinstance(err, (int, float)) else math.inf
        op, x, dtype = r.get("op") or "", abs(float(mean)), r.get("dtype") or summary.get("dtype") or "?"
        series = points.setdefault(op, {}).setdefault((r["adapter"], dtype), {})
        series[x] = max(series.get(x, -1.0), err)
        if isinstance(y.get("atol"), (int, float)):
            tol = tolerance.setdefault(op, {}).setdefault(dtype, {})
            tol[x] = max(tol.get(x, 0.0), float(y["atol"]))
    if not points:
        return None

    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global state, the Agg/SVG canvases only
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullLocator

    finite = [v for op in points.values() for s in op.values() for v in s.values() if math.isfinite(v) and v > 0]
    low = min(finite) / 10 if finite else 1e-17
    high = max(finite) * 10 if finite else 1.0
    adapters = sorted({a for op in points.values() for a, _ in op})
    known = ("float64", "float32", "float16", "bfloat16")
    dtypes = sorted({d for op in points.values() for _, d in op}, key=lambda d: (known + (d,)).index(d))
    # four dtypes exist and eight markers and styles: the dtypes are the shorter list
    markers = dict(zip(dtypes, "os^Dvp*h", strict=False))
    styles = dict(zip(dtypes, ["-", "--", ":", "-.", "-", "--", ":", "-."], strict=False))
    palette = matplotlib.colormaps["tab20" if len(adapters) > 10 else "tab10"]
    colours = {a: palette(i % palette.N) for i, a in enumerate(adapters)}

    ops = sorted(points)
    ncols = min(3, len(ops))
    nrows = -(-len(ops) // ncols)
    width, height = 4.0 * ncols + 1.9, 3.1 * nrows + 0.3
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "normconf", "font.size": 9}):
        # fixed margins, not constrained layout: measuring every tick label costs seconds
        fig = Figure(figsize=(width, height))
        fig.subplots_adjust(left=0.75 / width, right=1 - 1.95 / width, bottom=0.55 / height,
                            top=1 - 0.35 / height, wspace=0.3, hspace=0.45)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        # the grid has nrows * ncols axes, one per op and the rest left empty
        for ax, op in zip(axes.flat, ops, strict=False):
            for dtype, tol in sorted(tolerance.get(op, {}).items()):
                xs = sorted(tol)
                ax.plot(xs, [tol[x] for x in xs], color="0.6", lw=1, ls=styles[dtype], zorder=1)
            for (adapter, dtype), series in sorted(points[op].items()):
                xs = sorted(series)
                ys = [min(max(series[x], low), high) if math.isfinite(series[x]) else high for x in xs]
                ax.plot(xs, ys, color=colours[adapter], marker=markers[dtype], ls=styles[dtype], lw=1.2, ms=4,
                        zorder=2)
            ax.set(xscale="log", yscale="log", xlim=(0.5, 2e6), ylim=(low, high))
            ax.set_title(op, fontsize=10)
            ax.xaxis.set_major_locator(LogLocator(numticks=8))
            ax.yaxis.set_major_locator(LogLocator(numticks=7))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_minor_locator(NullLocator())
            ax.grid(True, which="major", lw=0.4, alpha=0.5)
        for ax in axes[-1]:
            ax.set_xlabel("input mean offset")
        for ax in axes[:, 0]:
            ax.set_ylabel("max |error| of y")
        for ax in list(axes.flat)[len(ops):]:
            ax.set_visible(False)
        handles = [Line2D([], [], color=colours[a], lw=2, label=a) for a in adapters]
        handles += [Line2D([], [], color="0.3", marker=markers[d], ls=styles[d], label=d) for d in dtypes]
        handles.append(Line2D([], [], color="0.6", lw=1, label="tolerance (atol)"))
        fig.legend(handles=handles, loc="upper right", fontsize=8, frameon=False)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]



# --------------------------------------------------------------------------------- embedded case data

def _result_entry(r: dict) -> dict:
    out = {"a": r["adapter"], "s": r.get("status"), "r": r.get("reason")}
    outputs = {}
    for name, m in (r.get("outputs") or {}).items():
        row = [_round(m.get(k)) for k in METRICS]
        extra = {}
        for key in ("vs_values", "vs_native"):
            if isinstance(m.get(key), dict):
                extra[key] = _round({k: v for k, v in m[key].items() if k in ("max_abs", "ratio", "atol", "ok")})
        outputs[name] = row + ([extra] if extra else [])
    if outputs:
        out["o"] = outputs
    for key, short in (("explanation", "x"), ("source", "src"), ("native", "nat"), ("unsupported_outputs", "uo")):
        if r.get(key):
            out[short] = _compact(r[key])
    if (r.get("known") or {}).get("link"):
        out["link"] = r["known"]["link"]
    if (r.get("known") or {}).get("platform_dependent"):
        out["pd"] = [r["known"].get("index"), r["known"].get("observed")]
    if r.get("verdict"):  # firm / fragile, the margin and the output it rests on, strictness
        out["v"] = [r["verdict"], _round(r.get("margin")), r.get("margin_output"), bool(r.get("strict"))]
    if r.get("traceback"):
        out["tb"] = str(r["traceback"])[-2000:]
    if isinstance(r.get("seconds"), (int, float)):
        out["t"] = float(f"{r['seconds']:.3g}")
    return out


def _round(value):
    """Numbers to 4 significant digits (non-finite ones as strings), everywhere inside ``value``."""
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _round(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    return value


def _compact(value, depth=0):
    """Like :func:`_round`, and a literal array of more than 8 numbers (a weight, say) becomes a
    one-line summary: the report never carries raw arrays."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int, float)):
        return _round(value)
    if isinstance(value, dict):
        return {str(k): _compact(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        flat = _flatten(value)
        if flat is not None and len(flat) > 8 and depth > 0:
            nums = [float(v) for v in flat if isinstance(v, (int, float)) and math.isfinite(v)]
            span = f", min {min(nums):.4g}, max {max(nums):.4g}" if nums else ""
            return f"array of {len(flat)} values{span}"
        return [_compact(v, depth + 1) for v in value]
    return str(value)


def _flatten(value):
    out = []
    for v in value:
        if isinstance(v, (list, tuple)):
            inner = _flatten(v)
            if inner is None:
                return None
            out += inner
        elif isinstance(v, (int, float)) and not isinstance(v, bool) or isinstance(v, str) and v in NONFINITE:
            out.append(v)
        else:
            return None
    return out


def _case_path(file: str, env: dict) -> tuple[str, str]:
    """The case file as a pytest argument, and the ``--cases`` option it needs outside ``cases/``."""
    if not file:
        return "cases/?.yaml", ""
    path = Path(file)
    for rootdir in [env.get("rootdir")] + [run.get("rootdir") for run in env.get("runs") or []]:
        if rootdir and path.is_relative_to(rootdir) and path.relative_to(rootdir).parts[:1] == ("cases",):
            return path.relative_to(rootdir).as_posix(), ""
    if not path.is_absolute():
        return path.as_posix(), "" if path.parts[:1] == ("cases",) else f" --cases {shlex.quote(path.as_posix())}"
    if path.parent.name == "cases":
        return f"cases/{path.name}", ""  # the repository's own case folder, on whichever machine ran it
    return path.as_posix(), f" --cases {shlex.quote(path.as_posix())}"


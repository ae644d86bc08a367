"""The HTML report: :func:`merge` conformance.json documents, :func:`render` one self-contained page.

    python -m normconf report reports/conformance.json gpu/conformance.json -o reports/conformance.html

The page loads nothing (no network): CSS and JS are inline, the stability plot is an inline SVG drawn
with matplotlib. The heatmap and the overview are plain HTML; each case's details are drawn by the
page's script from one embedded JSON blob when they are opened, which keeps a 5,000-result report
small and quick to open.

>>> doc = merge([{"schema_version": 1, "environment": {}, "results": [], "matrices": {}, "cases": {}}], ["a.json"])
>>> doc["environment"]["runs"][0]["source"], doc["conflicts"]
('a.json', [])
>>> render(doc).startswith("<!doctype html>")
True
"""
from __future__ import annotations

import html
import io
import json
import math
import shlex
from pathlib import Path

from .margin import FIRM_AGREE, FIRM_DIFFER
from .report import SCHEMA_VERSION, STATUSES

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
# The verdict filter's choices: a strict fragile verdict is one the run enforces (no platform_dependent entry).
VERDICTS = ("firm", "fragile", "fragile, strict")
# Heatmap colours: error / tolerance on a log scale, 1e-4 .. 1e4 in half decades (17 buckets).
LOG_LOW, LOG_HIGH, PER_DECADE = -4, 4, 2
STOPS = [(-4, (238, 247, 238)), (-2, (191, 227, 180)), (-1, (140, 207, 126)), (-0.25, (210, 230, 110)),
         (0, (255, 224, 102)), (1, (253, 141, 60)), (2, (227, 26, 28)), (4, (103, 0, 13))]
METRICS = ("max_abs", "max_rel", "max_ulp", "worst_index", "ratio", "atol", "rtol", "ok")
# Fields of a result that say nothing about its numbers: two results differing only there are the same.
VOLATILE = ("seconds", "source", "traceback", "has_arrays")


# ----------------------------------------------------------------------------------------------- merge

def merge(docs: list[dict], sources: list[str]) -> dict:
    """One conformance document from several (a CPU run and a GPU run, say), same schema.

    Results are concatenated, each tagged with ``source``; a (case, adapter) pair seen in several
    documents is kept once when the records agree, and every distinct record is kept (and listed in
    ``conflicts``) when they do not. An ``unavailable`` result is dropped where another document ran
    that pair. Matrices are merged per case by label (oracle first): a pair of labels never computed
    together stays null. ``environment["runs"]`` keeps each source's environment.

    >>> a = {"schema_version": 1, "environment": {"adapters": {"numpy": {}}}, "cases": {},
    ...      "results": [{"case": "f/c", "adapter": "numpy", "status": "pass", "outputs": {}}]}
    >>> b = {"schema_version": 1, "environment": {"adapters": {"torch": {}}}, "cases": {},
    ...      "results": [{"case": "f/c", "adapter": "numpy", "status": "fail", "outputs": {}}]}
    >>> m = merge([a, b], ["cpu.json", "gpu.json"])
    >>> len(m["results"]), m["conflicts"][0]["statuses"], sorted(m["environment"]["adapters"])
    (2, ['pass', 'fail'], ['numpy', 'torch'])
    """
    if len(docs) != len(sources):
        raise ValueError(f"merge: {len(docs)} documents but {len(sources)} source names")
    for doc, source in zip(docs, sources):
        if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
            raise ValueError(f"{source}: not a conformance.json document (no 'results' list)")
        if doc.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"{source}: schema_version {doc.get('schema_version')!r}; "
                             f"this normconf reads version {SCHEMA_VERSION}")

    runs, adapters, cases = [], {}, {}
    groups: dict[tuple[str, str], list[dict]] = {}
    for doc, source in zip(docs, sources):
        env = doc.get("environment") or {}
        if isinstance(env.get("runs"), list):  # an already merged document keeps its runs
            runs += [dict(run) for run in env["runs"]]
        else:
            runs.append({"source": source, **env})
        for name, info in (env.get("adapters") or {}).items():
            # the description from a run where the adapter was available wins (a GPU run's torch-cuda)
            if name not in adapters or (info or {}).get("available") and not adapters[name].get("available"):
                adapters[name] = dict(info or {})
        for key, summary in (doc.get("cases") or {}).items():
            # the first summary, unless a later one has the input's statistics (a run where the case ran)
            if key not in cases or "min" in _input(summary) and "min" not in _input(cases[key]):
                cases[key] = summary
        for r in doc["results"]:
            r = dict(r)
            r.setdefault("source", source)
            groups.setdefault((r["case"], r["adapter"]), []).append(r)

    results, conflicts, superseded = [], [], 0
    for (case, adapter), records in groups.items():
        ran = [r for r in records if r.get("status") != "unavailable"]
        if ran and len(ran) < len(records):
            superseded += len(records) - len(ran)
            records = ran
        distinct: dict[str, dict] = {}
        for r in records:
            distinct.setdefault(_signature(r), r)
        kept = list(distinct.values())
        results += kept
        if len(kept) > 1:
            statuses = [r.get("status") for r in kept]
            conflicts.append({"case": case, "adapter": adapter, "sources": [r["source"] for r in kept],
                              "statuses": statuses, "kind": "status" if len(set(statuses)) > 1 else "metrics"})
    results.sort(key=lambda r: (r["case"], r["adapter"]))  # stable: sources stay in the order given

    environment = {"python": _joined(run.get("python") for run in runs),
                   "platform": _joined(run.get("platform") for run in runs),
                   "adapters": adapters, "runs": runs}
    return {"schema_version": SCHEMA_VERSION, "environment": environment, "results": results,
            "matrices": _merge_matrices(docs, sources), "cases": cases, "conflicts": conflicts,
            "merged": {"sources": list(sources), "superseded_unavailable": superseded}}


def _input(summary) -> dict:
    return (summary or {}).get("input") or {}


def _signature(result: dict) -> str:
    if result.get("status") in ("unsupported", "unavailable"):
        return result.get("status")  # the same verdict, whatever each machine's wording
    return json.dumps({k: v for k, v in result.items() if k not in VOLATILE}, sort_keys=True, default=str)


def _joined(values) -> str | None:
    seen = list(dict.fromkeys(str(v) for v in values if v))
    return " | ".join(seen) if seen else None


def _merge_matrices(docs: list[dict], sources: list[str]) -> dict:
    merged: dict[str, dict] = {}
    for doc, source in zip(docs, sources):
        for case, m in (doc.get("matrices") or {}).items():
            acc = merged.setdefault(case, {"labels": ["oracle"], "cells": {}, "by": {}, "label_sources": {}, "pairs": []})
            for pair in m.get("pairs") or []:  # why two adapters differ; the same text from two runs once
                if pair not in acc["pairs"]:
                    acc["pairs"].append(pair)
            labels = m.get("labels") or []
            for a in labels:
                if a not in acc["labels"]:
                    acc["labels"].append(a)
                have = acc["label_sources"].setdefault(a, [])
                for s in (m.get("label_sources") or {}).get(a, [source]):
                    if s not in have:
                        have.append(s)
            grids = [(acc["cells"], m.get("max_abs"))]
            grids += [(acc["by"].setdefault(name, {}), grid) for name, grid in (m.get("by_output") or {}).items()]
            for cells, grid in grids:
                for i, a in enumerate(labels):
                    for j, b in enumerate(labels):
                        value = grid[i][j] if grid and i < len(grid) and j < len(grid[i]) else None
                        if value is not None:
                            cells[a, b] = _worse(cells.get((a, b)), value)
    def grid(cells, labels):
        return [[cells.get((a, b)) for b in labels] for a in labels]

    return {case: {"labels": acc["labels"], "max_abs": grid(acc["cells"], acc["labels"]),
                   "by_output": {name: grid(cells, acc["labels"]) for name, cells in sorted(acc["by"].items())},
                   "label_sources": acc["label_sources"], "pairs": acc["pairs"]}
            for case, acc in merged.items()}


def _worse(old, new):
    """The larger of two max-abs values ('nan' and 'inf' are stored as strings and win)."""
    if old is None:
        return new
    return max(old, new, key=lambda v: (2, 0) if v == "nan" else (1, 0) if v == "inf" else (0, float(v)))


# ---------------------------------------------------------------------------------------------- render

def render(doc: dict) -> str:
    """The self-contained HTML page of a conformance document (from the plugin or from :func:`merge`).

    >>> page = render({"schema_version": 1, "environment": {}, "results": [], "matrices": {}, "cases": {}})
    >>> page.startswith("<!doctype html>")
    True
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

    parts = [_head(), '<body>', _header(doc, results, adapters, case_keys),
             _filters(info, adapters), _overview(results, adapters), _conflicts(doc.get("conflicts") or []),
             _heatmap(case_keys, info, by_case, adapters), _stability(doc, results),
             _case_sections(case_keys, info, by_case),
             _environment(env), _blob(doc, case_keys, info, by_case, adapters), f"<script>{SCRIPT}</script>",
             "</body></html>\n"]
    return "\n".join(p for p in parts if p)


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _anchor(key: str) -> str:
    """The id of a case's section (ids may hold any character but white space)."""
    return "case-" + "_".join(key.split())


def _case_info(key: str, summary: dict, records: list[dict]) -> dict:
    first = records[0]
    return {"key": key, "anchor": _anchor(key), "op": summary.get("op") or first.get("op") or "",
            "dtype": summary.get("dtype") or first.get("dtype") or "",
            "tags": list(summary.get("tags") or first.get("tags") or []), "summary": summary}


def _ratio(result: dict) -> float | None:
    """Max over outputs of error / tolerance; None where nothing was compared."""
    values = []
    for m in (result.get("outputs") or {}).values():
        r = m.get("ratio")
        if isinstance(r, (int, float)):
            values.append(float(r))
        elif isinstance(r, str):
            values.append(math.inf)  # 'inf' or 'nan': NaN where a number was due
    return max(values) if values else None


def _bucket(ratio: float | None) -> int | None:
    if ratio is None:
        return None
    if ratio <= 0:
        return 0
    level = min(max(math.log10(ratio) if math.isfinite(ratio) else LOG_HIGH, LOG_LOW), LOG_HIGH)
    return int(round((level - LOG_LOW) * PER_DECADE))


def _colour(level: float) -> tuple[int, int, int]:
    for (x0, c0), (x1, c1) in zip(STOPS, STOPS[1:]):
        if level <= x1:
            t = (level - x0) / (x1 - x0)
            return tuple(int(round(a + (b - a) * t)) for a, b in zip(c0, c1))
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


def _head() -> str:
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<title>normconf conformance report</title><link rel="icon" href="data:,">'
            f'<style>{CSS}{_bucket_css()}</style></head>')


def _header(doc, results, adapters, case_keys) -> str:
    counts = _count(results)
    total = " ".join(f'<span class="n st-{s}" title="{_e(STATUS_TEXT[s])}">{counts[s]} {s}</span>'
                     for s in STATUSES if counts.get(s))
    merged = doc.get("merged") or {}
    src = ""
    if merged.get("sources"):
        src = "<p>merged from " + ", ".join(f"<code>{_e(s)}</code>" for s in merged["sources"]) + "."
        if merged.get("superseded_unavailable"):
            src += (f" {merged['superseded_unavailable']} <em>unavailable</em> result(s) left out: another "
                    "run ran the same case on the same adapter.")
        src += "</p>"
    nav = " \u00b7 ".join(f'<a href="#{a}">{t}</a>' for a, t in
                          (("overview", "overview"), ("heatmap", "heatmap"), ("stability", "stability"),
                           ("cases", "cases"), ("environment", "environment")))
    if doc.get("conflicts"):
        nav += ' \u00b7 <a href="#conflicts">conflicts</a>'
    fragile = [r for r in results if r.get("verdict") == "fragile"]
    strict = sum(bool(r.get("strict")) for r in fragile)
    # a document from before verdicts had a margin has nothing to count
    firmness = "" if not any("verdict" in r for r in results) else (f'<p class="vd">{len(fragile)} fragile verdict{"" if len(fragile) == 1 else "s"} '
                f'(<b>{strict} strict</b>): error / tolerance between {FIRM_AGREE:g} and {FIRM_DIFFER:g}, where '
                'another machine\'s order of additions could flip the result; marked \u25e4 in the heatmap '
                '(grey where a <code>platform_dependent</code> known entry accepts either outcome).</p>')
    return (f'<header><h1>normconf conformance report</h1><p>{len(results)} results, {len(case_keys)} cases, '
            f'{len(adapters)} adapters: {total}</p>{firmness}{_cpus(doc.get("environment") or {})}{src}'
            f'<nav>{nav}</nav></header>')


def _cpus(env: dict) -> str:
    """The CPU of each run (``environment.cpu``: model and the ISA flags that change numerics), when
    the runs recorded it: verdicts near their tolerance depend on it."""
    runs = env.get("runs") if isinstance(env.get("runs"), list) else [env]
    lines = []
    for run in runs:
        cpu = run.get("cpu")
        if not isinstance(cpu, dict):
            continue
        flags = cpu.get("flags")
        flags = " ".join(str(f) for f in flags) if isinstance(flags, list) else str(flags or "")
        source = f' (<code>{_e(run["source"])}</code>)' if run.get("source") else ""
        lines.append(f'<span class="cpu">CPU{source}: <b>{_e(cpu.get("model") or "unknown")}</b>'
                     + (f'; flags: <code>{_e(flags)}</code>' if flags else "") + "</span>")
    return f'<p class="cpus">{"<br>".join(lines)}</p>' if lines else ""


def _count(results) -> dict:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.get("status")] = counts.get(r.get("status"), 0) + 1
    return counts


def _filters(info, adapters) -> str:
    def select(name, values):
        options = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in values)
        return (f'<label>{name} <select id="f-{name}" data-filter="{name}"><option value="">all</option>'
                f'{options}</select></label>')

    ops = sorted({i["op"] for i in info.values()})
    dtypes = sorted({i["dtype"] for i in info.values()})
    tags = sorted({t for i in info.values() for t in i["tags"]})
    return ('<section id="filters" class="filters"><b>filter</b> '
            + select("op", ops) + select("adapter", adapters) + select("dtype", dtypes)
            + select("status", STATUSES) + select("verdict", VERDICTS) + select("tag", tags)
            + '<button type="button" id="f-reset">reset</button> <span id="f-count"></span></section>')


def _overview(results, adapters) -> str:
    ops = sorted({r.get("op") or "" for r in results})
    grid: dict[tuple[str, str], dict[str, int]] = {}
    for r in results:
        for key in ((r["adapter"], r.get("op") or ""), (r["adapter"], "*"), ("*", r.get("op") or ""), ("*", "*")):
            cell = grid.setdefault(key, {})
            cell[r.get("status")] = cell.get(r.get("status"), 0) + 1

    def cell(key):
        counts = grid.get(key, {})
        return "".join(f'<span class="n st-{s}" title="{counts[s]} {_e(STATUS_TEXT[s])}">{counts[s]}</span>'
                       for s in STATUSES if counts.get(s))

    head = "".join(f"<th>{_e(op)}</th>" for op in ops)
    rows = [f'<tr><th class="rl">{_e(a)}</th>' + "".join(f"<td>{cell((a, op))}</td>" for op in ops)
            + f"<td>{cell((a, '*'))}</td></tr>" for a in adapters]
    rows.append('<tr class="total"><th class="rl">all adapters</th>'
                + "".join(f"<td>{cell(('*', op))}</td>" for op in ops) + f"<td>{cell(('*', '*'))}</td></tr>")
    legend = " ".join(f'<span class="n st-{s}">{s}</span>' for s in STATUSES)
    return (f'<section id="overview"><h2>Overview</h2><p class="legend">results per adapter and op: {legend}</p>'
            f'<table class="ov"><thead><tr><th>adapter \\ op</th>{head}<th>all ops</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></section>')


def _conflicts(conflicts) -> str:
    if not conflicts:
        return ""

    def rows(items):
        return "".join(f'<tr><td><a href="#{_e(_anchor(c["case"]))}">{_e(c["case"])}</a></td>'
                       f'<td>{_e(c["adapter"])}</td><td>'
                       + "<br>".join(f'<span class="n st-{_e(s)}">{_e(s)}</span> <code>{_e(src)}</code>'
                                     for s, src in zip(c["statuses"], c["sources"])) + "</td></tr>"
                       for c in items)

    by_status = [c for c in conflicts if c.get("kind") != "metrics"]
    by_metrics = [c for c in conflicts if c.get("kind") == "metrics"]
    head = "<tr><th>case</th><th>adapter</th><th>status per source</th></tr>"
    out = [f'<section id="conflicts"><h2>Conflicts ({len(conflicts)})</h2>'
           "<p>The same (case, adapter) gave different results in different runs; every record is kept, "
           "and the heatmap cell (outlined) shows the most severe.</p>"]
    if by_status:
        out.append(f"<h3>Different status ({len(by_status)})</h3>"
                   f"<table class='cf'>{head}{rows(by_status)}</table>")
    if by_metrics:
        out.append(f"<details><summary>Same status, different metrics ({len(by_metrics)})</summary>"
                   f"<table class='cf'>{head}{rows(by_metrics)}</table></details>")
    out.append("</section>")
    return "".join(out)


def _heatmap(case_keys, info, by_case, adapters) -> str:
    col = {a: j for j, a in enumerate(adapters)}
    head = "".join(f'<span class="ah" data-a="{j}" title="{_e(a)}"><span>{_e(a)}</span></span>'
                   for j, a in enumerate(adapters))
    rows = []
    for i, key in enumerate(case_keys):
        per: dict[str, list[dict]] = {}
        for r in by_case[key]:
            per.setdefault(r["adapter"], []).append(r)
        cells = ['<i class="none" data-a="%d"></i>' % j for j in range(len(adapters))]
        for adapter, records in per.items():
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
                            key=lambda nm: _num(nm[1].get("ratio")), default=None)
                if worst:
                    title += f" ({worst[0]}: max_abs {_fmt(worst[1].get('max_abs'))})"
            for r in fragile:
                title += (f"; fragile verdict: {r.get('margin_output')} at {_fmt(r.get('margin'))} x tolerance"
                          + ("" if r.get("strict") else " (platform_dependent: either outcome accepted)"))
            if len(records) > 1:
                title += "; runs disagree: " + ", ".join(f"{r.get('status')} in {r.get('source')}" for r in records)
            j = col[adapter]
            cells[j] = f'<i class="{_e(classes)}" data-a="{j}" title="{_e(title)}">{ICONS.get(status, "?")}</i>'
        rows.append(f'<div class="row" data-c="{i}"><a class="rl" href="#{_e(info[key]["anchor"])}" '
                    f'title="{_e(key)}">{_e(key)}</a>{"".join(cells)}</div>')
    legend = "".join(f'<span class="sw b{b}">{_e(_legend_label(b))}</span>'
                     for b in range((LOG_HIGH - LOG_LOW) * PER_DECADE + 1))
    icons = " ".join(f'<span class="sw key st-{s}">{ICONS[s] or "&nbsp;"}</span> {s}' for s in STATUSES)
    icons += (' <span class="sw key fr">&nbsp;</span> fragile verdict <span class="sw key fr ns">&nbsp;</span> '
              'fragile, either outcome accepted')
    return ('<section id="heatmap"><h2>Heatmap</h2>'
            f'<p class="legend">error / tolerance, max over outputs (log scale): {legend}</p>'
            f'<p class="legend">{icons} <span class="sw key cf">&nbsp;</span> runs disagree. '
            'Hover a cell for the number; click it for the case.</p>'
            f'<div class="hmwrap"><div class="hm" id="hm" style="--n:{len(adapters)}">'
            f'<div class="hrow"><span class="corner">case \\ adapter</span>{head}</div>'
            f'{"".join(rows)}</div></div></section>')


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


def _case_sections(case_keys, info, by_case) -> str:
    out = ['<section id="cases"><h2>Cases</h2><p>Click a case (or a heatmap cell) for its parameters, '
           'input, metrics per adapter, pairwise matrix and the commands that reproduce it.</p>']
    for i, key in enumerate(case_keys):
        it = info[key]
        statuses = _count(by_case[key])
        badges = "".join(f'<span class="n st-{s}">{statuses[s]}</span>' for s in STATUSES if statuses.get(s))
        desc = it["summary"].get("description") or ""
        out.append(f'<details class="case" id="{_e(it["anchor"])}" data-c="{i}"><summary><code>{_e(key)}</code> '
                   f'<span class="meta">{_e(it["op"])} {_e(it["dtype"])}</span> {badges} '
                   f'<span class="desc">{_e(desc)}</span></summary><div class="body"></div></details>')
    out.append("</section>")
    return "\n".join(out)


ADAPTER_COLUMNS = ("version", "framework", "device", "available", "reason", "tf32")


def _plain(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return json.dumps(value, default=str)
    return _fmt(value)


def _environment(env: dict) -> str:
    runs = env.get("runs") if isinstance(env.get("runs"), list) else [dict(env, source=None)]
    blocks = []
    for run in runs:
        rows = []
        for key, value in run.items():
            if key in ("adapters", "source"):
                continue
            if key == "command" and isinstance(value, list):
                value = shlex.join(str(v) for v in value)
            elif isinstance(value, (dict, list)):
                value = json.dumps(value, default=str)
            rows.append(f"<tr><th>{_e(key)}</th><td><code>{_e(value)}</code></td></tr>")
        arows = []
        for name, a in (run.get("adapters") or {}).items():
            a = a or {}
            state = "available" if a.get("available") else f"unavailable: {a.get('reason') or ''}"
            tf32 = a.get("tf32")  # the torch-cuda adapter reports {matmul, cudnn}
            tf32 = _plain(tf32) if "tf32" in a else ""
            extra = ", ".join(f"{k}={_plain(v)}" for k, v in a.items() if k not in ADAPTER_COLUMNS)
            arows.append(f"<tr><td>{_e(name)}</td><td>{_e(a.get('framework'))}</td><td>{_e(a.get('version'))}</td>"
                         f"<td>{_e(a.get('device'))}</td><td class='{'ok' if a.get('available') else 'off'}'>"
                         f"{_e(state)}</td><td>{_e(tf32)}</td><td>{_e(extra)}</td></tr>")
        title = f"run <code>{_e(run['source'])}</code>" if run.get("source") else "run"
        blocks.append(f'<div class="run"><h3>{title}</h3><table class="kv">{"".join(rows)}</table>'
                      '<table class="ad"><tr><th>adapter</th><th>framework</th><th>version</th><th>device</th>'
                      f'<th>availability</th><th>TF32</th><th>more</th></tr>{"".join(arows)}</table></div>')
    return f'<section id="environment"><h2>Environment</h2>{"".join(blocks)}</section>'


# ------------------------------------------------------------------------------------------- stability

def _stability(doc: dict, results: list[dict]) -> str:
    head = '<section id="stability"><h2>Stability</h2>'
    try:
        svg = _stability_svg(doc, results)
    except ImportError as exc:
        return f"{head}<p>No plot: matplotlib is not installed ({_e(exc)}).</p></section>"
    if svg is None:
        return f"{head}<p>No result of a case tagged <code>stability</code> with a generator mean.</p></section>"
    return (f"{head}<p>Max |error| of <code>y</code> against the input's mean offset, for the cases tagged "
            "<code>stability</code> (std fixed, mean growing): the largest over the cases of an op at each offset; "
            "colour = adapter, marker = dtype, grey = the tolerance (atol) of that dtype. Points at the bottom edge "
            "are exact (0); at the top edge, inf or NaN.</p>"
            f'<div class="plot">{svg}</div></section>')


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
    markers = dict(zip(dtypes, "os^Dvp*h"))
    styles = dict(zip(dtypes, ["-", "--", ":", "-.", "-", "--", ":", "-."]))
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
        for ax, op in zip(axes.flat, ops):
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

def _blob(doc, case_keys, info, by_case, adapters) -> str:
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
    data = {"adapters": adapters, "metrics": METRICS, "cases": cases}
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    # '<', '>' and '&' occur only inside JSON strings, where \uXXXX means the same character: no "</script>"
    # or "<!--" in a description can end the element early
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="normconf-data">{text}</script>'


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
        elif isinstance(v, (int, float)) and not isinstance(v, bool) or v in ("nan", "inf", "-inf"):
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


# ------------------------------------------------------------------------------------------ CSS and JS

CSS = """
:root{--ink:#1d232a;--mute:#66707a;--line:#d8dde3;--pane:#f5f7f9}
*{box-sizing:border-box}[hidden]{display:none!important}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:#fff;
  margin:0 auto;padding:0 20px 40px;max-width:1500px}
h1{font-size:22px;margin:18px 0 4px}h3{font-size:15px;margin:14px 0 6px}
h2{font-size:18px;margin:26px 0 8px;border-bottom:1px solid var(--line);padding-bottom:3px}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
a{color:#0b5cad}nav a{margin:0 2px}
table{border-collapse:collapse}th,td{padding:2px 6px;text-align:left;vertical-align:top}
.filters{position:sticky;top:0;z-index:5;background:#eef2f6;border:1px solid var(--line);padding:6px 10px;
  margin:10px 0;border-radius:4px}
.filters label{margin-right:10px}.filters select{max-width:200px}#f-count{color:var(--mute)}
section,details.case{scroll-margin-top:48px}
.n{display:inline-block;min-width:22px;padding:0 4px;margin:1px;border-radius:3px;font-size:12px;
  text-align:center;color:#fff}
.st-pass.n{background:#2e8540}.st-expected.n{background:#6f42c1}.st-fail.n{background:#c62828}
.st-stale.n{background:#e07000}.st-error.n{background:#222}.st-unsupported.n{background:#8a939c}
.st-unavailable.n{background:#b9c0c7}
.ov td,.ov th{border:1px solid var(--line);padding:3px 6px}.ov thead th,.ov .total{background:var(--pane)}
.legend{color:var(--mute);font-size:12px;margin:4px 0}
.sw{display:inline-block;min-width:16px;height:16px;line-height:16px;font-size:10px;text-align:center;
  vertical-align:middle}
.sw.key{border:1px solid #fff}
.hmwrap{overflow:auto;max-height:80vh;border:1px solid var(--line)}
/* a grid of fixed tracks, not a table: 5,000 cells lay out quickly, and rows out of view are skipped */
.hm{font-size:10px;width:max-content}
.hm .row,.hm .hrow{display:grid;grid-template-columns:360px repeat(var(--n),17px);width:max-content}
.hm .row{content-visibility:auto;contain-intrinsic-size:auto 17px;height:17px}
.hm .hrow{position:sticky;top:0;background:#fff;z-index:2;align-items:end}
.hm .ah>span{display:block;writing-mode:vertical-rl;transform:rotate(180deg);padding:4px 0 2px;max-height:150px;
  overflow:hidden;white-space:nowrap}
.hm .rl,.hm .corner{position:sticky;left:0;background:#fff;z-index:1;overflow:hidden;text-overflow:ellipsis;
  white-space:nowrap;padding-right:6px;color:var(--ink);text-decoration:none;line-height:17px}
.hm .corner{color:var(--mute)}.hm .row:hover .rl{background:#fff7d6}
.hm i{display:block;font-style:normal;height:17px;text-align:center;border:1px solid #fff;line-height:15px}
.hm i.cell{cursor:pointer}.hm i.none{background:#fafafa}
:is(.cell,.key).st-fail{outline:2px solid #b00;outline-offset:-2px;font-weight:bold}
:is(.cell,.key).st-stale{outline:2px solid #e07000;outline-offset:-2px;font-weight:bold}
:is(.cell,.key).st-expected{outline:1px dashed #5a2ea6;outline-offset:-2px}
:is(.cell,.key).st-error{background:#222;color:#fff}
:is(.cell,.key).st-unsupported{background:#d4d9de;color:#555}
:is(.cell,.key).st-unavailable{color:#777;
  background:repeating-linear-gradient(45deg,#eceff2,#eceff2 3px,#d9dee3 3px,#d9dee3 5px)}
:is(.cell,.key).cf{box-shadow:inset 0 0 0 2px #d0008f}
.hm i.fr,.sw.fr{background-image:linear-gradient(135deg,#111 0 5px,transparent 5px)}
.hm i.fr.ns,.sw.fr.ns{background-image:linear-gradient(135deg,#9aa3ab 0 5px,transparent 5px)}
.sw.fr{background-color:#fff;border:1px solid var(--line)}
p.vd,p.cpus{margin:2px 0;font-size:13px}.cpus code{font-size:11px}
div.vd{font-size:11px;color:var(--mute);white-space:nowrap}div.vd.fragile{color:#b00;font-weight:bold}
div.vd.fragile.ns{color:#8a5a00;font-weight:normal}
.plot svg{max-width:100%;height:auto}
details.case{border:1px solid var(--line);border-radius:4px;margin:3px 0;background:#fff;
  content-visibility:auto;contain-intrinsic-size:auto 28px}
details.case>summary{cursor:pointer;padding:3px 8px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
details.case[open]>summary{background:var(--pane);white-space:normal}
details.case .meta{color:var(--mute)}details.case .desc{color:var(--mute);font-size:12px}
.body{padding:6px 12px 10px}.body table{margin:4px 0 8px}
.kv th{color:var(--mute);font-weight:normal;padding-right:12px;white-space:nowrap}
.res{font-size:12px}.res th{background:var(--pane)}.res td,.res th{border:1px solid var(--line)}
.res td.num{text-align:right;font-variant-numeric:tabular-nums}.res .bad{color:#b00;font-weight:bold}
.res tr.why td{color:#333;background:#fcfcfd;white-space:pre-wrap}.res tr.hl td{background:#fff3c4}
.mx{font-size:11px}.mx td,.mx th{border:1px solid var(--line);text-align:right;padding:1px 5px}
.mx td.na{color:#aaa;text-align:center}
pre.repro{background:#f4f6f8;padding:6px 8px;overflow:auto;border-radius:3px}
.run{border:1px solid var(--line);border-radius:4px;padding:4px 10px;margin:6px 0}
.ad{font-size:12px}.ad td,.ad th{border:1px solid var(--line)}.ad td.ok{color:#2e8540}.ad td.off{color:#777}
.cf td{border-top:1px solid var(--line)}
.flash{animation:flash 1.2s}@keyframes flash{from{box-shadow:0 0 0 3px #ffb300}to{box-shadow:none}}
"""

# Case details are drawn from the JSON blob when opened, with textContent only (never innerHTML): text
# from case files cannot become markup.
SCRIPT = r"""
(function () {
"use strict";
var D = JSON.parse(document.getElementById("normconf-data").textContent);
var M = {};
D.metrics.forEach(function (name, i) { M[name] = i; });

function el(tag, attrs) {
  var e = document.createElement(tag);
  for (var k in attrs || {}) {
    var v = attrs[k];
    if (v === null || v === undefined) continue;
    if (k === "text") e.textContent = v; else if (k === "cls") e.className = v; else e.setAttribute(k, v);
  }
  for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
  return e;
}
function add(parent) {  // append the children that exist (Element.append would print "null")
  for (var i = 1; i < arguments.length; i++) {
    var kid = arguments[i];
    if (kid !== null && kid !== undefined) parent.append(kid instanceof Node ? kid : String(kid));
  }
}
function fmt(v) {
  if (v === null || v === undefined) return "\u2014";
  if (typeof v === "number") {
    if (v === 0) return "0";
    var a = Math.abs(v);
    return (a >= 1e-3 && a < 1e5) ? String(+v.toPrecision(4)) : v.toExponential(3);
  }
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
function text(v) {
  if (v && typeof v === "object" && !Array.isArray(v)) {
    return Object.keys(v).map(function (k) { return k + " " + text(v[k]); }).join(", ");
  }
  return typeof v === "string" ? v : fmt(v);
}
function link(url) {
  if (!/^https?:\/\//i.test(url)) return document.createTextNode(url);
  return el("a", {href: url, rel: "noreferrer", text: url});
}
function shq(s) { return /^[A-Za-z0-9_\/.:=@,+-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'"; }
function pyrepr(s) { return "'" + s.replace(/\\/g, "\\\\").replace(/'/g, "\\'") + "'"; }
function badge(s) { return el("span", {cls: "n st-" + s, text: s}); }
function kv(rows) {
  var t = el("table", {cls: "kv"});
  rows.forEach(function (r) {
    if (r[1] !== undefined && r[1] !== null && r[1] !== "") t.append(el("tr", null, el("th", {text: r[0]}), el("td", null, r[1])));
  });
  return t;
}
function bucket(ratio) {  // the heatmap's colour classes: half decades from 1e-4 (b0) to 1e4 (b16)
  return "b" + Math.max(0, Math.min(16, Math.round((Math.log10(Math.max(ratio, 1e-12)) + 4) * 2)));
}

function describe(body, c) {
  add(body, c.desc ? el("p", {text: c.desc}) : null);
  body.append(kv([["case", el("code", {text: c.k})], ["source", c.src ? link(c.src) : null], ["op", c.op],
    ["dtype", c.dtype], ["layout", c.layout], ["shape", c.shape ? "[" + c.shape.join(", ") + "]" : null],
    ["tags", c.tags.join(", ")], ["file", c.file]]));
  var params = Object.keys(c.params || {});
  if (params.length) {
    body.append(el("h3", {text: "Parameters"}));
    body.append(kv(params.map(function (k) { return [k, el("code", {text: text(c.params[k])})]; })));
  }
  var inp = c.input || {};
  var rows = [["values", inp.generator ? el("code", {text: "generator " + text(inp.generator)}) : "literal data"]];
  ["min", "max", "mean", "std", "condition"].forEach(function (k) {
    if (k in inp) rows.push([k === "condition" ? "condition (max |mean| / std)" : k, fmt(inp[k])]);
  });
  Object.keys(c.tol || {}).forEach(function (k) {
    // scale "max": the atol is in units of the output's largest |expected| (gradients)
    var unit = c.tol[k].scale === "max" ? " \u00d7 max|expected|" : "";
    rows.push(["tolerance " + k, "atol " + fmt(c.tol[k].atol) + unit + ", rtol " + fmt(c.tol[k].rtol)]);
  });
  body.append(el("h3", {text: "Input"}), kv(rows));
}

function results(body, c) {
  body.append(el("h3", {text: "Results"}));
  var t = el("table", {cls: "res"}), head = el("tr");
  ["adapter", "status", "output", "max_abs", "max_rel", "max_ulp", "worst_index", "error/tol", "atol", "rtol"]
    .forEach(function (h) { head.append(el("th", {text: h})); });
  t.append(head);
  c.res.forEach(function (r) {
    var names = Object.keys(r.o || {}), span = 0;
    names.forEach(function (name) { var x = r.o[name][D.metrics.length]; span += 1 + (x ? Object.keys(x).length : 0); });
    var first = el("tr", {"data-a": r.a});
    first.append(el("td", {rowspan: Math.max(1, span)}, el("b", {text: r.a}),
                    r.src ? el("div", {cls: "meta"}, el("small", {text: r.src})) : null));
    first.append(el("td", {rowspan: Math.max(1, span)}, badge(r.s), r.v ? el("div", {
      cls: "vd " + r.v[0] + (r.v[3] ? "" : " ns"),
      title: "the verdict rests on " + r.v[2] + " at " + fmt(r.v[1]) + " \u00d7 its tolerance",
      text: r.v[0] + " (" + r.v[2] + " " + fmt(r.v[1]) + "\u00d7" + (r.v[0] === "fragile" && !r.v[3] ? ", not strict" : "") + ")"
    }) : null));
    if (!names.length) { first.append(el("td", {colspan: 8, text: "no output compared"})); t.append(first); }
    names.forEach(function (name, i) {
      var m = r.o[name], row = i === 0 ? first : el("tr", {"data-a": r.a});
      row.append(el("td", {text: name}));
      ["max_abs", "max_rel", "max_ulp"].forEach(function (k) { row.append(el("td", {cls: "num", text: fmt(m[M[k]])})); });
      row.append(el("td", {text: m[M.worst_index] ? "[" + m[M.worst_index].join(", ") + "]" : "\u2014"}));
      row.append(el("td", {cls: "num" + (m[M.ok] === false ? " bad" : ""), text: fmt(m[M.ratio])}));
      row.append(el("td", {cls: "num", text: fmt(m[M.atol])}), el("td", {cls: "num", text: fmt(m[M.rtol])}));
      t.append(row);
      var extra = m[D.metrics.length] || {};  // against expect.values, against the native convention
      Object.keys(extra).forEach(function (key) {
        var line = name + " " + key.replace("_", " ") + ": " + text(extra[key]).replace("ratio", "error/tol");
        t.append(el("tr", {"data-a": r.a, cls: "why"}, el("td", {colspan: 8, text: line})));
      });
    });
    var why = [];
    if (r.r) why.push("reason: " + r.r);
    if (r.x) why.push("explanation: " + (r.x.cause ? "[" + r.x.cause + "] " : "") + (r.x.detail || "")
                      + (r.x.params ? " (" + text(r.x.params) + ")" : ""));
    if (r.nat) why.push("native conventions in play: " + text(r.nat));
    if (r.pd) why.push("platform dependent: known_discrepancies.yaml #" + r.pd[0] + " accepts a pass or its mismatch; "
                       + (r.pd[1] === "agrees" ? "it agrees here" : "the mismatch was seen here"));
    if (r.uo) why.push("outputs not compared: " + text(r.uo));
    if (r.tb) why.push("traceback:\n" + r.tb);
    if (why.length || r.link) {
      var cell = el("td", {colspan: 10, text: why.join("\n")});
      if (r.link) add(cell, why.length ? "\n" : "", "see ", link(r.link));
      t.append(el("tr", {cls: "why", "data-a": r.a}, cell));
    }
  });
  body.append(t);
}

function matrix(body, c) {
  if (!c.m || !c.m.labels) return;
  body.append(el("h3", {text: "Pairwise max |a \u2212 b| (largest over outputs)"}));
  var labels = c.m.labels, ls = c.m.ls || {}, mx = el("table", {cls: "mx"}), hr = el("tr", null, el("th"));
  labels.forEach(function (l) { hr.append(el("th", {text: l})); });
  mx.append(hr);
  var atol = c.tol && c.tol.y ? c.tol.y.atol : null, crossRun = false;
  labels.forEach(function (a, i) {
    var tr = el("tr", null, el("th", {text: a}));
    labels.forEach(function (b, j) {
      var v = c.m.v && c.m.v[i] ? c.m.v[i][j] : null;
      if (v === null || v === undefined) {
        var apart = ls[a] && ls[b] && !ls[a].some(function (s) { return ls[b].indexOf(s) >= 0; });
        crossRun = crossRun || apart;
        tr.append(el("td", {cls: "na", text: "n/a", title: apart
          ? "never computed together: " + a + " and " + b + " come from different runs, whose arrays are not kept"
          : "no output in common"}));
        return;
      }
      var cls = typeof v === "string" ? "b16" : atol ? bucket(v / atol) : "";
      tr.append(el("td", {cls: cls, text: fmt(v),
                          title: a + " vs " + b + (atol && typeof v === "number" ? ": " + fmt(v / atol) + " \u00d7 atol of y" : "")}));
    });
    mx.append(tr);
  });
  body.append(mx);
  if (c.m.why && c.m.why.length) {
    body.append(el("h3", {text: "Why they differ"}));
    var ul = el("ul", {cls: "why"});
    c.m.why.forEach(function (w) { ul.append(el("li", {text: w[0] + " vs " + w[1] + ": " + w[2]})); });
    body.append(ul);
  }
  if (crossRun) body.append(el("p", {cls: "legend", text: "n/a: these two were never in the same run. A merged "
    + "report keeps each run's metrics, not its arrays, so they cannot be compared here."}));
}

function reproduce(body, c) {
  body.append(el("h3", {text: "Reproduce"}));
  var lines = [];
  c.res.forEach(function (r) {
    if (r.s === "unavailable") return;
    lines.push("pytest " + shq(c.path + "::" + c.k + "[" + r.a + "]") + c.opts);
    lines.push("python -c \"import normconf, pprint; pprint.pprint(normconf.reproduce("
               + [pyrepr(c.path), pyrepr(c.id), pyrepr(r.a)].join(", ") + "))\"");
  });
  body.append(el("pre", {cls: "repro", text: lines.join("\n") || "(no adapter ran this case)"}));
}

function ensure(details) {
  var body = details.querySelector(".body");
  if (body.dataset.done) return;
  var c = D.cases[+details.dataset.c];
  describe(body, c); results(body, c); matrix(body, c); reproduce(body, c);
  body.dataset.done = "1";
}
function openCase(i, adapter) {
  var d = document.getElementById(D.cases[i].a);
  if (!d) return;
  if (d.hidden) reset();
  ensure(d);
  d.open = true;
  d.querySelectorAll("tr.hl").forEach(function (tr) { tr.classList.remove("hl"); });
  if (adapter) d.querySelectorAll("tr[data-a]").forEach(function (tr) {
    if (tr.getAttribute("data-a") === adapter) tr.classList.add("hl");
  });
  d.scrollIntoView({block: "start"});
  d.classList.remove("flash"); void d.offsetWidth; d.classList.add("flash");
}
document.addEventListener("toggle", function (ev) {
  var d = ev.target;
  if (d.classList && d.classList.contains("case") && d.open) ensure(d);
}, true);

var hm = document.getElementById("hm");
if (hm) hm.addEventListener("click", function (ev) {
  var cell = ev.target.closest(".cell");
  if (cell) openCase(+cell.closest(".row").dataset.c, D.adapters[+cell.dataset.a]);
});
document.querySelectorAll("a[href^='#case-']").forEach(function (a) {
  a.addEventListener("click", function (ev) {
    var d = document.getElementById(a.getAttribute("href").slice(1));
    if (!d || d.dataset.c === undefined) return;
    ev.preventDefault();
    openCase(+d.dataset.c, null);
    history.replaceState(null, "", a.getAttribute("href"));
  });
});

// Filters: a case is shown when its op, dtype and tag match and it has a result for the chosen adapter
// with the chosen status; the heatmap's columns of other adapters are hidden.
var selects = document.querySelectorAll("select[data-filter]");
var colStyle = document.createElement("style");
document.head.append(colStyle);
var rows = hm ? Array.prototype.slice.call(hm.querySelectorAll(".row")) : [];
var sections = D.cases.map(function (c) { return document.getElementById(c.a); });
function value(name) { var s = document.getElementById("f-" + name); return s ? s.value : ""; }
function apply() {
  var f = {op: value("op"), adapter: value("adapter"), dtype: value("dtype"), status: value("status"),
           verdict: value("verdict"), tag: value("tag")};
  var col = D.adapters.indexOf(f.adapter);
  colStyle.textContent = col >= 0 ? "#hm [data-a]:not([data-a=\"" + col + "\"]){display:none}" : "";
  var shown = 0;
  D.cases.forEach(function (c, i) {
    var ok = (!f.op || c.op === f.op) && (!f.dtype || c.dtype === f.dtype) && (!f.tag || c.tags.indexOf(f.tag) >= 0);
    if (ok && (f.adapter || f.status || f.verdict)) ok = c.res.some(function (r) {
      return (!f.adapter || r.a === f.adapter) && (!f.status || r.s === f.status) && verdictIs(r, f.verdict);
    });
    if (rows[i]) rows[i].hidden = !ok;
    if (sections[i]) sections[i].hidden = !ok;
    if (ok) shown++;
  });
  document.getElementById("f-count").textContent = "showing " + shown + " of " + D.cases.length + " cases";
}
function verdictIs(r, want) {  // "firm", "fragile" or "fragile, strict" (enforced: no platform_dependent entry)
  if (!want) return true;
  if (!r.v) return false;
  return want === "fragile, strict" ? r.v[0] === "fragile" && r.v[3] : r.v[0] === want;
}
function reset() { selects.forEach(function (s) { s.value = ""; }); apply(); }
selects.forEach(function (s) { s.addEventListener("change", apply); });
document.getElementById("f-reset").addEventListener("click", reset);
apply();

if (location.hash) {
  var id = location.hash.slice(1);
  try { id = decodeURIComponent(id); } catch (e) { /* a bare '%' in the hash */ }
  var target = document.getElementById(id);
  if (target && target.dataset.c !== undefined) openCase(+target.dataset.c, null);
}
window.normconfReady = performance.now();  // the browser test reads it
})();
"""

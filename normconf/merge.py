"""Merge several conformance.json documents (a CPU run and a GPU run, shards of one matrix) into one.

    python -m normconf report cpu.json gpu.json --json-out merged.json -o reports/conformance.html

The merged document has the same schema as a run's own (plus ``conflicts`` and ``merged``), so
:func:`normconf.html.render` and a later merge read it as they read a run's.
"""
from __future__ import annotations

import json

from .records import as_ratio
from .report import SCHEMA_VERSION

# Fields of a result that say nothing about its numbers: two results differing only there are the same.
VOLATILE = ("seconds", "source", "traceback", "has_arrays")


def merge(docs: list[dict], sources: list[str]) -> dict:
    """One conformance document from several (a CPU run and a GPU run, say), same schema.

    Results are concatenated, each tagged with ``source``; a (case, adapter) pair seen in several
    documents is kept once when the records agree, and every distinct record is kept (and listed in
    ``conflicts``) when they do not. An ``unavailable`` result is dropped where another document ran
    that pair. Matrices are merged per case by label (oracle first): a pair of labels never computed
    together stays null. ``environment["runs"]`` keeps each source's environment. ``not_run`` is
    carried over by :func:`merge_not_run`.

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
    for doc, source in zip(docs, sources, strict=True):
        if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
            raise ValueError(f"{source}: not a conformance.json document (no 'results' list)")
        if doc.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"{source}: schema_version {doc.get('schema_version')!r}; "
                             f"this normconf reads version {SCHEMA_VERSION}")

    runs: list[dict] = []
    adapters: dict[str, dict] = {}
    cases: dict[str, dict] = {}
    groups: dict[tuple[str, str], list[dict]] = {}
    for doc, source in zip(docs, sources, strict=True):
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
    not_run = merge_not_run([doc.get("not_run") or [] for doc in docs], results, cases)

    environment = {"python": _joined(run.get("python") for run in runs),
                   "platform": _joined(run.get("platform") for run in runs),
                   "adapters": adapters, "runs": runs}
    return {"schema_version": SCHEMA_VERSION, "environment": environment, "results": results,
            "matrices": _merge_matrices(docs, sources), "cases": cases, "not_run": not_run, "conflicts": conflicts,
            "merged": {"sources": list(sources), "superseded_unavailable": superseded}}


def merge_not_run(lists: list[list[dict]], results: list[dict], cases: dict[str, dict]) -> list[dict]:
    """The ``not_run`` entries of several documents, as one list for their merged document.

    An entry is dropped where a merged document ran what it names: an (adapter, op) entry where some
    result of that adapter and op has a status other than ``unavailable``; an adapter's op-less
    ``unavailable`` entry (every op) where the adapter has such a result for any op (the runs that had
    it list the ops it has no API for themselves). Entries of several documents for the same
    (adapter, op, status) are kept once, in the order first seen, with the first one's reason and
    the largest ``cases``: the runs may have selected the same cases (a CPU and a GPU run), so a sum
    could count a case twice; the largest is a lower bound. A ``subset`` entry (the cases an
    adapter's default subset left out of a run) is always kept: the adapter ran other cases, and
    which ones another document ran is not known from the entry.

    >>> cpu = [{"adapter": "torch-cuda", "op": None, "status": "unavailable", "cases": 4, "reason": "no GPU"},
    ...        {"adapter": "jax", "op": None, "status": "unavailable", "cases": 4, "reason": "no jax"}]
    >>> gpu = [{"adapter": "jax", "op": None, "status": "unavailable", "cases": 6, "reason": "jax missing"}]
    >>> ran = [{"case": "f/c", "adapter": "torch-cuda", "op": "layer_norm", "status": "pass"}]
    >>> [(e["adapter"], e["cases"], e["reason"]) for e in merge_not_run([cpu, gpu], ran, {})]
    [('jax', 6, 'no jax')]
    """
    ran_pairs: set[tuple[str, str | None]] = set()
    for r in results:
        if r.get("status") != "unavailable":
            op = r.get("op") or (cases.get(r["case"]) or {}).get("op")
            ran_pairs |= {(r["adapter"], op), (r["adapter"], None)}  # (adapter, None): it ran some op
    kept: dict[tuple[str, str | None, str], dict] = {}
    for entries in lists:
        for entry in entries:
            key = (entry["adapter"], entry.get("op"), entry["status"])
            if key[2] != "subset" and (key[0], key[1]) in ran_pairs:
                continue
            if key in kept:
                kept[key]["cases"] = max(kept[key]["cases"], entry["cases"])
            else:
                kept[key] = dict(entry)
    return list(kept.values())


def _input(summary) -> dict:
    return (summary or {}).get("input") or {}


def _signature(result: dict) -> str:
    status = result.get("status")
    if status in ("unsupported", "unavailable"):
        return status  # the same verdict, whatever each machine's wording
    return json.dumps({k: v for k, v in result.items() if k not in VOLATILE}, sort_keys=True, default=str)


def _joined(values) -> str | None:
    seen = list(dict.fromkeys(str(v) for v in values if v))
    return " | ".join(seen) if seen else None


def _merge_matrices(docs: list[dict], sources: list[str]) -> dict:
    merged: dict[str, dict] = {}
    for doc, source in zip(docs, sources, strict=True):
        for case, m in (doc.get("matrices") or {}).items():
            acc = merged.setdefault(case, {"labels": ["oracle"], "cells": {}, "by": {}, "label_sources": {},
                                           "pairs": []})
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
    def matrix(cells, labels):
        return [[cells.get((a, b)) for b in labels] for a in labels]

    return {case: {"labels": acc["labels"], "max_abs": matrix(acc["cells"], acc["labels"]),
                   "by_output": {name: matrix(cells, acc["labels"]) for name, cells in sorted(acc["by"].items())},
                   "label_sources": acc["label_sources"], "pairs": acc["pairs"]}
            for case, acc in merged.items()}


def _worse(old, new):
    """The larger of two max-abs values ('nan' and 'inf' are stored as strings and win)."""
    if old is None:
        return new
    return max(old, new, key=lambda v: (v == "nan", as_ratio(v)))


"""pytest-xdist: items grouped so that a worker imports only its frameworks, the controller's run folder
and findings handed to the workers, and what workers on other machines send back."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


class XdistHooks:
    """The controller's xdist hooks (registered only when xdist is installed and the run is a
    conformance run)."""

    def __init__(self, state):
        self.state = state

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        """A worker on another machine sends its stored outputs back (see State.__init__); every
        worker sends what its collection did not make items of (``not_run``, the same on each)."""
        output = getattr(node, "workeroutput", None) or {}
        for rel, data in output.get("normconf_arrays", {}).items():
            path = self.state.tmp / rel
            if ".." not in Path(rel).parts and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        if output.get("normconf_not_run") is not None:
            self.state.not_run = output["normconf_not_run"]

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        state = self.state
        node.workerinput["normconf_tmp"] = str(state.tmp)
        # which adapters are unavailable here, asked once (a CUDA adapter asks its framework)
        node.workerinput["normconf_unavailable"] = state.unavailable
        # workers parse the command line again: the loadgroup chosen in pytest_configure reaches them here
        node.workerinput["normconf_loadgroup"] = state.config.option.dist == "loadgroup"
        if node.workerinput["normconf_loadgroup"]:  # the last run's time per framework balances the groups
            if not hasattr(self, "cost"):
                self.cost = framework_costs(state.report_dir / "conformance.json")
            node.workerinput["normconf_cost"] = self.cost


def configure(config, state) -> None:
    """Under xdist: the controller's hooks, and ``-n N`` without ``--dist`` made ``loadgroup``."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    config.pluginmanager.register(XdistHooks(state), "normconf-xdist")
    opt = config.option
    given = any(a == "-d" or a.startswith("--dist") for a in config.invocation_params.args)
    if getattr(opt, "dist", "no") == "load" and not given:  # -n N alone: group items by framework
        opt.dist = "loadgroup"


def worker_finish(config, state) -> None:
    """A worker's end: ``not_run`` for the controller, and, on a machine that does not share the
    controller's run folder, its stored outputs (then the folder goes)."""
    config.workeroutput["normconf_not_run"] = state.not_run
    if not state.shared:
        config.workeroutput["normconf_arrays"] = {
            str(p.relative_to(state.tmp)): p.read_bytes() for p in state.tmp.rglob("*.npz")}
        shutil.rmtree(state.tmp, ignore_errors=True)


def pack_frameworks(items: list[tuple[str, str]], workers: int, cost: dict) -> dict:
    """``{(framework, case file stem): group}`` for the (framework, stem) of every item: frameworks
    packed into ``workers`` groups of about equal cost, the costliest first into the lightest group
    (LPT). ``cost`` is each framework's seconds in the last report (:func:`framework_costs`); without
    one a framework weighs its number of items at the mean cost of an item. A framework costing more
    than a worker's share is split by case file (its import is repeated, the wait is not). A group is
    named after its parts, e.g. ``jax:batch_norm+jax:seeds`` or ``numpy+tensorflow+torch``.

    >>> items = [("jax", "a"), ("jax", "b"), ("numpy", "a"), ("torch", "a")]
    >>> pack_frameworks(items, 2, {"jax": 80.0, "numpy": 5.0, "torch": 30.0})[("torch", "a")]
    'jax:a+torch'
    """
    counts: dict[str, int] = {}
    for framework, _ in items:
        counts[framework] = counts.get(framework, 0) + 1
    known = [f for f in counts if cost.get(f)]
    mean = (sum(cost[f] for f in known) / max(1, sum(counts[f] for f in known))) if known else 1.0
    weight = {f: float(cost[f]) if cost.get(f) else mean * counts[f] for f in counts}
    share = sum(weight.values()) / max(1, workers)
    units: dict[str, float] = {}
    for framework, stem in items:
        split = weight[framework] > share
        unit = f"{framework}:{stem}" if split else framework
        units[unit] = units.get(unit, 0.0) + weight[framework] / counts[framework]
    totals = [0.0] * max(1, workers)
    parts: list[list[str]] = [[] for _ in totals]
    for unit in sorted(units, key=lambda u: (-units[u], u)):
        lightest = min(range(len(totals)), key=totals.__getitem__)  # the first of the lightest
        totals[lightest] += units[unit]
        parts[lightest].append(unit)
    group_of = {u: "+".join(sorted(p)) for p in parts for u in p}
    return {(f, stem): group_of.get(f"{f}:{stem}") or group_of[f] for f, stem in items}


def framework_costs(path: Path) -> dict:
    """Seconds per framework (adapter calls and explanations) in an earlier ``conformance.json``:
    the weights :func:`pack_frameworks` balances workers with. Empty when there is none."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        frameworks = {n: a.get("framework") for n, a in doc["environment"]["adapters"].items()}
        out: dict[str, float] = {}
        for r in doc["results"]:
            fw = frameworks.get(r["adapter"])
            if fw:
                out[fw] = out.get(fw, 0.0) + float(r.get("seconds") or 0) + float(r.get("explain_seconds") or 0)
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def group_items(config, items) -> None:
    """Under ``pytest -n N`` (made ``--dist loadgroup`` in :func:`configure` unless ``--dist`` is
    given), the frameworks are packed into N groups of about equal cost (:func:`pack_frameworks`),
    each run by one worker: a worker imports only the frameworks of its group (TensorFlow: 2 s and
    650 MB), and one that costs more than a worker's share is split by case file. With more workers
    than frameworks, groups are (framework, case file), so every worker has work."""
    from .items import CaseItem

    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or not workerinput.get("normconf_loadgroup"):
        return
    cases = [i for i in items if isinstance(i, CaseItem)]
    workers = int(workerinput.get("workercount", 1))
    by_file = workers > len({i.adapter.framework for i in cases})
    groups = {} if by_file else pack_frameworks([(i.adapter.framework, i.case.stem) for i in cases], workers,
                                                workerinput.get("normconf_cost") or {})
    for item in cases:
        group = (f"{item.adapter.framework}:{item.case.stem}" if by_file
                 else groups[(item.adapter.framework, item.case.stem)])
        # What xdist does for an `xdist_group` mark: "@group" after the node id, which its loadgroup
        # scheduler reads back. xdist 3.8 writes Item._nodeid, which pytest 9.2 no longer reads (it
        # keeps a structured Item._id), so the mark alone groups nothing there: the id is set here.
        grouped = f"{item.nodeid}@{group}"
        if hasattr(item, "_id"):
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(grouped)
        else:
            item._nodeid = grouped  # type: ignore[attr-defined]  # pytest before 9.2

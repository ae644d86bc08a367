"""The pytest plugin: one item per (case, adapter), named ``<file stem>/<case id>[<adapter>]``.

Loaded by the repository's ``conftest.py``. Options live in the ``normconf`` group (``pytest --help``).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import time
import shutil
import tempfile
from pathlib import Path

import pytest

from . import known as known_mod
from .adapter import AdapterLoadError, registry
from .cases import CaseError, is_case_file, load_file
from .compare import fmt
from .margin import FIRM_DIFFER
from .engine import context, evaluate, record
from .report import ArrayStore, build, case_summary, environment, headroom, write_json

OUTCOME = {"pass": "passed", "fail": "failed", "stale": "failed", "error": "failed", "expected": "xfailed",
           "unsupported": "skipped", "unavailable": "skipped"}


def pytest_addoption(parser):
    group = parser.getgroup("normconf", "normconf conformance suite")
    group.addoption("--adapters", default=None, metavar="NAMES",
                    help="comma list of adapters to run (default: all registered; see `python -m normconf list`)")
    group.addoption("--adapter", action="append", default=[], metavar="MODULE:CLASS",
                    help="add an adapter class from an importable module (repeatable)")
    group.addoption("--cases", action="append", default=[], metavar="PATH",
                    help="case file or folder to run instead of cases/ (repeatable)")
    group.addoption("--report-dir", default=None, metavar="DIR",
                    help="where conformance.json goes (default: reports/ under the rootdir)")
    group.addoption("--fuzz", type=int, default=0, metavar="N",
                    help="also draw N random valid cases (Hypothesis) through every selected available adapter")
    group.addoption("--fuzz-seed", type=int, default=0, metavar="SEED", help="seed of --fuzz (reproducible)")
    group.addoption("--fuzz-seconds", type=float, default=None, metavar="S",
                    help="stop running new --fuzz cases after S seconds (the findings so far are still shrunk)")
    group.addoption("--large", action="store_true", default=False,
                    help="also run the cases tagged `large` (cases/large.yaml: 1 GiB inputs, about 10 GiB of "
                         "memory and 15 minutes on 2 cores); without it they are skipped")
    group.addoption("--no-entry-points", action="store_true", default=False,
                    help="ignore adapters registered in the normconf.adapters entry-point group")


class State:
    """Everything the run shares: adapters, case roots, known discrepancies, results."""

    def __init__(self, config):
        self.config = config
        opt = config.option
        root = Path(config.rootpath)
        self.case_roots = [Path(p).resolve() for p in opt.cases] or [root / "cases"]
        self.report_dir = Path(opt.report_dir) if opt.report_dir else root / "reports"
        self.load_error = None
        try:
            self.adapters = registry(opt.adapter, entry_points=not opt.no_entry_points)
        except AdapterLoadError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.selected = list(self.adapters)
        if opt.adapters:
            names = [n.strip() for n in opt.adapters.split(",") if n.strip()]
            unknown = [n for n in names if n not in self.adapters]
            if unknown:
                raise pytest.UsageError(f"--adapters {opt.adapters!r}: unknown {unknown}; "
                                        f"known: {', '.join(self.adapters)}")
            # --adapter MODULE:CLASS adapters always run
            extra = [n for n in self.adapters if n not in names and n in _spec_names(self.adapters, opt.adapter)]
            self.selected = names + extra
        self.known = []
        for path in self._known_files():
            try:
                self.known += known_mod.load(path)
            except known_mod.KnownError as exc:
                raise pytest.UsageError(str(exc)) from None
        self.results: list[dict] = []
        self.started = time.perf_counter()
        self.cases: dict[str, dict] = {}
        self.collected = 0
        self._loaded: dict[Path, dict] = {}  # case files read by the controller (crashed items)
        worker = getattr(config, "workerinput", None)
        self.tmp = Path(worker["normconf_tmp"]) if worker else Path(tempfile.mkdtemp(prefix="normconf-"))
        # Workers save outputs for the matrices in the controller's run folder. A worker on another
        # machine (xdist --tx ssh=...) does not see that folder: it keeps them in its own and sends
        # them back when it finishes (config.workeroutput, read in _XdistHooks.pytest_testnodedown).
        self.shared = True
        if worker is None:
            (self.tmp / "controller").write_text(str(os.getpid()))
        elif not (self.tmp / "controller").exists():
            self.shared, self.tmp = False, Path(tempfile.mkdtemp(prefix="normconf-worker-"))
        self.store = ArrayStore(self.tmp)

    def pytest_runtest_logreport(self, report):
        """Results reach the controller inside the reports (also from xdist workers)."""
        if report.when == "???" and report.failed:  # xdist: the worker died running this item
            self._crashed(report)
        if report.when != "call":
            return
        for key, value in report.user_properties:
            if key == "normconf_fuzz":
                self.fuzz = json.loads(value)
            if key == "normconf":
                record = json.loads(value)
                self.results.append(record["result"])
                key, case = record["result"]["case"], record["case"]
                # keep the summary that has the input statistics (unsupported items carry none)
                if key not in self.cases or "min" in case["input"] and "min" not in self.cases[key]["input"]:
                    self.cases[key] = case

    def _crashed(self, report) -> None:
        """An item whose process died (a segfault or abort in a framework) under pytest-xdist: an
        ``error`` record, so the report says what was lost. xdist starts a new worker and the other
        results are kept; the controller writes conformance.json as usual."""
        path, _, name = report.nodeid.partition("::")
        name = re.sub(r"\]@[^\]]*$", "]", name)  # the xdist_group suffix
        found = re.fullmatch(r"(.+)\[([^\[\]]+)\]", name)
        file = Path(self.config.rootpath, path)
        if found is None or not self.owns(file):
            return
        key, adapter = found.groups()
        # xdist may hand the item's group to a worker again (loadgroup re-queues the whole group): a
        # marker tells any worker not to run it a second time (see CaseItem.runtest)
        self.crash_marker(report.nodeid).parent.mkdir(parents=True, exist_ok=True)
        self.crash_marker(report.nodeid).touch()
        if any(r["case"] == key and r["adapter"] == adapter for r in self.results):
            return
        if file not in self._loaded:
            self._loaded[file] = {c.key: c for c in load_file(file)[0]}
        case = self._loaded[file].get(key)
        if case is None:
            return
        result = record(case, adapter, status="error",
                        reason=f"the process running it crashed ({report.longrepr}): a segfault or abort "
                               f"inside {adapter}; xdist started a new worker and the other results are kept")
        result.pop("arrays")
        self.results.append(result)
        self.cases.setdefault(key, case_summary(case))

    def crash_marker(self, nodeid: str) -> Path:
        return self.tmp / "crashed" / hashlib.sha1(nodeid.encode()).hexdigest()

    def _known_files(self):
        seen = []
        for root in self.case_roots:
            path = (root if root.is_dir() else root.parent) / "known_discrepancies.yaml"
            if path.exists() and path not in seen:
                seen.append(path)
        return seen

    def owns(self, path: Path) -> bool:
        path = path.resolve()
        if not is_case_file(path):
            return False
        return any(path == r or r in path.parents for r in self.case_roots)


def _spec_names(adapters, specs):
    names = set()
    for spec in specs:
        cls_name = spec.partition(":")[2]
        names |= {n for n, a in adapters.items() if type(a).__name__ == cls_name}
    return names


def pytest_configure(config):
    config.addinivalue_line("markers", "normconf: a conformance item (case x adapter)")
    state = State(config)
    config.stash[STATE] = state
    config.pluginmanager.register(state, "normconf-state")
    opt = config.option
    if opt.cases and getattr(config, "args_source", None) == pytest.Config.ArgsSource.TESTPATHS:
        # --cases replaces the default cases/ folder; the engine tests still run
        config.args[:] = [a for a in config.args if Path(a).resolve() != Path(config.rootpath, "cases").resolve()]
        config.args += [str(Path(p)) for p in opt.cases]
    elif opt.cases:
        config.args += [str(Path(p)) for p in opt.cases if str(Path(p)) not in config.args]
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(state), "normconf-xdist")
        given = any(a == "-d" or a.startswith("--dist") for a in config.invocation_params.args)
        if getattr(opt, "dist", "no") == "load" and not given:  # -n N alone: group items by framework
            opt.dist = "loadgroup"


STATE = pytest.StashKey[State]()


class _XdistHooks:
    def __init__(self, state):
        self.state = state

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        """A worker on another machine sends its stored outputs back (see State.__init__)."""
        for rel, data in (getattr(node, "workeroutput", None) or {}).get("normconf_arrays", {}).items():
            path = self.state.tmp / rel
            if ".." not in Path(rel).parts and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        node.workerinput["normconf_tmp"] = str(self.state.tmp)
        # workers parse the command line again: the loadgroup chosen in pytest_configure reaches them here
        node.workerinput["normconf_loadgroup"] = self.state.config.option.dist == "loadgroup"
        if node.workerinput["normconf_loadgroup"]:  # the last run's time per framework balances the groups
            if not hasattr(self, "cost"):
                self.cost = framework_costs(self.state.report_dir / "conformance.json")
            node.workerinput["normconf_cost"] = self.cost


def pytest_report_header(config):
    if hasattr(config, "workerinput"):
        return []  # xdist workers: the controller prints it (and availability checks import frameworks)
    state = config.stash[STATE]
    lines = ["normconf adapters:"]
    for name, adapter in state.adapters.items():
        d = adapter.describe()
        mark = "" if name in state.selected else "  (not selected)"
        avail = "available" if d["available"] else f"unavailable: {d['reason']}"
        lines.append(f"  {name:<28} {d['framework']} {d['version'] or '-'} on {d['device']}: {avail}{mark}")
    lines.append(f"normconf cases: {', '.join(str(r) for r in state.case_roots)}")
    return lines


def pytest_collect_file(file_path, parent):
    state = parent.config.stash[STATE]
    if state.owns(Path(file_path)):
        return CaseFile.from_parent(parent, path=file_path)
    return None


class CaseFile(pytest.File):
    def collect(self):
        state = self.config.stash[STATE]
        cases, errors = load_file(self.path)
        for error in errors:
            label = error.case_id if error.case_id is not None else "<file>"  # id-less cases: "#3"
            yield CaseErrorItem.from_parent(self, name=f"{self.path.stem}/{label}", error=error)
        for case in cases:
            for name in state.selected:
                item = CaseItem.from_parent(self, name=f"{case.key}[{name}]", case=case, adapter=state.adapters[name])
                item.add_marker("normconf")
                if "large" in case.tags and not self.config.option.large:
                    item.add_marker(pytest.mark.skip(reason="a large case (tag `large`): run it with --large"))
                yield item


class CaseFailure(Exception):
    pass


class CaseErrorItem(pytest.Item):
    """A malformed case: fails with the loader's message, never a traceback."""

    def __init__(self, *, error: CaseError, **kw):
        super().__init__(**kw)
        self.error = error

    def runtest(self):
        raise CaseFailure(f"malformed case: {self.error}")

    def repr_failure(self, excinfo, style=None):
        return str(excinfo.value)

    def reportinfo(self):
        return self.path, 0, self.name


class CaseItem(pytest.Item):
    def __init__(self, *, case, adapter, **kw):
        super().__init__(**kw)
        self.case, self.adapter = case, adapter

    def runtest(self):
        state = self.config.stash[STATE]
        if state.crash_marker(self.nodeid).exists():
            raise CaseFailure(f"{self.nodeid}: not run again: it crashed a worker earlier in this run "
                              f"(its error record is in the report)")
        result = evaluate(self.case, self.adapter, state.known)
        arrays = result.pop("arrays", {})
        if arrays:
            state.store.save(self.case.key, "oracle", context(self.case).expected)
            state.store.save(self.case.key, f"adapter-{self.adapter.name}", arrays)
            result["has_arrays"] = True
        summary = case_summary(self.case, context(self.case) if result["status"] not in ("unsupported", "unavailable") else None)
        self.user_properties.append(("normconf", json.dumps({"result": result, "case": summary},
                                                             default=str, allow_nan=True)))
        # JUnit XML properties (pytest --junitxml): what a CI dashboard shows per item
        for key in ("case", "adapter", "status", "op", "dtype", "layout"):
            self.user_properties.append((f"normconf_{key}", result[key]))
        for name, m in result["outputs"].items():
            for metric in ("max_abs", "max_rel", "max_ulp", "ratio", "atol", "rtol"):
                self.user_properties.append((f"normconf_{name}_{metric}", m[metric]))
        if result.get("explanation"):
            self.user_properties.append(("normconf_cause", result["explanation"].get("cause")))
        status = result["status"]
        if status == "pass":
            return
        if status == "expected":
            pytest.xfail(result["reason"])
        if status in ("unsupported", "unavailable"):
            # reported at the item's location, not this line
            raise pytest.skip.Exception(f"{self.adapter.name} {status}: {result['reason']}", _use_item_location=True)
        raise CaseFailure(failure_text(self.case, self.adapter, result, self.nodeid, self.config))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (CaseFailure, pytest.xfail.Exception)):
            # an expected discrepancy is an xfail: its reason is the whole story, and pytest's own
            # traceback rendering took 159 s of a 465 s profiled full run
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, 0, self.name


def failure_text(case, adapter, result, nodeid, config) -> str:
    head = {"fail": "MISMATCH", "stale": "STALE EXPECTATION [XPASS(strict)]", "error": "ERROR"}[result["status"]]
    lines = [f"{head}: {case.key} on {adapter.name} ({case.op}, {case.dtype}, {case.layout}, shape {list(case.shape)})",
             f"  {result['reason']}"]
    for name, m in result["outputs"].items():
        ok = "ok" if m["ok"] else "OUT OF TOLERANCE"
        lines.append(f"  {name}: max_abs {fmt(m['max_abs'])}  max_rel {fmt(m['max_rel'])}  max_ulp {fmt(m['max_ulp'])}"
                     f"  (atol {m['atol']:.3g}, rtol {m['rtol']:.3g}) {ok}")
        lines.append(f"      worst at {m['worst_index']}: expected {fmt(m['expected_at_worst'])}, "
                     f"got {fmt(m['actual_at_worst'])}; {m['bad']} element(s) out of tolerance")
        if "vs_values" in m:
            v = m["vs_values"]
            lines.append(f"      against expect.values: max_abs {fmt(v['max_abs'])} (atol {v['atol']:.3g}) "
                         f"{'ok' if v['ok'] else 'OUT OF TOLERANCE'}")
    if result.get("native"):
        lines.append(f"  native conventions in play: {result['native']}")
    if result.get("verdict") == "fragile":
        lines.append(f"  fragile verdict: {result['margin_output']} at {fmt(result['margin'])} x its tolerance, within "
                     f"a factor {FIRM_DIFFER:g} of it: another machine's summation order could flip this result")
    if result.get("explanation"):
        lines.append(f"  explanation: {result['explanation'].get('detail')}")
    if result.get("traceback"):
        lines.append("  traceback (last frames):")
        lines += ["    " + line for line in result["traceback"].rstrip().splitlines()]
    specs = list(config.option.adapter)
    options = "".join(f" --adapter {shlex.quote(s)}" for s in specs)
    options += "".join(f" --cases {shlex.quote(str(p))}" for p in config.option.cases)
    nodeid = re.sub(r"\]@[^\]]*$", "]", nodeid)  # the xdist_group suffix xdist adds under loadgroup
    lines += ["  reproduce:",
              f"    pytest {shlex.quote(nodeid)}{options}",
              f"    python -c \"import normconf, pprint; pprint.pprint(normconf.reproduce("
              f"{case.file!r}, {case.id!r}, {adapter.name!r}{', ' + repr(specs) if specs else ''}))\""]
    return "\n".join(lines)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    state = config.stash[STATE]
    if config.option.fuzz > 0:  # before -k / -m deselection, like any collected item
        items.append(FuzzItem.from_parent(session, name=f"fuzz[{config.option.fuzz},seed={config.option.fuzz_seed}]"))
    state.collected = sum(isinstance(i, CaseItem) for i in items)
    _group_for_xdist(config, items)


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
    loads = [[0.0, []] for _ in range(max(1, workers))]
    for unit in sorted(units, key=lambda u: (-units[u], u)):
        lightest = min(loads, key=lambda b: b[0])
        lightest[0] += units[unit]
        lightest[1].append(unit)
    group_of = {u: "+".join(sorted(b[1])) for b in loads for u in b[1]}
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


def _group_for_xdist(config, items) -> None:
    """Under ``pytest -n N`` (made ``--dist loadgroup`` in :func:`pytest_configure` unless ``--dist``
    is given), the frameworks are packed into N groups of about equal cost (:func:`pack_frameworks`),
    each run by one worker: a worker imports only the frameworks of its group (TensorFlow: 2 s and
    650 MB), and one that costs more than a worker's share is split by case file. With more workers
    than frameworks, groups are (framework, case file), so every worker has work."""
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
            item._nodeid = grouped


class FuzzItem(pytest.Item):
    """``--fuzz N``: Hypothesis-drawn cases through every selected, available adapter."""

    def runtest(self):
        from .fuzz import Finding, run

        state = self.config.stash[STATE]
        adapters = [state.adapters[n] for n in state.selected if state.adapters[n].available() is None]
        try:
            counts = run(self.config.option.fuzz, self.config.option.fuzz_seed, adapters, state.known,
                         seconds=self.config.option.fuzz_seconds)
        except Finding as finding:  # the counts up to the finding still reach the summary
            self.user_properties.append(("normconf_fuzz", json.dumps(dict(finding.counts, finding=True))))
            raise
        self.user_properties.append(("normconf_fuzz", json.dumps(counts)))

    def repr_failure(self, excinfo, style=None):
        from .fuzz import Finding

        if isinstance(excinfo.value, Finding):
            return f"fuzzing, seed {self.config.option.fuzz_seed}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, 0, self.name


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    state = config.stash[STATE]
    if hasattr(config, "workerinput"):
        if not state.shared:  # send this machine's stored outputs to the controller, then clean up
            config.workeroutput["normconf_arrays"] = {
                str(p.relative_to(state.tmp)): p.read_bytes() for p in state.tmp.rglob("*.npz")}
            shutil.rmtree(state.tmp, ignore_errors=True)
        return
    try:
        if state.results:  # a run that ran no case (--collect-only, -k matching none) leaves the report alone
            env = environment(state.adapters)
            env.update(rootdir=str(config.rootpath), adapter_specs=list(config.option.adapter),
                       case_paths=[str(p) for p in state.case_roots])
            doc = build(state.results, env, state.store, state.cases)
            path = write_json(doc, state.report_dir / "conformance.json")
            state.written = [path]
            from .html import render  # rendered from the JSON just written, as `normconf report` does

            html_path = state.report_dir / "conformance.html"
            html_path.write_text(render(json.loads(path.read_text(encoding="utf-8"))), encoding="utf-8")
            state.written.append(html_path)
    finally:
        shutil.rmtree(state.tmp, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state = config.stash[STATE]
    if hasattr(config, "workerinput") or not (state.results or getattr(state, "fuzz", None)):
        return
    tr = terminalreporter
    tr.section("normconf conformance")
    ops = sorted({r["op"] for r in state.results})
    adapters = [a for a in state.adapters if any(r["adapter"] == a for r in state.results)]
    short = {"pass": "P", "fail": "F", "expected": "X", "stale": "S", "unsupported": "U", "unavailable": "-", "error": "E"}
    tr.write_line("per op, adapter: P pass, X expected, F fail, S stale, E error, U unsupported, - unavailable")
    for op in ops:
        cells = []
        for a in adapters:
            rs = [r for r in state.results if r["op"] == op and r["adapter"] == a]
            counts = {}
            for r in rs:
                counts[r["status"]] = counts.get(r["status"], 0) + 1
            cells.append(f"{a}: " + " ".join(f"{short[s]}{n}" for s, n in counts.items()))
        tr.write_line(f"  {op:<14} " + " | ".join(cells))
    worst = sorted((r for r in state.results if r["status"] in ("fail", "expected", "stale")),
                   key=lambda r: -max([_ratio(m) for m in r["outputs"].values()] or [0]))[:10]
    if worst:
        tr.write_line("largest discrepancies (error / tolerance):")
        for r in worst:
            ratio = max([_ratio(m) for m in r["outputs"].values()] or [0])
            why = (r.get("explanation") or {}).get("detail") or r.get("reason") or ""
            tr.write_line(f"  {ratio:>10.3g}x  {r['status']:<8} {r['case']}[{r['adapter']}]  {why[:110]}")
    rows = headroom(state.results)
    if rows:
        tr.write_line("tolerance headroom (largest error / tolerance among passing results, per dtype):")
        for dtype, (ratio, where) in rows.items():
            tr.write_line(f"  {dtype:<9} {ratio:8.3f}  at {where}")
    explained = [r.get("explain_seconds", 0.0) for r in state.results if r.get("explanation")]
    if explained:
        elapsed = time.perf_counter() - state.started
        tr.write_line(f"explanations: {len(explained)} mismatches explained in {sum(explained):.1f} s of worker time "
                      f"({100 * sum(explained) / max(elapsed * max(1, _workers(config)), 1e-9):.1f}% of the run)")
    if getattr(state, "fuzz", None):
        f = state.fuzz
        tr.write_line(f"fuzzing: {f['cases']} drawn cases, {f['results']} results, {f['known']} known discrepancies met"
                      + (f" in {f['seconds']:.0f} s" if "seconds" in f else "")
                      + (f" (--fuzz-seconds: the cases after the first {f['stopped']} were not run)" if "stopped" in f else "")
                      + (" (findings: see the failure)" if f.get("finding") else ""))
        if f.get("statuses"):
            tr.write_line("  per status: " + ", ".join(f"{s} {n}" for s, n in sorted(f["statuses"].items())))
            for a, per in f.get("adapters", {}).items():
                tr.write_line(f"  {a:<26} " + ", ".join(f"{s} {n}" for s, n in sorted(per.items())))
            for key, n in sorted(f.get("causes", {}).items()):
                tr.write_line(f"  known: {key} x{n}")
    for path in getattr(state, "written", ()):
        tr.write_line(f"results: {path}")
    for line in fragile_lines(state.results):
        tr.write_line(line)


#: Fragile verdicts listed by name at the end of a run (the strict ones always; the rest up to this).
FRAGILE_LISTED = 20


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
        why = (f"  (platform_dependent: known_discrepancies.yaml #{known.get('index')}, {known.get('observed')} here)"
               if known.get("platform_dependent") else "")
        lines.append(f"  {'strict' if r.get('strict') else 'not strict':<10} {fmt(r.get('margin')):>7}x  {r['status']:<8} "
                     f"{r['case']}[{r['adapter']}] {r.get('margin_output')}{why}")
    return lines


def _workers(config) -> int:
    n = getattr(config.option, "numprocesses", None)
    return n if isinstance(n, int) and n > 0 else 1


def _ratio(m) -> float:
    r = m.get("ratio", 0)
    return float("inf") if isinstance(r, str) else float(r)

"""What a run shares: the adapters and their selection, the case folders, the known discrepancies, the
results as they come in, and the (adapter, op) pairs and adapters that get no items."""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from .. import known as known_mod
from ..adapter import AdapterLoadError, registry
from ..cases import is_case_file
from ..report import ArrayStore
from ..shipped import shipped_cases
from . import crash


class State:
    """Everything the run shares. Registered as a plugin: results reach it in
    :meth:`pytest_runtest_logreport`, also from xdist workers.

    The plugin is installed for every pytest run of its environment (the ``pytest11`` entry point),
    most of which are not conformance runs: a run is one (:attr:`active`) when it is given a normconf
    option or a path in or around a case folder. Otherwise the state stays dormant: no adapter is
    loaded, nothing is collected, nothing printed."""

    def __init__(self, config, extra_roots=()):
        self.config = config
        opt = config.option
        self.case_roots = case_roots(config, extra_roots)
        self.report_dir = Path(opt.report_dir) if opt.report_dir else Path(config.rootpath) / "reports"
        self.active = is_active(config, self.case_roots)
        self.results: list[dict] = []
        self.cases: dict[str, dict] = {}
        self.started = time.perf_counter()
        #: (adapter, op or None) -> {"status", "reason", "keys"}: collected cases that got no item
        self.skipped_pairs: dict[tuple, dict] = {}
        self.created = 0  # CaseItems made by collection (to tell whether a selection dropped some)
        self.not_run: list[dict] | None = None  # set at the end of collection, or by an xdist worker
        self.crash_cases: dict[Path, dict] = {}  # case files the controller read for crashed items
        self.adapters, self.selected, self.explicit, self.known = {}, [], set(), []
        self._unavailable: dict[str, str] | None = None
        self.tmp = None
        if not self.active:
            return
        if not self.case_roots:
            try:
                shipped_cases()
            except ModuleNotFoundError as exc:
                raise pytest.UsageError(f"normconf: no cases/ under the rootdir {config.rootpath} and {exc}; "
                                        "give --cases PATH") from None
        try:
            self.adapters = registry(opt.adapter, entry_points=not opt.no_entry_points)
        except AdapterLoadError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.selected = list(self.adapters)
        # adapters the command line names: an unavailable one still gets its items (skipped, with the
        # reason); one that runs by default and is unavailable here is reported once instead
        self.explicit = _spec_names(self.adapters, opt.adapter)
        if opt.adapters:
            names = [n.strip() for n in opt.adapters.split(",") if n.strip()]
            unknown = [n for n in names if n not in self.adapters]
            if unknown:
                raise pytest.UsageError(f"--adapters {opt.adapters!r}: unknown {unknown}; "
                                        f"known: {', '.join(self.adapters)}")
            # --adapter MODULE:CLASS adapters always run
            self.selected = names + [n for n in self.adapters if n not in names and n in self.explicit]
            self.explicit |= set(names)
        try:
            for path in self._known_files():
                self.known += known_mod.load(path)
        except known_mod.KnownError as exc:
            raise pytest.UsageError(str(exc)) from None
        for given in opt.known:  # --known PATH, relative to where pytest was started
            try:
                self.known += known_mod.load(Path(config.invocation_params.dir, given), label=given, required=True)
            except known_mod.KnownError as exc:
                raise pytest.UsageError(f"--known {given}: {exc}") from None
        worker = getattr(config, "workerinput", None)
        self.tmp = Path(worker["normconf_tmp"]) if worker else Path(tempfile.mkdtemp(prefix="normconf-"))
        if worker and "normconf_unavailable" in worker:  # the controller asked the adapters once
            self._unavailable = dict(worker["normconf_unavailable"])
        # Workers save outputs for the matrices in the controller's run folder. A worker on another
        # machine (xdist --tx ssh=...) does not see that folder: it keeps them in its own and sends
        # them back when it finishes (see normconf.plugin.xdist).
        self.shared = True
        if worker is None:
            (self.tmp / "controller").write_text(str(os.getpid()))
        elif not (self.tmp / "controller").exists():
            self.shared, self.tmp = False, Path(tempfile.mkdtemp(prefix="normconf-worker-"))
        self.store = ArrayStore(self.tmp)

    # -- results ---------------------------------------------------------------------------------

    def pytest_runtest_logreport(self, report):
        """Results reach the controller inside the reports (also from xdist workers)."""
        if report.when == "???" and report.failed:  # xdist: the worker died running this item
            crash.record_crash(self, report)
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

    # -- what gets no item -----------------------------------------------------------------------

    @property
    def unavailable(self) -> dict[str, str]:
        """Why each selected adapter that is not named on the command line cannot run here. Asked
        once, by the controller (an xdist worker receives it: asking a CUDA adapter on a machine with
        a driver imports its framework)."""
        if self._unavailable is None:
            self._unavailable = {}
            for name in self.selected:
                if name not in self.explicit:
                    reason = self.adapters[name].available()
                    if reason:
                        self._unavailable[name] = reason
        return self._unavailable

    def skip_reason(self, name: str, op: str) -> tuple[str, str | None, str] | None:
        """``(status, op, reason)`` when adapter ``name`` gets no item for cases of ``op``: it is
        unavailable here (``op`` None: every case) or has no API for the op; else ``None``."""
        if name in self.unavailable:
            return "unavailable", None, self.unavailable[name]
        reason = no_api(self.adapters[name], op)
        return ("unsupported", op, reason) if reason else None

    def subset_reason(self, name: str, case) -> tuple[str, str | None, str] | None:
        """``("subset", None, reason)`` when adapter ``name`` runs a tagged subset by default
        (``default_subset``) that leaves ``case`` out, and the run did not ask for ``--all-cases``."""
        adapter = self.adapters[name]
        subset = tuple(getattr(adapter, "default_subset", ()) or ())
        if not subset or self.config.option.all_cases or any(tag in case.tags for tag in subset):
            return None
        tags = " or ".join(f"`{t}`" for t in subset)
        return "subset", None, f"runs the cases tagged {tags} by default; --all-cases runs every case"

    def skip(self, name: str, case, why: tuple) -> None:
        status, op, reason = why
        entry = self.skipped_pairs.setdefault((name, op), {"status": status, "reason": reason, "keys": []})
        entry["keys"].append(case.key)

    def finish_collection(self, items) -> None:
        """The ``not_run`` records, once the selection (``-k``, ``-m``, node ids) is done: when it
        dropped items, only the cases that kept one count."""
        from .items import CaseItem

        kept = {i.case.key for i in items if isinstance(i, CaseItem)}
        selected = sum(isinstance(i, CaseItem) for i in items) < self.created
        order = {name: k for k, name in enumerate(self.adapters)}
        records = []
        for (name, op), entry in sorted(self.skipped_pairs.items(),
                                        key=lambda kv: (order.get(kv[0][0], 0), _op_order(kv[0][1]))):
            keys = [k for k in dict.fromkeys(entry["keys"]) if not selected or k in kept]
            if keys:
                records.append({"adapter": name, "op": op, "status": entry["status"], "cases": len(keys),
                                "reason": entry["reason"]})
        self.not_run = records

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        if self.active:
            self.finish_collection(items)

    # -- case folders ----------------------------------------------------------------------------

    def _known_files(self):
        seen = []
        for root in self.case_roots:
            path = (root if root.is_dir() else root.parent) / "known_discrepancies.yaml"
            if path.exists() and path not in seen:
                seen.append(path)
        return seen

    def owns(self, path: Path) -> bool:
        if not self.active:
            return False
        path = path.resolve()
        if not is_case_file(path):
            return False
        return any(path == r or r in path.parents for r in self.case_roots)


STATE = pytest.StashKey[State]()


def default_case_roots(config) -> list[Path]:
    """``cases/`` under the rootdir when there is one (this repository, or a project that keeps its
    cases there), else the shipped cases (:func:`normconf.shipped.shipped_cases`)."""
    here = Path(config.rootpath) / "cases"
    if here.is_dir():
        return [here.resolve()]
    try:
        return [shipped_cases()]
    except ModuleNotFoundError:  # a broken install: said when a conformance run needs them (State)
        return []


def case_roots(config, extra=()) -> list[Path]:
    """``--cases`` paths (they replace the default), else :func:`default_case_roots`; plus ``extra``
    (the shipped cases, when ``--pyargs normconf`` names them)."""
    roots = [Path(p).resolve() for p in config.option.cases] or default_case_roots(config)
    return roots + [Path(p) for p in extra if Path(p) not in roots]


def is_active(config, roots) -> bool:
    """Whether this run is a conformance run: a normconf option is given, or a path to collect is in
    a case folder or holds one (not through a hidden folder or a site-packages, where pytest does not
    look)."""
    opt = config.option
    if opt.cases or opt.adapter or opt.adapters or opt.fuzz or opt.large:
        return True
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        for root in roots:
            if path == root or root in path.parents:
                return True
            if path in root.parents and not any(p.startswith(".") or p == "site-packages"
                                                for p in root.relative_to(path).parts):
                return True
    return False


def no_api(adapter, op: str) -> str | None:
    """Why ``adapter`` has no API for ``op`` (its ``unsupported_ops``, or no method for the op), as
    :meth:`normconf.adapter.Adapter.unsupported` would say; ``None`` if it has one."""
    reason = (getattr(adapter, "unsupported_ops", None) or {}).get(op)
    if reason:
        return reason
    implements = getattr(adapter, "implements", None)
    if callable(implements) and not implements(op):
        return adapter.no_api(op)
    return None


def _op_order(op) -> int:
    from ..adapter import OPS

    return -1 if op is None else OPS.index(op) if op in OPS else len(OPS)


def _spec_names(adapters, specs) -> set[str]:
    names = set()
    for spec in specs:
        cls_name = spec.partition(":")[2]
        names |= {n for n, a in adapters.items() if type(a).__name__ == cls_name}
    return names

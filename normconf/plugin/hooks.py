"""The plugin's options, its configuration, the report header and collection."""
from __future__ import annotations

from pathlib import Path

import pytest

from ..shipped import shipped_cases
from . import xdist
from .items import CaseFile, FuzzItem
from .state import STATE, State, default_case_roots


def pytest_addoption(parser):
    group = parser.getgroup("normconf", "normconf conformance suite")
    group.addoption("--adapters", default=None, metavar="NAMES",
                    help="comma list of adapters to run (default: all registered; see `python -m normconf list`)")
    group.addoption("--adapter", action="append", default=[], metavar="MODULE:CLASS",
                    help="add an adapter class from an importable module (repeatable)")
    group.addoption("--cases", action="append", default=[], metavar="PATH",
                    help="case file or folder to run instead of the default ones (cases/ under the rootdir, "
                         "else the shipped cases; repeatable)")
    group.addoption("--known", action="append", default=[], metavar="PATH",
                    help="a known-discrepancies file to use besides the case folders' own (repeatable): a third "
                         "party's entries for its adapters, without copying the shipped cases")
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
    group.addoption("--all-cases", action="store_true", default=False,
                    help="run every case on the adapters that run a tagged subset by default (the compiled and "
                         "deployment adapters: `default_subset`); without it they run only the cases tagged "
                         "`compiled` / `deploy` and list the rest once in not_run")
    group.addoption("--no-entry-points", action="store_true", default=False,
                    help="ignore adapters registered in the normconf.adapters entry-point group")


def pytest_configure(config):
    config.addinivalue_line("markers", "normconf: a conformance item (case x adapter)")
    opt = config.option
    extra = []
    if getattr(opt, "pyargs", False) and "normconf" in config.args:
        # `pytest --pyargs normconf`: the shipped cases, wherever normconf is installed (pytest would
        # collect the package's modules, which hold no tests)
        try:
            shipped = str(shipped_cases())
        except ModuleNotFoundError as exc:
            raise pytest.UsageError(f"--pyargs normconf: {exc}") from None
        config.args[:] = [shipped if a == "normconf" else a for a in config.args]
        extra.append(shipped)
    state = State(config, extra)
    config.stash[STATE] = state
    config.pluginmanager.register(state, "normconf-state")
    if not state.active:
        return
    if opt.cases and getattr(config, "args_source", None) == pytest.Config.ArgsSource.TESTPATHS:
        # --cases replaces the default case folder (the repository's cases/); the engine tests still run
        defaults = default_case_roots(config)
        config.args[:] = [a for a in config.args if Path(config.invocation_params.dir, a).resolve() not in defaults]
        config.args += [str(Path(p)) for p in opt.cases]
    elif opt.cases:
        config.args += [str(Path(p)) for p in opt.cases if str(Path(p)) not in config.args]
    xdist.configure(config, state)


def pytest_report_header(config):
    state = config.stash[STATE]
    if hasattr(config, "workerinput") or not state.active:
        return []  # xdist workers: the controller prints it (and availability checks import frameworks)
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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    state = config.stash[STATE]
    if not state.active:
        return
    if config.option.fuzz > 0:  # before -k / -m deselection, like any collected item
        items.append(FuzzItem.from_parent(session, name=f"fuzz[{config.option.fuzz},seed={config.option.fuzz_seed}]"))
    xdist.group_items(config, items)

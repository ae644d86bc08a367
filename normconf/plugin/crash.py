"""Crash recovery under pytest-xdist: an item whose process died (a segfault or abort inside a
framework) becomes an ``error`` record, xdist starts a new worker, and the item is not run again when
its group is handed out a second time."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..cases import load_file
from ..engine import record
from ..report import case_summary

#: The ``@group`` suffix xdist's loadgroup adds to a node id (see normconf.plugin.xdist).
GROUP_SUFFIX = re.compile(r"\]@[^\]]*$")


def marker(state, nodeid: str) -> Path:
    """The file that says ``nodeid`` crashed a worker in this run (in the run folder all workers see)."""
    return state.tmp / "crashed" / hashlib.sha1(nodeid.encode()).hexdigest()


def crashed_before(state, nodeid: str) -> bool:
    return marker(state, nodeid).exists()


def record_crash(state, report) -> None:
    """The controller's side: the report xdist makes for the item a dead worker was running
    (``when == "???"``) becomes an ``error`` result; the other results are kept and conformance.json
    is written as usual."""
    path, _, name = report.nodeid.partition("::")
    found = re.fullmatch(r"(.+)\[([^\[\]]+)\]", GROUP_SUFFIX.sub("]", name))
    file = Path(state.config.rootpath, path)
    if found is None or not state.owns(file):
        return
    key, adapter = found.groups()
    # xdist may hand the item's group to a worker again (loadgroup re-queues the whole group): the
    # marker tells any worker not to run it a second time (see CaseItem.runtest)
    marker(state, report.nodeid).parent.mkdir(parents=True, exist_ok=True)
    marker(state, report.nodeid).touch()
    if any(r["case"] == key and r["adapter"] == adapter for r in state.results):
        return
    if file not in state.crash_cases:
        state.crash_cases[file] = {c.key: c for c in load_file(file)[0]}
    case = state.crash_cases[file].get(key)
    if case is None:
        return
    result = record(case, adapter, status="error",
                    reason=f"the process running it crashed ({report.longrepr}): a segfault or abort "
                           f"inside {adapter}; xdist started a new worker and the other results are kept")
    state.results.append(result.to_json())
    state.cases.setdefault(key, case_summary(case))

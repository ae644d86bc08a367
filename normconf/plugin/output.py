"""The run's files: ``conformance.json`` (written atomically) and ``conformance.html`` rendered from it,
after every run that ran at least one case."""
from __future__ import annotations

import json
import shutil

from ..report import build, environment, write_json
from . import xdist
from .state import STATE


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    state = config.stash[STATE]
    if state.tmp is None:  # not a conformance run
        return
    if hasattr(config, "workerinput"):
        xdist.worker_finish(config, state)
        return
    try:
        if state.results:  # a run that ran no case (--collect-only, -k matching none) leaves the report alone
            write(config, state)
    finally:
        shutil.rmtree(state.tmp, ignore_errors=True)


def write(config, state) -> None:
    env = environment(state.adapters)
    env.update(rootdir=str(config.rootpath), adapter_specs=list(config.option.adapter),
               case_paths=[str(p) for p in state.case_roots])
    doc = build(state.results, env, state.store, state.cases)
    # the (adapter, op) pairs and adapters that got no items, once each (see normconf.plugin.state)
    doc["not_run"] = list(state.not_run or [])
    path = write_json(doc, state.report_dir / "conformance.json")
    state.written = [path]
    from ..html import render  # rendered from the JSON just written, as `normconf report` does

    html_path = state.report_dir / "conformance.html"
    html_path.write_text(render(json.loads(path.read_text(encoding="utf-8"))), encoding="utf-8")
    state.written.append(html_path)

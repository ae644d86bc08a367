"""The collected things: a case file, its (case, adapter) items, a malformed case, the ``--fuzz`` item,
and the text of a failure."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from ..cases import CaseError, load_file
from ..compare import fmt
from ..engine import context, evaluate
from ..expected_warnings import Quiet
from ..margin import FIRM_DIFFER
from ..records import Result
from ..report import case_summary
from . import crash
from .state import STATE

#: The pytest outcome of each status.
OUTCOME = {"pass": "passed", "fail": "failed", "stale": "failed", "error": "failed", "expected": "xfailed",
           "unsupported": "skipped", "unavailable": "skipped"}


class CaseFile(pytest.File):
    """A case file: one item per (case, selected adapter), except the adapters that are unavailable
    here (unless named on the command line), those with no API for the case's op, and those whose
    default subset leaves the case out (without ``--all-cases``), which the run lists once each
    instead (``not_run``)."""

    def collect(self):
        state = self.config.stash[STATE]
        cases, errors = load_file(self.path)
        for error in errors:
            label = error.case_id if error.case_id is not None else "<file>"  # id-less cases: "#3"
            yield CaseErrorItem.from_parent(self, name=f"{self.path.stem}/{label}", error=error)
        for case in cases:
            large = "large" in case.tags and not self.config.option.large
            for name in state.selected:
                why = state.skip_reason(name, case.op) or state.subset_reason(name, case)
                if why:
                    if not large:  # a large case would not have run either (and had no record)
                        state.skip(name, case, why)
                    continue
                item = CaseItem.from_parent(self, name=f"{case.key}[{name}]", case=case, adapter=state.adapters[name])
                item.add_marker("normconf")
                if large:
                    item.add_marker(pytest.mark.skip(reason="a large case (tag `large`): run it with --large"))
                state.created += 1
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
    """One case on one adapter: runs it, hands the result record to the run (in the report's user
    properties, which also travel from xdist workers) and maps its status to a pytest outcome."""

    def __init__(self, *, case, adapter, **kw):
        super().__init__(**kw)
        self.case, self.adapter = case, adapter

    def runtest(self):
        state = self.config.stash[STATE]
        if crash.crashed_before(state, self.nodeid):
            raise CaseFailure(f"{self.nodeid}: not run again: it crashed a worker earlier in this run "
                              f"(its error record is in the report)")
        # the adapter's numeric warnings on NaN, inf, empty or overflowing numbers the case holds on
        # purpose are dropped at its call; any other warning is reported (normconf.expected_warnings)
        result = evaluate(self.case, Quiet(self.adapter), state.known)
        self.publish(state, result)
        status = result.status
        if status == "pass":
            return
        if status == "expected":
            pytest.xfail(result["reason"])
        if status in ("unsupported", "unavailable"):
            # reported at the item's location, not this line
            raise pytest.skip.Exception(f"{self.adapter.name} {status}: {result['reason']}", _use_item_location=True)
        raise CaseFailure(failure_text(self.case, self.adapter, result, self.nodeid, self.config))

    def publish(self, state, result: Result) -> None:
        """Store the outputs for the matrices and attach the record (with the case's summary) and
        the JUnit XML properties (``pytest --junitxml``: what a CI dashboard shows per item)."""
        arrays, result.arrays = result.arrays, {}
        if arrays:
            state.store.save(self.case.key, "oracle", context(self.case).expected)
            state.store.save(self.case.key, f"adapter-{self.adapter.name}", arrays)
            result.has_arrays = True
        record = result.to_json()  # plain JSON values: user properties travel from xdist workers
        ran = result.status is not None and result.status.ran  # evaluate() always judges
        summary = case_summary(self.case, context(self.case) if ran else None)
        self.user_properties.append(("normconf", json.dumps({"result": record, "case": summary},
                                                             default=str, allow_nan=True)))
        for key in ("case", "adapter", "status", "op", "dtype", "layout"):
            self.user_properties.append((f"normconf_{key}", record[key]))
        for name, m in record["outputs"].items():
            for metric in ("max_abs", "max_rel", "max_ulp", "ratio", "atol", "rtol"):
                self.user_properties.append((f"normconf_{name}_{metric}", m[metric]))
        if record["explanation"]:
            self.user_properties.append(("normconf_cause", record["explanation"]["cause"]))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (CaseFailure, pytest.xfail.Exception)):
            # an expected discrepancy is an xfail: its reason is the whole story, and pytest's own
            # traceback rendering took 159 s of a 465 s profiled full run
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, 0, self.name


def failure_text(case, adapter, result, nodeid, config) -> str:
    """What a failed item says: the case and adapter, each output's metrics, tolerance and worst
    element, the explanation, and two lines that reproduce it."""
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
    nodeid = crash.GROUP_SUFFIX.sub("]", nodeid)  # the xdist_group suffix xdist adds under loadgroup
    file, sep, rest = nodeid.partition("::")
    invocation = getattr(config, "invocation_params", None)  # fuzz.py passes a bare stand-in config
    if invocation is not None and Path(invocation.dir, file).resolve() != Path(case.file).resolve():
        # a case file outside the rootdir (the shipped cases under `--pyargs normconf`): its node id is
        # relative to the folder given, so the line names the file itself
        nodeid = f"{case.file}{sep}{rest}"
    lines += ["  reproduce:",
              f"    pytest {shlex.quote(nodeid)}{options}",
              f"    python -c \"import normconf, pprint; pprint.pprint(normconf.reproduce("
              f"{case.file!r}, {case.id!r}, {adapter.name!r}{', ' + repr(specs) if specs else ''}))\""]
    return "\n".join(lines)


class FuzzItem(pytest.Item):
    """``--fuzz N``: Hypothesis-drawn cases through every selected, available adapter."""

    def runtest(self):
        from ..fuzz import Finding, run

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
        from ..fuzz import Finding

        if isinstance(excinfo.value, Finding):
            return f"fuzzing, seed {self.config.option.fuzz_seed}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, 0, self.name

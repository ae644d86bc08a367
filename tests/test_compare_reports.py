"""tools/compare_reports.py: the before/after check of a refactor, on small synthetic reports."""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("compare_reports", ROOT / "tools" / "compare_reports.py")
compare_reports = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_reports)


def record(case, adapter, status, op="instance_norm", seconds=0.1, **extra):
    return {"case": case, "adapter": adapter, "op": op, "status": status, "outputs": {"y": {"max_abs": 0.5}},
            "explanation": None, "seconds": seconds, **extra}


BEFORE = {"results": [record("a/1", "numpy", "pass"), record("a/1", "torch", "expected"),
                      record("a/1", "cupy", "unavailable"), record("b/1", "recipe", "unsupported", op="group_norm")],
          "matrices": {"a/1": {"labels": ["oracle", "numpy"], "max_abs": [[0, 1], [1, 0]]}}}


def run(tmp_path, before, after, capsys):
    (tmp_path / "b.json").write_text(json.dumps(before))
    (tmp_path / "a.json").write_text(json.dumps(after))
    code = compare_reports.main([str(tmp_path / "b.json"), str(tmp_path / "a.json")])
    return code, capsys.readouterr().out


def test_timings_differ_and_not_run_items_are_listed_once(tmp_path, capsys):
    after = copy.deepcopy(BEFORE)
    after["results"] = [dict(r, seconds=9.9) for r in after["results"][:2]]
    after["not_run"] = [{"adapter": "cupy", "op": None, "status": "unavailable", "cases": 1, "reason": "no GPU"},
                        {"adapter": "recipe", "op": "group_norm", "status": "unsupported", "cases": 1, "reason": "no API"}]
    code, out = run(tmp_path, BEFORE, after, capsys)
    assert code == 0
    assert "equal 2, listed once as not run 2, different 0" in out


def test_a_changed_status_a_lost_record_or_a_changed_matrix_fails(tmp_path, capsys):
    after = copy.deepcopy(BEFORE)
    after["results"][1]["status"] = "fail"
    del after["results"][3]  # unsupported, but not listed under not_run: lost
    after["matrices"]["a/1"]["max_abs"][0][1] = 2
    code, out = run(tmp_path, BEFORE, after, capsys)
    assert code == 1
    assert "status expected -> fail" in out and "missing after" in out and "matrix a/1 differs" in out

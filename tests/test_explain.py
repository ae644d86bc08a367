"""The explanation engine against planted faults.

Each fault is a deliberately wrong implementation of one convention (or two), written like the
code it imitates: NumPy in the case's dtype with the n-1 divisor, another eps, eps on the std,
E[x^2]-E[x]^2, float16 sums, the channel axis read as another dim, ... It runs over the shipped
cases of the ops it applies to. For each (fault, case):

- an *opportunity* is a case where the fault moves some output beyond tolerance (a fault that
  stays within tolerance there, e.g. one-pass variance on data with |mean| ~ std, is counted as
  "within tol" and is no opportunity);
- *detected*: ``explain`` returns an explanation (it must, on every opportunity);
- *correct*: its cause is the planted one (for a pair: either of the two), as ``cause``, one of a
  pair's ``causes`` or one of ``also`` (the causes it ties with: they reproduce the outputs as well);
  for a bug whose class has no cause id (an empty tuple of causes), ``unexplained`` is correct;
- *misnamed*: a confident wrong answer: a cause that is not the planted one (and no tie with it),
  or any cause for a bug without a cause id. Worse than ``unexplained``, which only fails to help.

tests/planted.py adds bugs of whole classes, written like the code that has them: a kernel reading
(or writing) a buffer in the other memory layout, a batch norm module in the wrong mode, group norm
with interleaved groups, ``Normalize`` multiplying by std, a bias subtracted, float16 accumulators,
rms_norm ports with each of their bugs, the deployment ones: eps and momentum as ONNX's float32
attributes, a float64 port on ``.float()`` tensors, GroupNormalization-18's per-group affine, and
an empty batch's statistics: the update skipped (torch) or means over no values taken as 0 (OpenVINO).

Correct implementations (the oracle rounded to the case dtype, the NumPy adapter wherever it passes,
and the torch port tests/planted.py builds its bugs on) must produce no explanation at all: false
alarms.

``pytest -s tests/test_explain.py`` prints the table. While developing, ``NORMCONF_PLANTED_EVERY=k``
runs every k-th case only and ``NORMCONF_PLANTED_FAULTS=word,word`` the faults whose name contains
one of the words (the floors still apply; a fault without an opportunity in the subset is no error).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from adapters.numpy_adapter import NumpyAdapter
from normconf import oracle
from normconf.adapter import from_layout, to_layout
from normconf.cases import load_paths, load_text, outputs_of
from normconf.engine import context, evaluate
from normconf.explain import explain, explain_pair
from normconf.inputs import round_to_dtype

ROOT = Path(__file__).resolve().parents[1]
# bad_input cases (NaN/inf parameters, empty batches, float16 overflow) hide planted faults in
# NaN, empty or overflowed outputs by design: tests/test_bad_input.py checks their explanations.
# The empty batches whose statistics are outputs (batch norm's running statistics, channel_stats)
# stay: what an implementation makes of the statistics of nothing is a fault of its own
# (tests/planted.py, empty_batch_statistics), and every other fault must hold there too.
CASES = [c for c in load_paths([ROOT / "cases"])[0]
         if c.data is None and np.prod(c.shape) <= 20000
         and ("bad_input" not in c.tags or (c.shape[0] == 0 and set(outputs_of(c.op, c.params)) - {"y"}))]
STAT_OPS = ("instance_norm", "layer_norm", "group_norm", "batch_norm")
OTHER = {"biased": "unbiased", "unbiased": "biased"}
# Correct-cause rates the planted faults must reach. Measured (the table): 4470/4470 single and
# 1417/1417 paired faults with a cause id named right, 15 of them in a tie (the data cannot decide:
# an all-NaN y from float16 sums is also what E[x^2]-E[x]^2 gives when x^2 overflows float16; a
# float16 fault barely past tolerance that an eps of 0.01 fits as well as the n-1 divisor; a layout
# misread of a group norm that keeps the groups' values, as the channel axis read as dim 2 does),
# none misnamed, and 158/158 bugs without a cause id left unexplained. The floors sit a few points
# under the measurement so that a regression fails while new case files with more ties do not; a
# wrong cause is never allowed (MISNAMED_CEILING below).
SINGLE_FLOOR, PAIR_FLOOR, PER_FAULT_FLOOR = 0.97, 0.97, 0.9
# float16 faults overflow on purpose; NumPy warns about it
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# ----------------------------------------------------------------------------- implementations

def _round(out, dtype):
    return {k: round_to_dtype(v, dtype) for k, v in out.items()}


def _numpy_ok(case) -> bool:
    return case.dtype != "bfloat16" and evaluate(case, NumpyAdapter())["status"] == "pass"


_NUMPY_OK: dict = {}


def with_params(case, inputs, **changes):
    """The case's own math with parameters changed: NumPy code in the case dtype where the NumPy
    adapter is correct on the case, else the float64 oracle rounded to the dtype."""
    key = (case.file, case.id)
    if key not in _NUMPY_OK:
        _NUMPY_OK[key] = _numpy_ok(case)
    changed = case.with_params(**changes)
    if _NUMPY_OK[key]:
        return {k: np.asarray(v, dtype=np.float64) for k, v in NumpyAdapter().run(changed, inputs).items()}
    return _round(oracle.reference(changed, inputs), case.dtype)


def drop_affine(case, inputs, **changes):
    bare = {k: v for k, v in inputs.items() if k not in ("weight", "bias")}
    return _round(oracle.reference(case.with_params(**changes), bare), case.dtype)


def hand_written(case, inputs, *, form="var", one_pass=False, half_sums=False, rounded_mean=False, **changes):
    """NumPy normalization written the way a hurried person would: ``form="std"`` adds eps to
    the std, ``one_pass`` takes E[x^2]-E[x]^2 in max(dtype, float32), ``half_sums`` adds float16
    values one by one in float16, ``rounded_mean`` subtracts the mean rounded to the input dtype."""
    case = case.with_params(**changes) if changes else case
    p, dt = case.params, case.dtype
    cd = {"float64": np.float64, "float32": np.float32}.get(dt, np.float32)
    if half_sums:
        cd = np.float16

    def total(v, axes):
        if not half_sums:
            return v.sum(axis=axes, keepdims=True)
        kept = [1 if a in axes else s for a, s in enumerate(v.shape)]
        moved = np.moveaxis(v, axes, tuple(range(-len(axes), 0)))
        flat = moved.reshape(moved.shape[:moved.ndim - len(axes)] + (int(np.prod([v.shape[a] for a in axes])),))
        if not flat.shape[-1]:  # an empty batch: the sum of nothing
            return np.zeros(kept, dtype=np.float16)
        return np.cumsum(flat, axis=-1, dtype=np.float16)[..., -1].reshape(kept)

    def moments(v, axes, ddof):
        n = int(np.prod([v.shape[a] for a in axes]))
        v = v.astype(cd)
        with np.errstate(all="ignore"):
            mean = total(v, axes) / cd(n)
            if one_pass:
                var = (total(v * v, axes) / cd(n) - mean * mean) * cd(n / max(n - ddof, 1e-300))
            else:
                d = v - mean
                var = total(d * d, axes) / cd(max(n - ddof, 0) or np.nan)
        if rounded_mean:
            mean = round_to_dtype(oracle.mean_var(v.astype(np.float64), axes, 0)[0], dt).astype(cd)
        return mean, var

    def norm(v, axes, ddof):
        mean, var = moments(v, axes, ddof)
        ed = np.float32 if half_sums else cd  # float16 sums, eps added in float32: the sums alone are off
        with np.errstate(all="ignore"):
            dev, var = v.astype(cd) - mean, var.astype(ed)
            return dev / np.sqrt(var + ed(p["eps"])) if form == "var" else dev / (np.sqrt(var) + ed(p["eps"]))

    x = np.asarray(inputs["x"])
    r = x.ndim
    chan = lambda v: np.asarray(v, dtype=cd).reshape((1, -1) + (1,) * (r - 2))  # noqa: E731
    out = {}
    ddof = oracle.DDOF[p.get("variance", "biased")]
    if case.op == "channel_stats":
        ax = (0,) + tuple(range(2, r))
        if p["method"] == "pooled":
            mean, var = moments(x, ax, ddof)
            return _round({"mean": mean.reshape(-1), "std": np.sqrt(var).reshape(-1)}, dt)
        mean, var = moments(x, tuple(range(2, r)), ddof)
        return _round({"mean": mean.reshape(x.shape[:2]).mean(axis=0), "std": np.sqrt(var).reshape(x.shape[:2]).mean(axis=0)}, dt)
    if case.op == "instance_norm":
        y = norm(x, tuple(range(2, r)), ddof)
    elif case.op == "layer_norm":
        y = norm(x, tuple(p["axes"]), ddof)
    elif case.op == "group_norm":
        g = p["groups"]
        grouped = x.reshape((x.shape[0], g, x.shape[1] // g) + x.shape[2:])
        y = norm(grouped, tuple(range(2, grouped.ndim)), ddof).reshape(x.shape)
    elif not p["training"]:
        with np.errstate(all="ignore"):
            dev = x.astype(cd) - chan(inputs["running_mean"])
            rv = chan(inputs["running_var"])
            y = dev / np.sqrt(rv + cd(p["eps"])) if form == "var" else dev / (np.sqrt(rv) + cd(p["eps"]))
    else:
        ax = (0,) + tuple(range(2, r))
        rm, rv = np.asarray(inputs["running_mean"], cd), np.asarray(inputs["running_var"], cd)
        for k, xk in enumerate(inputs["x_steps"], start=1):
            m = cd(1.0 / k if p["momentum"] is None else p["momentum"])
            mean, _ = moments(np.asarray(xk), ax, 0)
            _, var_r = moments(np.asarray(xk), ax, oracle.DDOF[p["running_variance"]])
            rm = (1 - m) * rm + m * mean.reshape(-1)
            rv = (1 - m) * rv + m * var_r.reshape(-1)
        if p["eval_after"]:  # the eval pass normalizes with the running statistics just written
            with np.errstate(all="ignore"):
                dev, var = x.astype(cd) - chan(rm), chan(rv)
                y = dev / np.sqrt(var + cd(p["eps"])) if form == "var" else dev / (np.sqrt(var) + cd(p["eps"]))
        else:
            y = norm(x, ax, ddof)
        out["running_mean"], out["running_var"] = rm, rv
    if case.op == "layer_norm":
        shape_for = lambda v: np.asarray(v, cd).reshape([x.shape[d] if d in p["axes"] else 1 for d in range(r)])  # noqa: E731
    else:
        shape_for = chan
    if "weight" in inputs:
        y = y * shape_for(inputs["weight"])
    if "bias" in inputs:
        y = y + shape_for(inputs["bias"])
    out["y"] = y
    return _round({k: np.asarray(v, dtype=np.float64) for k, v in out.items()}, dt)


def channel_axis_as_dim2(case, inputs):
    """Statistics taken with dim 2 for the channels: the op normalizes the transposed [N, H, W, C]
    array as if H were the channels (the case's affine still on the real channels). A clean change
    of the reduction axes; a kernel that misreads a buffer's layout scrambles the data instead
    (tests/planted.py's layout faults)."""
    x = to_layout(inputs["x"], "channels_last")
    bare = case.with_params(weight=None, bias=None, grad=False, track_running_stats=False)  # y alone
    y = oracle.reference(bare, {"x": x})["y"]  # layer_norm: its axes, positions, now name other dims
    y = from_layout(y, "channels_last")
    y = oracle._affine(y, inputs, (lambda v: np.asarray(v).reshape([y.shape[d] if d in case.params["axes"] else 1
                                                                     for d in range(y.ndim)]))
                       if case.op == "layer_norm" else (lambda v: oracle._channel(v, y.ndim)))
    return _round({"y": y}, case.dtype)


def _eps_other(case):
    return 1e-5 if case.params["eps"] == 1e-3 else 1e-3


def _misread_ok(case):
    if len(case.shape) < 3 or case.op not in ("instance_norm", "group_norm", "layer_norm"):
        return False
    if case.op == "group_norm":
        return case.shape[2] % case.params["groups"] == 0
    return True


def _training(case):
    return case.op == "batch_norm" and case.params["training"]


def _affine(case):
    return case.params.get("weight") is not None or case.params.get("bias") is not None


# name, planted causes, applies(case), fault(case, inputs)
FAULTS = [
    ("n-1 divisor", ("variance_divisor",), lambda c: "variance" in c.params,
     lambda c, i: with_params(c, i, variance=OTHER[c.params["variance"]])),
    ("eps 1e-3", ("eps_value",), lambda c: c.op in STAT_OPS + ("rms_norm",),
     lambda c, i: with_params(c, i, eps=_eps_other(c))),
    ("eps added to std", ("eps_on_std",), lambda c: c.op in STAT_OPS,
     lambda c, i: hand_written(c, i, form="std")),
    ("one-pass var float32", ("one_pass_variance",), lambda c: c.op in STAT_OPS + ("channel_stats",),
     lambda c, i: hand_written(c, i, one_pass=True)),
    ("float16 sums", ("low_precision_accumulation",),
     lambda c: c.dtype == "float16" and c.op in STAT_OPS + ("channel_stats",),
     lambda c, i: hand_written(c, i, half_sums=True)),
    ("mean rounded to dtype", ("low_precision_accumulation",),
     lambda c: c.dtype in ("float16", "bfloat16") and c.op in STAT_OPS and not (c.op == "batch_norm" and not c.params["training"]),
     lambda c, i: hand_written(c, i, rounded_mean=True)),
    ("channel axis as dim 2", ("reduction_axes",), _misread_ok, channel_axis_as_dim2),
    ("momentum flipped", ("momentum_convention",), lambda c: _training(c) and c.params["momentum"] is not None,
     lambda c, i: with_params(c, i, momentum=1 - c.params["momentum"])),
    ("running var flipped", ("running_variance_estimator",), _training,
     lambda c, i: with_params(c, i, running_variance=OTHER[c.params["running_variance"]])),
    ("per-image std", ("per_image_std",), lambda c: c.op == "channel_stats",
     lambda c, i: with_params(c, i, method="pooled" if c.params["method"] == "per_image_mean" else "per_image_mean")),
    ("missing affine", ("affine_default",), _affine, lambda c, i: drop_affine(c, i)),
    # pairs
    ("n-1 + eps 1e-3", ("variance_divisor", "eps_value"), lambda c: c.op in STAT_OPS,
     lambda c, i: with_params(c, i, variance=OTHER[c.params["variance"]], eps=_eps_other(c))),
    ("n-1 + running var", ("variance_divisor", "running_variance_estimator"), _training,
     lambda c, i: with_params(c, i, variance=OTHER[c.params["variance"]],
                              running_variance=OTHER[c.params["running_variance"]])),
    ("eps on std + n-1", ("eps_on_std", "variance_divisor"), lambda c: c.op in STAT_OPS,
     lambda c, i: hand_written(c, i, form="std", variance=OTHER[c.params["variance"]])),
    ("momentum + running var", ("momentum_convention", "running_variance_estimator"),
     lambda c: _training(c) and c.params["momentum"] is not None,
     lambda c, i: with_params(c, i, momentum=1 - c.params["momentum"],
                              running_variance=OTHER[c.params["running_variance"]])),
    ("per-image std + n-1", ("per_image_std", "variance_divisor"), lambda c: c.op == "channel_stats",
     lambda c, i: with_params(c, i, variance=OTHER[c.params["variance"]],
                              method="pooled" if c.params["method"] == "per_image_mean" else "per_image_mean")),
    ("missing affine + n-1", ("affine_default", "variance_divisor"), lambda c: _affine(c) and "variance" in c.params,
     lambda c, i: drop_affine(c, i, variance=OTHER[c.params["variance"]])),
]


# Bugs of whole classes, written like the code that has them (tests/ is on sys.path: pytest imports
# the test modules of a folder without __init__.py from there)
import planted  # noqa: E402

FAULTS += planted.FAULTS
# the rate of confident wrong answers allowed, over the bugs whose class has a cause id and over
# those without one
MISNAMED_CEILING = 0.0


def _subset():
    """(cases, faults, whether that is a subset) as the NORMCONF_PLANTED_* variables ask."""
    import os

    every = int(os.environ.get("NORMCONF_PLANTED_EVERY") or 1)
    words = [w.strip() for w in (os.environ.get("NORMCONF_PLANTED_FAULTS") or "").split(",") if w.strip()]
    faults = [f for f in FAULTS if not words or any(w in f[0] for w in words)]
    return CASES[::every], faults, every > 1 or bool(words)


# ----------------------------------------------------------------------------- the run

def _named(found) -> set:
    """The causes an explanation stands for: its cause, a pair's causes, and ``also``, the causes it
    ties with (they reproduce the outputs as well: the data cannot tell them apart)."""
    if found["cause"] == "unexplained":
        return set()
    return {found["cause"], *found.get("causes", ()), *found.get("also", ())}


def _run_faults():
    rows, misses, times = [], [], []
    cases, faults, _ = _subset()
    for name, causes, applies, fault in faults:
        row = {"fault": name, "causes": causes, "cases": 0, "within": 0, "opportunities": 0, "detected": 0,
               "correct": 0, "misnamed": 0, "ties": 0, "in_tie": 0}
        for case in cases:
            if not applies(case):
                continue
            ctx = context(case)
            row["cases"] += 1
            actual = fault(case, ctx.inputs)
            start = time.perf_counter()
            found = explain(case, ctx.inputs, ctx.expected, actual, ctx.tolerance)
            times.append(time.perf_counter() - start)
            if found is None:  # explain says None exactly when every output is within tolerance
                row["within"] += 1
                continue
            row["opportunities"] += 1
            row["detected"] += 1
            row["ties"] += bool(found.get("also"))
            got = _named(found)
            if (got & set(causes)) if causes else not got:
                row["correct"] += 1
                row["in_tie"] += bool(causes) and not ({found["cause"], *found.get("causes", ())} & set(causes))
                continue
            row["misnamed"] += bool(got)
            misses.append(f"{name} on {case.key}: {found['cause']} ({found['detail'][:160]})")
        rows.append(row)
    return rows, misses, times


def _false_alarms():
    alarms, checked = [], 0
    for case in _subset()[0]:
        ctx = context(case)
        impls = {"oracle rounded": _round(ctx.expected, case.dtype), "torch port": planted.correct(case, ctx.inputs)}
        if case.dtype != "bfloat16" and evaluate(case, NumpyAdapter())["status"] == "pass":
            impls["numpy"] = NumpyAdapter().run(case, ctx.inputs)
        for label, actual in impls.items():
            checked += 1
            found = explain(case, ctx.inputs, ctx.expected, actual, ctx.tolerance)
            if found is not None:
                alarms.append(f"{label} on {case.key}: {found['cause']}")
    return alarms, checked


def _table(rows, alarms, checked, times) -> str:
    lines = [f"{'fault':<27} {'cause(s)':<45} {'cases':>5} {'within':>6} {'opport.':>7} {'detect':>6} "
             f"{'correct':>7} {'rate':>6} {'misnamed':>8} {'ties':>4} {'in tie':>6}",
             "(within: the fault stays within tolerance there, no opportunity; correct: the planted cause named "
             "(as cause, in a pair or in a tie), or unexplained for a bug without a cause id (-); misnamed: a "
             "wrong cause named; ties: explanations that name a tie, the other causes under 'also'; in tie: of "
             "the correct, those where the planted cause is only under 'also')"]
    for r in rows:
        rate = r["correct"] / r["opportunities"] if r["opportunities"] else float("nan")
        lines.append(f"{r['fault']:<27} {'+'.join(r['causes']) or '-':<45} {r['cases']:>5} {r['within']:>6} "
                     f"{r['opportunities']:>7} {r['detected']:>6} {r['correct']:>7} {rate:>6.1%} {r['misnamed']:>8} "
                     f"{r['ties']:>4} {r['in_tie']:>6}")
    for label, sel in (("single causes", [r for r in rows if len(r["causes"]) == 1]),
                       ("pairs", [r for r in rows if len(r["causes"]) == 2]),
                       ("all with a cause id", [r for r in rows if r["causes"]]),
                       ("no cause id (unexplained is right)", [r for r in rows if not r["causes"]])):
        opp, ok = sum(r["opportunities"] for r in sel), sum(r["correct"] for r in sel)
        wrong, tied = sum(r["misnamed"] for r in sel), sum(r["in_tie"] for r in sel)
        lines.append(f"{label}: {ok}/{opp} correct cause = {ok / max(opp, 1):.1%} ({tied} in a tie), "
                     f"misnamed {wrong}/{opp} = {wrong / max(opp, 1):.1%}")
    t = np.array(times) * 1000
    lines.append(f"false alarms: {len(alarms)} of {checked} correct runs")
    lines.append(f"explain(): {t.size} calls, median {np.median(t):.1f} ms, p90 {np.quantile(t, 0.9):.1f} ms, "
                 f"max {t.max():.1f} ms")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def planted_table():
    rows, misses, times = _run_faults()
    alarms, checked = _false_alarms()
    table = _table(rows, alarms, checked, times)
    print("\n" + table)
    if misses:
        print("wrong causes:\n  " + "\n  ".join(misses[:30]))
    return rows, misses, alarms, table


def test_planted_faults_are_detected_and_explained(planted_table):
    rows, misses, alarms, table = planted_table
    message = table + ("\nwrong causes:\n  " + "\n  ".join(misses[:30]) if misses else "")
    subset = _subset()[2]
    for r in rows:
        assert r["detected"] == r["opportunities"], message
        assert r["opportunities"] > 0 or subset, f"{r['fault']}: no case moves beyond tolerance\n{message}"
        assert r["correct"] >= PER_FAULT_FLOOR * r["opportunities"], message
    singles = [r for r in rows if len(r["causes"]) == 1]
    pairs = [r for r in rows if len(r["causes"]) == 2]
    assert sum(r["correct"] for r in singles) >= SINGLE_FLOOR * sum(r["opportunities"] for r in singles), message
    assert sum(r["correct"] for r in pairs) >= PAIR_FLOOR * sum(r["opportunities"] for r in pairs), message
    named = [r for r in rows if r["causes"]]
    assert sum(r["correct"] for r in named) >= SINGLE_FLOOR * sum(r["opportunities"] for r in named), message


def test_planted_faults_are_never_misnamed(planted_table):
    """A wrong cause is worse than none: a bug whose class has a cause id is named right, tied with
    the right cause, or left unexplained; a bug without one is left unexplained."""
    rows, misses, alarms, table = planted_table
    for sel in ([r for r in rows if r["causes"]], [r for r in rows if not r["causes"]]):
        opp = sum(r["opportunities"] for r in sel)
        assert sum(r["misnamed"] for r in sel) <= MISNAMED_CEILING * opp, table + "\nwrong causes:\n  " + \
            "\n  ".join(misses[:30])


def test_no_false_alarms_on_correct_implementations(planted_table):
    rows, misses, alarms, table = planted_table
    assert not alarms, table + "\n" + "\n".join(alarms[:20])


# ----------------------------------------------------------------------------- by hand

def _one(text):
    cases, errors = load_text(text, "t.yaml")
    assert not errors, errors
    return cases[0]


def test_variance_divisor_detail_names_the_factor():
    case = _one("cases: [{id: a, op: instance_norm, input: {shape: [2, 3, 5, 5], dtype: float64}}]")
    ctx = context(case)
    actual = oracle.reference(case.with_params(variance="unbiased"), ctx.inputs)
    found = explain(case, ctx.inputs, ctx.expected, actual, ctx.tolerance)
    assert found["cause"] == "variance_divisor"
    assert "sqrt(24/25)" in found["detail"] and "0.9798" in found["detail"]
    assert found["params"] == {"variance": "unbiased", "n": 25}
    assert found["outputs"] == ["y"] and found["residual"]["y"] <= 1
    assert len(found["candidates"]) <= 5


def test_fitted_eps_is_reported():
    case = _one("cases: [{id: a, op: layer_norm, input: {shape: [4, 32], dtype: float32, "
                "generator: {dist: normal, std: 0.05}}}]")
    ctx = context(case)
    found = explain(case, ctx.inputs, ctx.expected, oracle.reference(case.with_params(eps=1e-3), ctx.inputs),
                    ctx.tolerance)
    assert found["cause"] == "eps_value" and found["params"]["eps"] == 1e-3
    assert "0.001 instead of 1e-05" in found["detail"]


def test_unexplained_carries_statistics():
    case = _one("cases: [{id: a, op: instance_norm, input: {shape: [2, 3, 8, 8], dtype: float32}}]")
    ctx = context(case)
    rng = np.random.default_rng(0)
    actual = {"y": ctx.expected["y"] + rng.normal(0, 0.1, ctx.expected["y"].shape)}
    found = explain(case, ctx.inputs, ctx.expected, actual, ctx.tolerance)
    assert found["cause"] == "unexplained"
    stats = found["stats"]["y"]
    assert {"ratio_median", "ratio_spread", "mean_offset", "nan_actual", "nan_expected"} <= set(stats)
    assert "corr_error_kappa" in stats


def test_explain_pair_names_both_sides():
    case = _one("cases: [{id: a, op: batch_norm, input: {shape: [8, 3, 5, 5], dtype: float32}}]")
    ctx = context(case)
    torch_like = oracle.reference(case.with_params(running_variance="unbiased"), ctx.inputs)
    found = explain_pair(case, ctx.inputs, torch_like, ctx.expected, ctx.tolerance, labels=("torch", "tensorflow"))
    assert found["cause"] == "running_variance_estimator"
    assert found["detail"].startswith("torch: running_variance_estimator (unbiased")
    assert found["detail"].endswith("tensorflow: agrees with the oracle")
    assert explain_pair(case, ctx.inputs, ctx.expected, ctx.expected, ctx.tolerance) is None


def test_eval_after_training_is_explained_with_the_running_statistics():
    """batch_norm with eval_after: y uses the running statistics after training; eps added to the std
    there is found as eps_on_std (it used to be fitted against batch statistics: affine_default)."""
    case = load_text("cases: [{id: ev, op: batch_norm, input: {shape: [8, 3, 4, 4], dtype: float64, "
                     "generator: {dist: normal, mean: 0.5, std: 0.2, seed: 3}}, "
                     "params: {steps: 3, eval_after: true, eps: 0.01, weight: [1.5, 0.5, 1.0]}}]", "t.yaml")[0][0]
    inputs = context(case).inputs
    stats = oracle.running_stats(case, inputs, (0, 2, 3))
    chan = lambda v: np.asarray(v).reshape(1, -1, 1, 1)  # noqa: E731
    y = (inputs["x"] - chan(stats["running_mean"])) / (np.sqrt(chan(stats["running_var"])) + 0.01)
    actual = {"y": y * chan(inputs["weight"]), **stats}
    ctx = context(case)
    found = explain(case, inputs, ctx.expected, actual, ctx.tolerance)
    assert found["cause"] == "eps_on_std", found


def test_eps_underflow_in_float16_is_not_named_the_variance_divisor():
    """Issue 12: NumPy adds eps in the input dtype, and 1e-12 (1e-8 too) is 0 in float16: a slice of
    one value, or of equal values, gives var + eps = 0 and y = 0/0 = NaN where the oracle gives 0.
    That is eps not taking effect (eps_value, eps 0), not the n-1 divisor, even where the n-1 divisor
    of a one-value slice makes the same NaN (it is then listed under ``also``)."""
    numpy = NumpyAdapter()
    for text, zero, tie in [
        # the drawn case of the issue: a layer norm over one value, biased
        ("{id: a, op: layer_norm, input: {shape: [1, 1], dtype: float16}, params: {eps: 1.0e-12}}", 1, True),
        # one value per group, with an affine: NaN either way
        ("{id: b, op: group_norm, input: {shape: [2, 2], dtype: float16}, params: {groups: 2, eps: 1.0e-8, "
         "weight: [2.0, 0.5], bias: [1.0, -1.0]}}", 4, True),
        # two slices of equal values (n = 3: the n-1 divisor gives 0, not NaN), one that is not
        ("{id: c, op: instance_norm, input: {shape: [1, 3, 3], dtype: float16, data: [[[2.0, 2.0, 2.0], "
         "[-1.0, -1.0, -1.0], [0.5, 1.5, -2.0]]]}, params: {eps: 1.0e-12}}", 2, False)]:
        case = _one(f"cases: [{text}]")
        ctx = context(case)
        actual = numpy.run(case, ctx.inputs)
        found = explain(case, ctx.inputs, ctx.expected, actual, ctx.tolerance)
        assert found["cause"] == "eps_value", found
        assert found["params"]["eps"] == 0.0 and found["params"]["dtype"] == "float16"
        # where the n-1 divisor makes the same NaN it is a tie (issue 14): named after the eps, which
        # needs nothing but the case's own arithmetic, the divisor under also, its evidence the first
        # candidate
        detail = found["detail"]
        assert "is 0 in float16" in detail and f"var + eps = 0 in {zero} of" in detail and "0/0 = NaN" in detail
        assert "n-1" not in detail
        assert (found.get("also") == ["variance_divisor"]) == tie, found.get("also")
        assert detail.endswith("; tie: variance_divisor reproduces it as well") == tie
        assert ("the n-1 divisor is 0" in found["candidates"][0]["detail"]) == tie
    # 1e-12 is a float32 number: NumPy agrees with the oracle there
    case = _one("cases: [{id: d, op: layer_norm, input: {shape: [1, 1], dtype: float32}, params: {eps: 1.0e-12}}]")
    ctx = context(case)
    assert explain(case, ctx.inputs, ctx.expected, numpy.run(case, ctx.inputs), ctx.tolerance) is None
    # where eps does not underflow, the n-1 divisor over one value is still the n-1 divisor
    case = _one("cases: [{id: e, op: layer_norm, input: {shape: [1, 1], dtype: float16}, params: {eps: 1.0e-3}}]")
    ctx = context(case)
    found = explain(case, ctx.inputs, ctx.expected, oracle.reference(case.with_params(variance="unbiased"), ctx.inputs),
                    ctx.tolerance)
    assert found["cause"] == "variance_divisor" and "the n-1 divisor is 0" in found["detail"]


def test_a_pair_with_a_variant_of_another_dtype_is_judged_at_its_tolerance():
    """variant.pair() passes on ``extra["tolerance"]`` (compute_precision's float32 tolerance): the pair
    computes in that dtype too, so judging it at float64's would leave it unexplained."""
    from normconf.explain.variant import Variant, pair

    t32 = {"y": {"atol": 1e-6, "rtol": 1e-6}}
    computed = Variant("compute_precision", {"dtype": "float32"}, "in float32", fn=lambda c, i: {},
                       extra={"tolerance": t32})
    discrete = Variant("weight_offset", {"weight_offset": 1.0}, "offset", changes={"weight_offset": 1.0})
    for a, b in ((computed, discrete), (discrete, computed)):
        both = pair(a, b)
        assert both.extra["tolerance"] is t32 and set(both.causes) == {"compute_precision", "weight_offset"}
    plain = Variant("eps_value", {"eps": 1e-3}, "eps", changes={"eps": 1e-3})
    assert "tolerance" not in pair(discrete, plain).extra


RMS64 = """
cases:
  - {id: tokens, op: rms_norm, input: {shape: [4, 8, 32], dtype: float64, generator: {dist: normal, seed: 401}},
     params: {axes: [-1], weight: {generator: {dist: normal, mean: 1.0, std: 0.1, seed: 402}}, weight_offset: WO}}
"""


@pytest.mark.parametrize("recipe,offset,statistic", [
    ("GemmaRMSNorm", 0.0, False), ("LlamaRMSNorm", 1.0, False), ("T5LayerNorm", 0.0, True),
    ("T5LayerNorm", 1.0, True), ("LlamaRMSNorm", 0.0, False)])
def test_float64_rms_recipes_are_compute_precision_with_the_other_weight_offset(recipe, offset, statistic):
    """The recipes' own modules on a float64 case: Gemma's and LLaMA's compute in float32 (x.float()),
    T5LayerNorm only its statistic; where the case asks for the other weight offset than the module's,
    the explanation names both causes (compute_precision judged at float32's tolerance in the pair),
    and T5's is the statistic alone in float32 (y / (x w) is a float32 number, y is not)."""
    from adapters import recipes

    adapter = getattr(recipes, recipe)()
    case = _one(RMS64.replace("WO", str(offset)))
    ctx = context(case)
    found = explain(case, ctx.inputs, ctx.expected, adapter.run(case, ctx.inputs), ctx.tolerance)
    named = set(found.get("causes", [found["cause"]]))
    other = adapter.native["weight_offset"] != offset
    assert named == ({"compute_precision", "weight_offset"} if other else {"compute_precision"}), found
    assert found["residual"]["y"] <= 1
    assert ("the statistic computed in float32" in found["detail"]) == statistic, found["detail"]


def test_momentum_null_is_rounded_per_step_as_float32_attributes():
    """momentum null through ONNX: one node per step, momentum 1 - 1/k a float32 attribute (1 - 1/3 =
    0.666666687); the planted port of tests/planted.py is named attribute_precision with each step's
    momentum, and with an eps that float32 holds exactly, by the momentum alone."""
    for eps, said in (("1.0e-5", "eps 1e-05 -> 9.99999975e-06, "), ("0.5", "")):
        case = _one("cases: [{id: a, op: batch_norm, input: {shape: [8, 3, 4, 4], dtype: float64, generator: "
                    "{dist: normal, mean: 1.0, std: 2.0, seed: 43}}, params: {steps: 3, eval_after: true, "
                    f"momentum: null, eps: {eps}, weight: [1.5, 0.5, 1.0]}}}}]")
        ctx = context(case)
        found = explain(case, ctx.inputs, ctx.expected, planted.float32_attributes(case, ctx.inputs), ctx.tolerance)
        assert found["cause"] == "attribute_precision" and "causes" not in found, found
        assert found["params"]["per_step"] == "old"
        assert found["params"]["step_momentum"] == [1.0, 0.5, 1.0 - float(np.float32(2.0 / 3.0))]
        assert found["detail"] == ("parameters rounded to float32 attributes: " + said +
                                   "momentum null: step 3's 0.666666667 (weight of the old value) -> 0.666666687")
        assert set(found["outputs"]) == {"y", "running_mean", "running_var"}
    # two steps: 1 and 1/2 are float32 numbers, nothing to round
    case = _one("cases: [{id: b, op: batch_norm, input: {shape: [8, 3, 4, 4], dtype: float64}, "
                "params: {steps: 2, momentum: null, eps: 0.5}}]")
    ctx = context(case)
    assert explain(case, ctx.inputs, ctx.expected, planted.float32_attributes(case, ctx.inputs), ctx.tolerance) is None


def _one_pass_float32_sequential(case, inputs):
    """Group norm of a float64 input computed in float32 with var = E[x^2] - E[x]^2, each sum a
    running float32 sum (a naive kernel's loop): at mean 1e4 the variance is float32 noise, and its
    summation order is not NumPy's pairwise one the stage-0 variant uses."""
    p = case.params
    x = np.asarray(inputs["x"], dtype=np.float32)
    n, c = x.shape[:2]
    g = x.reshape(n, p["groups"], -1)
    count = np.float32(g.shape[-1])
    with np.errstate(all="ignore"):
        mean = np.cumsum(g, axis=-1, dtype=np.float32)[..., -1:] / count
        ex2 = np.cumsum(g * g, axis=-1, dtype=np.float32)[..., -1:] / count
        y = (g - mean) / np.sqrt(ex2 - mean * mean + np.float32(p["eps"]))
    return {"y": y.reshape(x.shape).astype(np.float64)}


def test_compute_precisions_last_resort_accepts_a_cancelled_float32_variance():
    """compute_precision's fallback (stage 4): a float32 one-pass variance that cancels (mean 1e4) in a
    summation order no variant reproduces, accepted from the per-slice variances y implies, each within
    the one-pass float32 bound c u E[x^2]; shipped, ONNX Runtime's group norm at opset 23 on
    group_norm/mean1e4_std1_2x4x8x8@dtype=float64 reaches it (tests/test_onnx.py)."""
    from normconf.explain.causes import compute_precision
    from normconf.explain.core import Explainer

    case = _one("cases: [{id: a, op: group_norm, input: {shape: [2, 4, 8, 8], dtype: float64, generator: "
                "{dist: normal, mean: 1.0e+4, std: 1.0, seed: 1607}}, params: {groups: 2}}]")
    ctx = context(case)
    actual = _one_pass_float32_sequential(case, ctx.inputs)
    found = explain(case, ctx.inputs, ctx.expected, actual, ctx.tolerance)
    assert set(found["causes"]) == {"compute_precision", "one_pass_variance"}, found
    assert found["params"]["implied"] is True and found["params"]["variance"] == "one-pass"
    assert 0 < found["params"]["max_var_error"] <= found["params"]["E[x^2]"] * 1e-5
    assert "implied by y" in found["detail"]
    # the stage-0 variants do not reproduce it (which is why the last resort is reached)
    ex = Explainer(case, ctx.inputs, ctx.expected, actual, ctx.tolerance, ["y"], ["y"])
    assert not any(ex.evaluate(v).ok for v in compute_precision.computed(ex))
    # the same arithmetic in float64 leaves no float32 numbers: not this cause's to accept
    as64 = {"y": oracle.reference(case, ctx.inputs)["y"] * (1 + 1e-9)}
    ex = Explainer(case, ctx.inputs, ctx.expected, as64, ctx.tolerance, ["y"], ["y"])
    assert compute_precision.fallback(ex) is None

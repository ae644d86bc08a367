"""Fuzzing: Hypothesis draws valid cases and runs them through every available adapter.

``pytest --fuzz N [--fuzz-seed S]`` adds one item that draws N cases (op, shape, dtype, layout, eps,
parameters, input distribution), runs them, and fails on the first result that is ``fail``,
``error`` or ``stale`` and is not a known discrepancy of that adapter (same cause id). Hypothesis
then shrinks it to a minimal case, printed as YAML ready to paste into ``cases/``.
"""
from __future__ import annotations

import time

import yaml

from .cases import load_text
from .engine import evaluate, forget

EPS = [1.0e-12, 1.0e-8, 1.0e-5, 1.0e-3, 1.0e-1]
MEANS = [0.0, 1.0, 100.0, 10000.0]
STDS = [1.0e-3, 1.0, 10.0]


def case_entries():
    """A Hypothesis strategy of case mappings that the loader accepts."""
    from hypothesis import strategies as st

    @st.composite
    def entries(draw):
        op = draw(st.sampled_from(["instance_norm", "batch_norm", "layer_norm", "group_norm", "normalize", "channel_stats"]))
        rank = draw(st.integers(3 if op == "instance_norm" else 2, 5))
        shape = [draw(st.integers(1, 4)), draw(st.integers(1, 6))] + [draw(st.integers(1, 6)) for _ in range(rank - 2)]
        c = shape[1]
        dist = draw(st.sampled_from(["normal", "uniform", "constant"]))
        gen = {"dist": dist, "seed": draw(st.integers(0, 2**16))}
        mean = draw(st.sampled_from(MEANS))
        if dist == "normal":
            gen.update(mean=mean, std=draw(st.sampled_from(STDS)))
        elif dist == "uniform":
            gen.update(low=mean - 1.0, high=mean + 1.0)
        else:
            gen.update(value=mean)
        entry = {"id": "fuzz", "op": op, "input": {
            "shape": shape, "dtype": draw(st.sampled_from(["float64", "float32", "float16", "bfloat16"])),
            "layout": draw(st.sampled_from(["channels_first", "channels_last"])), "generator": gen}}
        params = {}
        if op not in ("normalize", "channel_stats"):
            params["eps"] = draw(st.sampled_from(EPS))
            if draw(st.booleans()):
                params["weight"] = {"generator": {"dist": "uniform", "low": 0.5, "high": 2.0, "seed": 1}}
            if draw(st.booleans()):
                params["bias"] = {"generator": {"dist": "normal", "seed": 2}}
        if op != "normalize":
            params["variance"] = draw(st.sampled_from(["biased", "unbiased"]))
        if op == "group_norm":
            params["groups"] = draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]))
        if op == "layer_norm":
            axes = draw(st.lists(st.integers(1, rank - 1), min_size=1, max_size=rank - 1, unique=True))
            params["axes"] = sorted(axes)
        if op == "batch_norm":
            params["training"] = draw(st.booleans())
            if params["training"]:
                params["momentum"] = draw(st.sampled_from([0.1, 0.5, 1.0, None]))
                params["steps"] = draw(st.integers(1, 3))
                params["running_variance"] = draw(st.sampled_from(["biased", "unbiased"]))
                params["eval_after"] = draw(st.booleans())
            else:
                params["running_var"] = {"generator": {"dist": "uniform", "low": 0.5, "high": 2.0, "seed": 3}}
        if op == "instance_norm" and draw(st.booleans()):  # PyTorch's InstanceNorm*d(track_running_stats=True)
            params["track_running_stats"] = True
            params["momentum"] = draw(st.sampled_from([0.1, 0.5, 1.0, None]))
            params["steps"] = draw(st.integers(1, 3))
            params["running_variance"] = draw(st.sampled_from(["biased", "unbiased"]))
        if op == "normalize":
            params["mean"] = [draw(st.sampled_from([0.0, 0.5, mean])) for _ in range(c)]
            params["std"] = [draw(st.sampled_from([0.01, 0.25, 1.0])) for _ in range(c)]
        if op == "channel_stats":
            params["method"] = draw(st.sampled_from(["pooled", "per_image_mean"]))
        if op != "channel_stats" and draw(st.booleans()):  # gradients of sum(y * grad_output)
            params["grad"] = True
            if values_per_slice(op, shape, params) == TWO_VALUE_SLICES:
                # n = 2: 1 and yhat span the slice, so grad_x = P h / std is 0 up to eps (1e-12 |h| / std)
                # while its rounding error is u |h| / std: the gradient atol, scaled by max |grad_x|
                # (compare.default_tolerance), assumes |P h| ~ sqrt((n - 2) / n) |h| and does not hold.
                # Found by --fuzz, seed 1; reported, tolerance unchanged: no gradient drawn here until then.
                del params["grad"]
        entry["params"] = params
        return entry

    return entries()


TWO_VALUE_SLICES = 2


def values_per_slice(op: str, shape: list[int], params: dict) -> int | None:
    """How many values each normalized slice of the forward pass has (None: y is not normalized
    over a slice of the input, as in normalize or batch norm with running statistics)."""
    spatial = 1
    for d in shape[2:]:
        spatial *= d
    if op == "instance_norm":
        return spatial
    if op == "group_norm":
        return shape[1] // params["groups"] * spatial
    if op == "layer_norm":
        n = 1
        for a in params["axes"]:
            n *= shape[a]
        return n
    if op == "batch_norm" and params["training"] and not params.get("eval_after"):
        return shape[0] * spatial
    return None


def layout_explanation(entry: dict, adapter, known=()) -> dict | None:
    """The explainer varies the math, not the memory: a channels_last fail whose channels_first
    twin passes is a layout misread (DESIGN.md's ``reduction_axes``), e.g. a gradient read in the
    wrong memory order. None where the case is channels_first or its twin does not pass."""
    if entry["input"].get("layout") != "channels_last":
        return None
    twin = dict(entry, id="fuzz_channels_first", input=dict(entry["input"], layout="channels_first"))
    cases, errors = load_text(yaml.safe_dump({"cases": [twin]}, sort_keys=False), "fuzz.yaml")
    try:
        status = evaluate(cases[0], adapter, known)["status"]
    finally:
        forget(cases[0])
    if status != "pass":
        return None
    return {"cause": "reduction_axes", "detail": "wrong in channels_last, right with the same case in channels_first: "
            "the framework misreads the channels_last memory"}


class Finding(AssertionError):
    pass


def run(n: int, seed: int, adapters, known, report=print, shrink: int = 5, seconds: float | None = None) -> dict:
    """Draw ``n`` cases and run them all; raises :class:`Finding` listing every distinct kind of
    finding (adapter, status, explained cause, op), each shrunk to a minimal case as YAML.

    Hypothesis stops at its first failure; to see all of them, the ``n`` cases run first with
    nothing raised, recording where each kind of finding first appears. Then, for each kind (up to
    ``shrink``), the same seed draws the same cases again: those before that position are skipped
    without running, the one at it fails, and Hypothesis shrinks it for that kind only.

    ``seconds`` bounds the first pass: cases drawn after it are not run (``counts["stopped"]`` says
    after how many); the shrinking that follows replays only up to each finding."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as fix_seed

    # statuses: results per status ("known" is a fail whose cause is a known discrepancy of that
    # adapter); adapters: the same per adapter; causes: the known causes met, "adapter: cause" -> n
    counts = {"cases": 0, "results": 0, "known": 0, "statuses": {}, "adapters": {}, "causes": {}, "seconds": 0.0}
    started = time.perf_counter()

    def tally(adapter: str, status: str) -> None:
        counts["statuses"][status] = counts["statuses"].get(status, 0) + 1
        per = counts["adapters"].setdefault(adapter, {})
        per[status] = per.get(status, 0) + 1

    known_causes = {}
    for k in known:
        known_causes.setdefault(k.cause, []).append(k)

    def is_known(result) -> bool:
        """A fail whose explained cause (or an equally good one) is a known discrepancy of this adapter."""
        import fnmatch

        ex = result.get("explanation") or {}
        causes = {ex.get("cause"), *(ex.get("causes") or ()), *(ex.get("also") or ())}
        return any(fnmatch.fnmatchcase(result["adapter"], k.adapter) for c in causes for k in known_causes.get(c, ()))

    found: dict[tuple, dict] = {}  # kind of finding -> where it first appeared, what it said
    state = {"index": 0, "target": None}

    @fix_seed(seed)
    @settings(max_examples=n, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(case_entries())
    def check(entry):
        index, target = state["index"], state["target"]
        state["index"] += 1
        if target is not None and index < found[target]["index"]:
            return  # drawn again only to reach the same case: it did not show this finding
        if target is None and seconds is not None and time.perf_counter() - started > seconds:
            counts.setdefault("stopped", counts["cases"])  # out of time: the rest are drawn, not run
            return
        cases, errors = load_text(yaml.safe_dump({"cases": [entry]}, sort_keys=False), "fuzz.yaml")
        assert not errors, f"the strategy drew an invalid case: {errors[0]}"
        case = cases[0]
        if target is None:
            counts["cases"] += 1
        try:
            for adapter in adapters:
                result = evaluate(case, adapter, known)
                result.pop("arrays", None)
                ex = result.get("explanation") or {}
                if result["status"] == "fail" and ex.get("cause") == "unexplained":
                    result["explanation"] = layout_explanation(entry, adapter, known) or ex
                known_fail = result["status"] == "fail" and is_known(result)
                if target is None:
                    counts["results"] += 1
                    tally(adapter.name, "known" if known_fail else result["status"])
                    if known_fail:
                        counts["known"] += 1
                        key = f"{adapter.name}: {(result.get('explanation') or {}).get('cause')}"
                        counts["causes"][key] = counts["causes"].get(key, 0) + 1
                if known_fail or result["status"] not in ("fail", "error", "stale"):
                    continue
                ex = result.get("explanation") or {}
                kind = (adapter.name, result["status"], ex.get("cause"), case.op)
                why = f"[{ex.get('cause')}] {ex.get('detail')}" if ex else result["reason"]
                if target is None:
                    found.setdefault(kind, {"index": index, "why": why, "entry": entry})
                elif kind == target:
                    text = yaml.safe_dump({"cases": [dict(entry, id="fuzz_found")]}, sort_keys=False)
                    raise Finding(f"{adapter.name}: {result['status']}: {why}\nminimal case, ready for cases/:\n{text}")
        finally:
            forget(case)

    try:
        check()  # every case, nothing raised: the findings and where each first appears
        if not found:
            return counts
        report(f"fuzzing: {len(found)} kind(s) of finding in {counts['cases']} cases; shrinking "
               f"{min(len(found), shrink)} of them")
        parts = []
        for number, kind in enumerate(sorted(found, key=lambda k: found[k]["index"])[:shrink], start=1):
            state.update(index=0, target=kind)
            try:
                check()
                minimal = None  # not met again (should not happen: same seed, same draws)
            except Finding as finding:
                minimal = str(finding)
            first = found[kind]
            parts.append(f"[{number}] {kind[0]} {kind[1]} ({kind[2]}) on {kind[3]} (first at drawn case "
                         f"{first['index'] + 1}): " + (minimal or f"{first['why']}\nas drawn (not shrunk):\n"
                         + yaml.safe_dump({"cases": [dict(first["entry"], id="fuzz_found")]}, sort_keys=False)))
        more = len(found) - len(parts)
        summary = Finding(f"{len(found)} kind(s) of finding in {counts['cases']} drawn cases"
                          + (f" ({more} more not shrunk: {sorted(found)[len(parts):]})" if more else "")
                          + "\n\n" + "\n\n".join(parts))
        summary.counts = counts
        raise summary
    finally:
        counts["seconds"] = round(time.perf_counter() - started, 1)

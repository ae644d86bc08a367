"""Explaining a mismatch: which change of convention makes the float64 oracle reproduce an output.

>>> import numpy as np
>>> from normconf.cases import load_text
>>> from normconf import oracle
>>> from normconf.explain import explain
>>> from normconf.inputs import generate
>>> case = load_text("cases: [{id: a, op: instance_norm, input: {shape: [2, 3, 5, 5], dtype: float64}}]",
...                  "d.yaml")[0][0]
>>> inputs = generate(case)
>>> expected = oracle.reference(case, inputs)
>>> actual = oracle.reference(case.with_params(variance="unbiased"), inputs)
>>> tol = {"y": {"atol": 1e-12, "rtol": 1e-12}}
>>> found = explain(case, inputs, expected, actual, tol)
>>> found["cause"], found["params"]["variance"], found["params"]["n"]
('variance_divisor', 'unbiased', 25)
>>> explain(case, inputs, expected, expected, tol) is None
True

How: every cause id has one or more *variants*, the float64 oracle with one convention changed (the
other divisor, a fitted eps, eps on the std, E[x^2]-E[x]^2 in the input dtype, sums in the input
dtype, other reduction axes, the other momentum or running-variance convention, per-image std, an
affine dropped, an empty batch's statistics taken as 0 or its update skipped). A variant
*reproduces* the actual outputs when :func:`normconf.compare.compare` passes with the caller's
tolerance on every output; among reproducing variants the one leaving the smallest share of the
deviation unexplained (sum of squared errors over the allowance, against the oracle's) is reported,
the largest ``|actual - variant| / allowance`` is its ``residual``. Search order, cheapest and most
specific first, stopping at the first stage that reproduces everything:

0. single variants: the discrete ones (exact reproductions) and a fitted eps that is a common
   value (0, 1e-12, ..., 1e-5, 1e-3, ...), ranked together;
1. a fitted eps that is no common value (kept back: with few slices an eps can mimic any
   per-slice factor), unless a pair below reproduces the output with plain values;
2. pairs: two discrete variants, a discrete variant with a fitted eps or with one computed variant;
3. bound-based: summation order is not knowable, so E[x^2]-E[x]^2 or sums in a low precision are
   also accepted when the per-slice statistics implied by the output are off by more than a
   two-pass float computation can be, yet within the error bound of that computation (alone, or
   after one discrete change that accounts for the other failing outputs);
4. a fitted per-channel scale and shift (an affine nobody asked for).

When nothing reproduces every failing output, the variant reproducing most of them is reported
with ``unexplained_outputs``; when nothing reproduces any, the cause is ``"unexplained"`` with
``stats``. ``also`` lists other single causes that reproduce the outputs as well (the data cannot
tell them apart, e.g. an all-NaN y from float16 sums or from x^2 overflowing in E[x^2]-E[x]^2).

Cost: a few dozen oracle-sized evaluations; 5 ms median, 20-30 ms at the 90th percentile and
about 50 ms at most on the shipped cases (tests/test_explain.py prints the figures).

``expected`` must be the oracle of ``case`` (what the variants are built from); pass
``case.with_params(**native)`` and its oracle to explain relative to a declared convention.

The modules, one concern each:

- :mod:`~normconf.explain.causes`: the table of cause ids, and one module per cause with its
  variants, texts and bound check (adding a cause is a row and a module);
- :mod:`~normconf.explain.core`: the search over the stages above, and the answer it reports;
- :mod:`~normconf.explain.arith`: arithmetic in a dtype and the moments functions (one-pass,
  low-precision, rounded mean) that :class:`normconf.oracle.Variation` runs the oracle with;
- :mod:`~normconf.explain.bounds`: stage 3, the statistics implied by the outputs;
- :mod:`~normconf.explain.geometry`, :mod:`~normconf.explain.variant`,
  :mod:`~normconf.explain.diagnostic`: where statistics live, a variant and how close it comes,
  the figures of an unexplained output.

Importing this package imports none of them (nor NumPy): ``normconf.known`` reads the table of
causes cheaply; :func:`explain` and :func:`explain_pair` load the rest on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .api import explain, explain_pair

__all__ = ["explain", "explain_pair"]

_LAZY = {"explain": ("api", "explain"), "explain_pair": ("api", "explain_pair"), "_Explainer": ("core", "Explainer")}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))

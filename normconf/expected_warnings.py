"""The warnings an adapter call is expected to raise, filtered at that call.

Cases exercise NaN and inf, empty batches, one-value slices and float16 sums past 65504 on purpose, and
the frameworks say so: NumPy's ``RuntimeWarning: invalid value encountered in divide``, ``Mean of empty
slice``, ``overflow encountered in reduce``, torch's ``UserWarning: std(): degrees of freedom is <= 0``.
Such a warning restates what the comparison judges (the NaN, the inf, the empty or collapsed output is
in the result), so it is dropped where the case's numbers make it certain: an input or an output that
is empty or holds a NaN or an inf, or a float16 input whose sums or squares pass float16's largest
value. Every other warning, and these same ones on ordinary numbers, reach pytest as before, so a new
warning stands out.

>>> import numpy as np
>>> certain({"x": np.array([[1.0, np.nan]])})
True
>>> certain({"x": np.ones((2, 3))}, {"y": np.zeros((2, 3))})
False
"""
from __future__ import annotations

import re
import warnings
from typing import cast

import numpy as np

from .adapter import Adapter

#: What NumPy's and torch's numeric warnings say (the text after the category).
NUMERIC = re.compile(r"invalid value encountered|divide by zero encountered|overflow encountered|"
                     r"Mean of empty slice|[Dd]egrees of freedom (is )?<= ?0")

#: The largest finite value of the narrow dtypes whose sums can overflow on the shipped inputs.
_LARGEST = {"float16": float(np.finfo(np.float16).max)}


def numeric(w: warnings.WarningMessage) -> bool:
    """Whether a caught warning is a numeric one (floating-point exception, statistic of no values)."""
    return issubclass(w.category, (RuntimeWarning, UserWarning)) and bool(NUMERIC.search(str(w.message)))


def _arrays(values):
    for v in values:
        if isinstance(v, (list, tuple)):  # batch norm's steps: one array per training pass
            yield from _arrays(v)
        elif v is not None:
            try:
                a = np.asarray(v)
            except Exception:  # a framework's object that NumPy cannot read: nothing to say
                continue
            if a.dtype.kind in "fc":
                yield a


def certain(inputs: dict, outputs: dict | None = None, dtype: str | None = None) -> bool:
    """Whether these numbers make numeric warnings certain: an empty array or a NaN or inf among the
    inputs or the outputs, or (``dtype`` float16) an input whose sum of magnitudes or largest square
    passes float16's largest value (a float16 sum or square overflows)."""
    for a in _arrays(list(inputs.values()) + list((outputs or {}).values())):
        if a.size == 0 or not np.isfinite(a).all():
            return True
    largest = _LARGEST.get(dtype or "")
    if largest is not None:
        for a in _arrays(inputs.values()):
            m = np.abs(a.astype(np.float64, copy=False))
            if m.sum() > largest or m.max() ** 2 > largest:
                return True
    return False


class Quiet:
    """``adapter`` whose :meth:`run` drops the numeric warnings :func:`certain` expects; everything
    else is the adapter's own (attributes are looked up on it)."""

    def __init__(self, adapter):
        self._adapter = adapter

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def __repr__(self) -> str:
        return repr(self._adapter)

    def run(self, case, inputs):
        outputs, caught = None, []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")  # every warning is caught here; the kept ones go on below
                outputs = self._adapter.run(case, inputs)
        finally:  # also when the adapter raised: its warnings are still shown
            expected = any(numeric(w) for w in caught) and certain(inputs, outputs, getattr(case, "dtype", None))
            for w in caught:
                if not (expected and numeric(w)):
                    # through the filters in force outside (pytest's, the project's), as if never caught
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
        return outputs


def quiet(adapter: Adapter) -> Adapter:
    """:class:`Quiet` around ``adapter``, typed as the adapter it stands in for (it answers every
    attribute of the adapter, so the engine treats it as one)."""
    return cast(Adapter, Quiet(adapter))

"""normconf: a cross-framework conformance suite for normalization layers.

Importing this package imports no framework (NumPy and PyYAML only).
"""
from __future__ import annotations

__version__ = "0.1.0"


def reproduce(case_file: str, case_id: str, adapter: str, adapter_specs=()) -> dict:
    """Run one (case, adapter) pair outside pytest and return its result record, as
    ``conformance.json`` has it (:meth:`normconf.records.Result.to_json`; the typed record and the
    adapter's outputs are :func:`normconf.engine.evaluate`'s).

    >>> from normconf.shipped import shipped_cases
    >>> r = reproduce(str(shipped_cases() / "seeds.yaml"), "blog_2x3x5x5_biased", "numpy")
    >>> r["status"], r["outputs"]["y"]["max_abs"] < 1e-12
    ('pass', True)
    """
    from pathlib import Path

    from . import known
    from .adapter import registry
    from .cases import load_file
    from .engine import evaluate

    cases, errors = load_file(case_file)
    match = [c for c in cases if c.id == case_id]
    if not match:
        raise KeyError(f"{case_file}: no case {case_id!r}" + (f" ({errors[0]})" if errors else ""))
    entries = known.load(Path(case_file).parent / "known_discrepancies.yaml")
    return evaluate(match[0], registry(adapter_specs)[adapter], entries).to_json()

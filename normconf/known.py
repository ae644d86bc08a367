"""``cases/known_discrepancies.yaml``: mismatches seen, explained and linked, matched strictly.

Each entry::

    - adapter: labml-nn              # adapter name (fnmatch pattern)
      case: "instance_norm/stability*"  # <file stem>/<case id> (fnmatch pattern)
      outputs: [y]                   # outputs it excuses (default: every output)
      cause: one_pass_variance       # a cause id from DESIGN.md
      reason: E[x^2]-E[x]^2 in float32 cancels when |mean| >> std
      link: https://github.com/...

An entry that matches a result whose outputs all agree is *stale* and reported as such.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import yaml

CAUSES = ("variance_divisor", "eps_value", "eps_on_std", "one_pass_variance", "low_precision_accumulation",
          "reduction_axes", "momentum_convention", "running_variance_estimator", "per_image_std",
          "affine_default")
KEYS = ("adapter", "case", "outputs", "dtypes", "cause", "reason", "link")


@dataclass(frozen=True)
class Known:
    adapter: str
    case: str
    outputs: tuple[str, ...] | None
    dtypes: tuple[str, ...] | None
    cause: str
    reason: str
    link: str
    index: int

    def matches(self, case_key: str, adapter: str, dtype: str) -> bool:
        return (fnmatch.fnmatchcase(adapter, self.adapter) and fnmatch.fnmatchcase(case_key, self.case)
                and (self.dtypes is None or dtype in self.dtypes))

    def covers(self, output: str) -> bool:
        return self.outputs is None or output in self.outputs

    def label(self) -> str:
        return f"known_discrepancies.yaml #{self.index} ({self.adapter} on {self.case})"


class KnownError(Exception):
    pass


def load(path: str | Path) -> list[Known]:
    """The entries of a known-discrepancies file; a malformed entry is a :class:`KnownError`."""
    path = Path(path)
    if not path.exists():
        return []
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = doc.get("entries", []) if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise KnownError(f"{path}: found {type(doc).__name__}; allowed: a mapping with 'entries:' (a list)")
    known = []
    for i, entry in enumerate(entries, start=1):
        def bad(key, found, allowed):
            return KnownError(f"{path}: entry #{i}: key {key!r}: found {found!r}; allowed: {allowed}")
        if not isinstance(entry, dict):
            raise bad("-", entry, "a mapping")
        for key in entry:
            if key not in KEYS:
                raise bad(key, key, ", ".join(KEYS))
        for key in ("adapter", "case", "reason", "link"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise bad(key, entry.get(key), "non-empty text")
        if entry.get("cause") not in CAUSES:
            raise bad("cause", entry.get("cause"), ", ".join(CAUSES))
        if not entry["link"].startswith("https://"):
            raise bad("link", entry["link"], "an https:// link to the upstream issue or doc")
        lists = {}
        for key in ("outputs", "dtypes"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                raise bad(key, value, "a list of names")
            lists[key] = tuple(value) if value is not None else None
        known.append(Known(entry["adapter"], entry["case"], lists["outputs"], lists["dtypes"], entry["cause"],
                           entry["reason"].strip(), entry["link"], i))
    return known

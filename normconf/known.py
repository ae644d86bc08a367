"""``cases/known_discrepancies.yaml``: mismatches seen, explained and linked, matched strictly.

Each entry::

    - adapter: labml-nn              # adapter name (fnmatch pattern)
      case: "instance_norm/stability*"  # <file stem>/<case id> (fnmatch pattern)
      outputs: [y]                   # outputs it excuses (default: every output)
      cause: one_pass_variance       # a cause id (normconf/explain/causes/, docs/causes.md)
      reason: E[x^2]-E[x]^2 in float32 cancels when |mean| >> std
      link: https://github.com/...
      platform_dependent: false      # optional, default false (below)

An entry that matches a result whose outputs all agree is *stale* and reported as such.

``platform_dependent: true`` is for a discrepancy that shows on some machines and not on others (a
kernel chosen by the CPU's instruction set, a BLAS, a GPU): for a result it matches, both a pass
and the explained mismatch are accepted, it is never stale, and the JSON records which of the two
happened. Use it only when the link or the reason says why the platform decides.

A key written twice in one entry is an error naming the key and both lines (PyYAML alone would keep
the last value); ``!!python/...`` tags are refused as by ``yaml.safe_load``.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from .cases import DTYPES, GRADIENTS, OUTPUTS
from .explain import causes
from .yamlload import UNIQUE_KEYS, DuplicateKeyError
from .yamlload import load as load_yaml

# The cause ids and their one-line docs come from the explainer's table (a light module: no NumPy)
CAUSES = causes.IDS
KEYS = ("adapter", "case", "outputs", "dtypes", "cause", "reason", "link", "platform_dependent")
OUTPUT_NAMES = tuple(dict.fromkeys([n for names in OUTPUTS.values() for n in names] + list(GRADIENTS)))
REQUIRED = ("adapter", "case", "cause", "reason", "link")
TOP_KEYS = ("entries",)
# What each key and cause means: editors show it on hover (normconf/schema.py puts it into the schema).
DOCS = {
    "entries": "Mismatches seen in the matrix, explained and linked; matched strictly "
               "(an entry whose outputs agree is stale).",
    "adapter": "Adapter name, an fnmatch pattern (`*numpy*`).",
    "case": "<file stem>/<case id>, an fnmatch pattern (`batch_norm/half_offset_*`).",
    "outputs": "Outputs it excuses (default: every output); any other output that is off still fails.",
    "dtypes": "Input dtypes it applies to (default: every dtype).",
    "cause": "The cause id of the convention or precision change that explains the mismatch.",
    "reason": "Why the framework computes something else, with the evidence.",
    "link": "https:// link to the upstream issue or documentation.",
    "platform_dependent": ("true: the discrepancy shows on some platforms only; a pass and the explained mismatch "
                           "are both accepted, never stale, and the JSON records which happened."),
}
CAUSE_DOCS = {c.id: c.doc for c in causes.REGISTRY}


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
    platform_dependent: bool = False
    #: The file it comes from, as results and messages name it (``known_discrepancies.yaml`` for the
    #: case folders' files, the path given for ``--known PATH``).
    file: str = "known_discrepancies.yaml"

    def matches(self, case_key: str, adapter: str, dtype: str) -> bool:
        return (fnmatch.fnmatchcase(adapter, self.adapter) and fnmatch.fnmatchcase(case_key, self.case)
                and (self.dtypes is None or dtype in self.dtypes))

    def covers(self, output: str) -> bool:
        return self.outputs is None or output in self.outputs

    def label(self) -> str:
        return f"{self.file} #{self.index} ({self.adapter} on {self.case})"


class KnownError(Exception):
    pass


def load(path: str | Path, label: str | None = None, required: bool = False) -> list[Known]:
    """The entries of a known-discrepancies file; a malformed entry is a :class:`KnownError`.
    ``label`` names the file in results and messages (default: its name); ``required``: a missing
    file is an error (``--known PATH``), not an empty list (a case folder without one)."""
    path = Path(path)
    if not path.exists():
        if required:
            raise KnownError(f"{path}: found no such file; allowed: a known-discrepancies YAML file "
                             "(a mapping with 'entries:', docs/known-discrepancies.md)")
        return []
    if not path.is_file():
        raise KnownError(f"{path}: found a folder; allowed: a known-discrepancies YAML file")
    text = path.read_text(encoding="utf-8")
    try:
        doc = load_yaml(text) or {}
    except DuplicateKeyError as exc:
        raise KnownError(f"{path}: {_where(exc)}: found {exc}; allowed: {UNIQUE_KEYS}") from None
    entries = doc.get("entries", []) if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise KnownError(f"{path}: found {type(doc).__name__}; allowed: a mapping with 'entries:' (a list)")
    for key in doc:
        if key not in TOP_KEYS:  # a misspelt 'entries:' would otherwise excuse nothing, silently
            raise KnownError(f"{path}: key {key!r}: found {key!r}; allowed: top-level keys: {', '.join(TOP_KEYS)}")
    known = []
    for i, entry in enumerate(entries, start=1):
        def bad(key, found, allowed, number=i):  # number: this entry's, bound now (each call is in this pass)
            return KnownError(f"{path}: entry #{number}: key {key!r}: found {found!r}; allowed: {allowed}")
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
        # a misspelt name would excuse nothing, silently: only names a result can have
        for key, names in (("outputs", OUTPUT_NAMES), ("dtypes", DTYPES)):
            value = entry.get(key)
            if value is not None and (not isinstance(value, list) or not all(v in names for v in value)):
                raise bad(key, value, f"a list of names among {', '.join(names)}")
            lists[key] = tuple(value) if value is not None else None
        platform_dependent = entry.get("platform_dependent", False)
        if not isinstance(platform_dependent, bool):
            raise bad("platform_dependent", platform_dependent, "true, false (default false)")
        known.append(Known(entry["adapter"], entry["case"], lists["outputs"], lists["dtypes"], entry["cause"],
                           entry["reason"].strip(), entry["link"], i, platform_dependent, label or path.name))
    return known


def _where(error: DuplicateKeyError) -> str:
    """``entry #3: key 'cause'`` (or ``key 'entries'`` at the top): where a duplicated key is."""
    path = error.path or str(error.key)
    match = re.match(r"entries\[(\d+)\]\.?(.*)$", path)
    if match:
        return f"entry #{int(match.group(1)) + 1}: key {(match.group(2) or path)!r}"
    return f"key {path!r}"

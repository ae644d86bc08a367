"""The pytest plugin: one item per (case, adapter), named ``<file stem>/<case id>[<adapter>]``.

Installed with normconf: the ``pytest11`` entry point ``normconf.plugin`` registers it in every pytest
run of the environment, before any conftest is read, so its options (``pytest --help``, group
``normconf``) work in any form (``--cases DIR`` as well as ``--cases=DIR``). A run that is given no
normconf option and no path in or around a case folder is left alone. ``-p normconf.plugin`` (or
``pytest_plugins = ["normconf.plugin"]``) is a no-op where the entry point has loaded it, and loads it
where plugin autoloading is off; ``-p no:normconf.plugin`` turns it off.

One concern per module: :mod:`.hooks` (options, configuration, header, collection), :mod:`.state`
(what the run shares, which pairs get no item), :mod:`.items` (the items and failure text),
:mod:`.xdist` (grouping, the controller's hand-over to workers), :mod:`.crash` (a worker that dies),
:mod:`.output` (conformance.json and .html) and :mod:`.summary` (the terminal summary). The hooks are
imported here: pytest reads them from this module, the one registered.
"""
from __future__ import annotations

from .hooks import (pytest_addoption, pytest_collect_file, pytest_collection_modifyitems, pytest_configure,
                    pytest_report_header)
from .items import OUTCOME, CaseErrorItem, CaseFailure, CaseFile, CaseItem, FuzzItem, failure_text
from .output import pytest_sessionfinish
from .state import STATE, State
from .summary import FRAGILE_LISTED, fragile_lines, pytest_terminal_summary
from .xdist import framework_costs, pack_frameworks

__all__ = ["pytest_addoption", "pytest_configure", "pytest_report_header", "pytest_collect_file",
           "pytest_collection_modifyitems", "pytest_sessionfinish", "pytest_terminal_summary",
           "OUTCOME", "CaseFile", "CaseItem", "CaseErrorItem", "CaseFailure", "FuzzItem", "failure_text",
           "STATE", "State", "FRAGILE_LISTED", "fragile_lines", "framework_costs", "pack_frameworks"]

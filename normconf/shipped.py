"""Where the case files normconf ships are.

The repository keeps them in its top-level ``cases/`` folder; ``pyproject.toml`` maps that folder onto
the package ``normconf.shipped_cases`` (``[tool.setuptools] package-dir``, package data ``*.yaml``), so a
wheel carries them inside ``normconf/shipped_cases/`` and an editable install serves the repository's
folder under that name. Either way they are found through the package, wherever normconf is installed.
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path

#: The package the shipped cases are installed as.
PACKAGE = "normconf.shipped_cases"


def shipped_cases() -> Path:
    """The folder of the shipped case files (and their ``known_discrepancies.yaml``).

    A source tree used without an install (``PYTHONPATH=.``, tox with ``skipsdist``) has no
    ``normconf.shipped_cases`` package: there it is the repository's ``cases/`` beside ``normconf/``,
    recognized by its ``__init__.py``."""
    try:
        root = importlib.resources.files(PACKAGE)
    except ModuleNotFoundError:
        source = Path(__file__).resolve().parent.parent / "cases"
        if (source / "__init__.py").is_file():
            return source
        raise ModuleNotFoundError(f"{PACKAGE}: normconf's shipped cases are not installed (reinstall normconf: "
                                  "pip install normconf, or pip install -e . in its repository)") from None
    if not isinstance(root, Path):  # a zip import: the cases must be files pytest can collect
        raise ModuleNotFoundError(f"{PACKAGE} is not a folder on disk ({root!r}): install normconf unzipped")
    return root.resolve()

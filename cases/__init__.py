"""The case files normconf ships: installed as the package ``normconf.shipped_cases``.

``pyproject.toml`` maps this folder onto that package (with its ``*.yaml`` as package data), so that
``pip install normconf`` carries the cases and ``pytest --pyargs normconf`` runs them from any folder.
This file holds no code; it makes the folder a package that ``importlib.resources`` can find.
"""

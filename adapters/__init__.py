"""The built-in adapters. Importing this package imports no framework."""
from __future__ import annotations


def builtin():
    """One instance of every built-in adapter, in report order."""
    from .numpy_adapter import NumpyAdapter
    from .recipes import RECIPES
    from .torch_adapter import TorchAdapter

    return [NumpyAdapter(), TorchAdapter()] + [cls() for cls in RECIPES]

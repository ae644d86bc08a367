"""The adapter contract and the registry of adapters.

An adapter maps a case onto one framework's public API. It translates conventions (axis, layout,
momentum, eps names) and never repairs the framework's numbers.

>>> class Mine(Adapter):
...     name, framework = "mine", "numpy"
...     def run(self, case, inputs):
...         return {"y": inputs["x"] * 0}
>>> Mine().available() is None
True

Adapters are found in three places: the built-in ones (``adapters/``), ``--adapter MODULE:CLASS``,
and the ``normconf.adapters`` entry-point group. None of them imports a framework at import time.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys

import numpy as np

from .cases import Case


class Adapter:
    """Base class: subclasses set ``name``, ``framework`` and implement :meth:`run`."""

    name: str = ""
    framework: str = ""
    device: str = "cpu"
    #: Distribution whose version is reported (defaults to ``framework``).
    distribution: str | None = None
    #: Modules that must be importable for :meth:`available` to say yes.
    requires: tuple[str, ...] = ()
    #: Conventions the framework fixes and cannot be told otherwise, as case parameters,
    #: e.g. ``{"running_variance": "unbiased"}``. A case asking for another value still runs;
    #: the difference is an expected, explained discrepancy.
    native: dict = {}
    #: What the framework's default constructor arguments amount to, per op, as case parameters
    #: (``{"batch_norm": {"eps": 1e-3, "momentum": 0.01}}``): used by ``framework_defaults: true`` cases.
    defaults: dict[str, dict] = {}
    #: Reason per op the framework has no API for.
    unsupported_ops: dict[str, str] = {}
    #: Reason per dtype the framework has no way to represent.
    unsupported_dtypes: dict[str, str] = {}

    def available(self) -> str | None:
        """``None`` or why this adapter cannot run here; never imports the framework."""
        for module in self.requires:
            if module not in sys.modules and importlib.util.find_spec(module) is None:
                return f"module {module!r} is not installed"
        return None

    def unsupported(self, case: Case) -> str | None:
        """``None`` or why this framework has no way to run this case at all."""
        return self.unsupported_ops.get(case.op) or self.unsupported_dtypes.get(case.dtype)

    def unsupported_outputs(self, case: Case) -> dict[str, str]:
        """Outputs this adapter cannot produce for ``case`` (others it must return), with reasons."""
        return {}

    def native_for(self, case: Case) -> dict:
        """The native conventions that apply to ``case`` (only those parameters the op has)."""
        return {k: v for k, v in self.native.items() if k in case.params}

    def defaults_for(self, case: Case) -> dict:
        """The parameters this framework would use for ``case`` when left at its defaults."""
        if not case.params.get("framework_defaults"):
            return {}
        return {k: v for k, v in self.defaults.get(case.op, {}).items() if k in case.params}

    def version(self) -> str | None:
        dist = self.distribution or self.framework
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    def describe(self) -> dict:
        reason = self.available()
        return {"version": self.version(), "framework": self.framework, "device": self.device,
                "available": reason is None, "reason": reason}

    def run(self, case: Case, inputs: dict) -> dict[str, np.ndarray]:
        """NumPy in (canonical order, float64 values of the case dtype), NumPy out (canonical order)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<adapter {self.name} ({self.framework} on {self.device})>"


def no_cuda_driver() -> str | None:
    """Why this machine cannot have a usable NVIDIA GPU, found without importing any framework, or
    ``None`` if it might have one (then the adapter asks its framework, which imports it).

    Looks for the driver's device files (``/dev/nvidia0``...) and its library (``libcuda``); an empty
    ``CUDA_VISIBLE_DEVICES`` hides every GPU, as CUDA itself reads it. Costs about a millisecond, so
    the report header and ``conformance.json`` list the CUDA adapters' availability on a CPU machine
    without importing torch, jax or cupy (about 2 s and 1 GB)."""
    import ctypes.util
    import glob
    import os

    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} hides every GPU"
    if glob.glob("/dev/nvidia[0-9]*") or glob.glob("/dev/dxg"):  # Linux driver, or WSL2's
        return None
    if sys.platform == "linux" and ctypes.util.find_library("cuda") is None:
        return "no NVIDIA driver on this machine (no /dev/nvidia* device, no libcuda)"
    return None


def to_layout(x: np.ndarray, layout: str, dtype=None) -> np.ndarray:
    """A writable copy of the canonical [N, C, *spatial] array, in the memory order of ``layout``;
    with ``dtype`` (see :func:`host_dtype`) the copy is made in that dtype: one copy of a large input
    in the case's dtype instead of a float64 one and then another."""
    moved = np.moveaxis(x, 1, -1) if layout == "channels_last" else x
    return np.array(moved, dtype=dtype, order="C", copy=True)


def host_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype that holds a case's values exactly on the way into a framework: the case dtype
    itself, float32 for bfloat16 (NumPy has none; every bfloat16 value is a float32 value)."""
    return np.dtype("float32" if dtype == "bfloat16" else dtype)


def host_output(value: np.ndarray) -> np.ndarray:
    """A framework's output as NumPy in its own dtype (float16/32/64), float64 for bfloat16 (ml_dtypes'
    bfloat16 has no NumPy arithmetic): a large float32 output is not doubled by a float64 copy."""
    value = np.asarray(value)
    return value if value.dtype in (np.float16, np.float32, np.float64) else value.astype(np.float64)


def from_layout(y: np.ndarray, layout: str) -> np.ndarray:
    """Back from ``layout`` order to canonical order."""
    return np.moveaxis(y, -1, 1) if layout == "channels_last" else y


class AdapterLoadError(Exception):
    pass


def load_spec(spec: str) -> Adapter:
    """An adapter instance from ``package.module:ClassName``."""
    if ":" not in spec:
        raise AdapterLoadError(f"--adapter {spec!r}: expected MODULE:CLASS, e.g. mypkg.adapters:MyNorm")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an adapter module that fails to import is reported, not a traceback
        raise AdapterLoadError(f"--adapter {spec!r}: importing {module_name!r} failed: {exc!r}") from exc
    cls = getattr(module, attr, None)
    if cls is None:
        raise AdapterLoadError(f"--adapter {spec!r}: module {module_name!r} has no {attr!r}")
    return _instance(cls, spec)


def _instance(cls, origin: str) -> Adapter:
    obj = cls() if isinstance(cls, type) else cls
    for attr in ("name", "run", "available", "unsupported"):
        if not getattr(obj, attr, None):
            raise AdapterLoadError(f"{origin}: {cls!r} lacks {attr!r} (see the adapter contract in the README)")
    return obj


def entry_point_adapters() -> list[Adapter]:
    found = []
    for ep in importlib.metadata.entry_points(group="normconf.adapters"):
        try:
            found.append(_instance(ep.load(), f"entry point {ep.name}"))
        except Exception as exc:
            raise AdapterLoadError(f"entry point {ep.name!r} ({ep.value}) failed to load: {exc!r}") from exc
    return found


def registry(specs=(), entry_points: bool = True) -> dict[str, Adapter]:
    """Every adapter by name: built-in, then entry points, then ``specs`` (MODULE:CLASS)."""
    from adapters import builtin

    adapters = {}
    for adapter in builtin() + (entry_point_adapters() if entry_points else []) + [load_spec(s) for s in specs]:
        if adapter.name in adapters and type(adapters[adapter.name]) is not type(adapter):
            raise AdapterLoadError(f"two adapters are named {adapter.name!r}: {adapters[adapter.name]!r} and {adapter!r}")
        adapters[adapter.name] = adapter
    return adapters

"""The adapter contract and the registry of adapters.

An adapter maps a case onto one framework's public API. It translates conventions (axis, layout,
momentum, eps names) and never repairs the framework's numbers. It has one method per op the
framework has an API for, named like the op; :meth:`Adapter.run` dispatches to it, and an op without
its method is unsupported with a standard reason:

>>> class Mine(Adapter):
...     name, framework = "mine", "numpy"
...     def normalize(self, case, inputs):
...         return {"y": inputs["x"] * 0}
>>> Mine().available() is None, Mine().implements("normalize"), Mine().implements("batch_norm")
(True, True, False)

Adapters are found in two places: the ``normconf.adapters`` entry-point group, where normconf
declares its built-in ones (``adapters:builtin`` in ``pyproject.toml``) as any other distribution
declares its own, and ``--adapter MODULE:CLASS``. Nothing here imports the ``adapters`` package (the
entry point does, when the registry is asked for) or a framework.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .cases import MACHINE_EPS, PARAMS, Case, rms_eps
from .inputs import round_to_dtype

# What adapters may need of the case format besides Case: the eps of an rms_norm case (``eps: null``
# is the dtype's machine epsilon) and the rounding of float64 values to a case dtype. Adapters import
# them from here, the contract, never from the engine's modules.
__all__ = ["GROUP", "MACHINE_EPS", "OPS", "Adapter", "Unsupported", "from_layout", "host_dtype", "host_output",
           "load_spec", "no_cuda_driver", "registry", "rms_eps", "round_to_dtype", "to_layout"]

#: The ops of the case format; each is also the name of the :class:`Adapter` method that runs it.
OPS: tuple[str, ...] = tuple(PARAMS)
#: The entry-point group of adapters: normconf's built-in ones and every other distribution's.
GROUP = "normconf.adapters"


class Unsupported(Exception):
    """Raised by :meth:`Adapter.run` when the framework refuses the case only once it sees it (a
    runtime that cannot load the graph it was given, a kernel missing for a dtype): the item is
    ``unsupported`` with this message as the reason, not an ``error``. Say in :meth:`Adapter.unsupported`
    what can be known before running."""


class Adapter:
    """Base class: subclasses set ``name``, ``framework`` and define a method per op they run
    (``instance_norm(case, inputs)``, ...), which :meth:`run` dispatches to.

    Batch norm's passes (and those of an instance norm that tracks running statistics) are run by
    :meth:`running_passes`, the same loop for every framework, from the framework's
    :meth:`step_input`, :meth:`running_step` (one training or inference pass), :meth:`final_step` and
    :meth:`running_stats`.

    An adapter written before op methods, which overrides :meth:`run` itself and defines no op
    method, keeps working: it is asked every op (:meth:`implements`), as before."""

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
    #: Case tags this adapter runs by default (empty: every case). An adapter whose items are slow to
    #: make (a compiler, an exporter) gets items only for the cases tagged with one of these words
    #: unless the run asks for ``--all-cases``; the others are listed once in ``not_run`` (``subset``).
    default_subset: tuple[str, ...] = ()

    def available(self) -> str | None:
        """``None`` or why this adapter cannot run here; never imports the framework."""
        for module in self.requires:
            if module not in sys.modules and importlib.util.find_spec(module) is None:
                return f"module {module!r} is not installed"
        return None

    def unsupported(self, case: Case) -> str | None:
        """``None`` or why this framework has no way to run this case at all: ``unsupported_ops``,
        then an op without its method (:meth:`implements`), then ``unsupported_dtypes``."""
        return (self.unsupported_ops.get(case.op) or (None if self.implements(case.op) else self.no_api(case.op))
                or self.unsupported_dtypes.get(case.dtype))

    def implements(self, op: str) -> bool:
        """Whether this adapter runs ``op``: it has a method of that name. An adapter that overrides
        :meth:`run` and has no op method at all (the contract before op methods) runs every op."""
        if op in OPS and callable(getattr(self, op, None)):
            return True
        return type(self).run is not Adapter.run and not any(callable(getattr(self, o, None)) for o in OPS)

    def no_api(self, op: str) -> str:
        """The standard reason for an op this adapter has no method for."""
        return f"{self.name} has no API for {op} (the adapter has no {op}() method)"

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

    def in_default_subset(self, case: Case) -> bool:
        """Whether ``case`` is in this adapter's default subset (always, without one)."""
        return not self.default_subset or any(tag in case.tags for tag in self.default_subset)

    def describe(self) -> dict:
        reason = self.available()
        return {"version": self.version(), "framework": self.framework, "device": self.device,
                "available": reason is None, "reason": reason}

    def run(self, case: Case, inputs: dict) -> dict[str, np.ndarray]:
        """NumPy in (canonical order, float64 values of the case dtype), NumPy out (canonical order):
        ``self.<case.op>(case, inputs)``. Override it to wrap every op (set the framework up, convert
        what the op methods return); an override that does not call it must run every op itself."""
        method = getattr(self, case.op, None) if case.op in OPS else None
        if not callable(method):
            raise NotImplementedError(self.no_api(case.op))
        return method(case, inputs)

    # -- the passes of running statistics: one loop, the framework's steps --------------------------

    def running_passes(self, case: Case, inputs: dict, layer, x) -> dict:
        """Batch norm (or an instance norm with ``track_running_stats``) on ``layer``, a fresh layer
        holding the case's initial running statistics (and weight and bias), whatever the framework:
        one training pass over each earlier input of ``inputs["x_steps"]``, then the final pass over
        ``x`` (the framework's array of ``inputs["x"]``), in training or, with ``training: false`` or
        ``eval_after: true``, in inference. The momentum of a training pass is PyTorch's (the weight of
        the new statistic), ``1/k`` at the k-th pass for ``momentum: null`` (a cumulative average).

        Returns ``y`` of the final pass and, when training, ``running_mean`` and ``running_var``
        after it, as the framework's arrays."""
        p = case.params
        training, eval_after = p.get("training", True), p.get("eval_after", False)
        steps = inputs["x_steps"]
        earlier = steps if eval_after else steps[:-1] if training else []
        for k, xk in enumerate(earlier, start=1):
            _, layer = self.running_step(case, layer, self.step_input(case, xk), True, _momentum(p, k))
        train = training and not eval_after
        y, layer = self.final_step(case, layer, x, train, _momentum(p, len(earlier) + 1) if train else None)
        out = {"y": y}
        if training:
            out["running_mean"], out["running_var"] = self.running_stats(case, layer)
        return out

    def step_input(self, case: Case, x: np.ndarray):
        """The framework's array of an earlier step's input (canonical NumPy, as ``inputs["x"]``), as
        the final pass receives ``x``."""
        raise NotImplementedError(f"{self.name}: running_passes needs step_input()")

    def running_step(self, case: Case, layer, x, train: bool, momentum: float | None):
        """One forward pass of ``layer`` over ``x``: in training (batch statistics, and an update of
        the running statistics with ``momentum``, which a layer built with its momentum ignores) or in
        inference (the running statistics). Returns ``(y, layer)``: the same layer when the framework
        updates it in place, the updated one when it is functional."""
        raise NotImplementedError(f"{self.name}: running_passes needs running_step()")

    def final_step(self, case: Case, layer, x, train: bool, momentum: float | None):
        """The final pass, whose ``y`` is the output: :meth:`running_step` unless the framework takes
        its gradients through this pass alone (``jax.vjp``)."""
        return self.running_step(case, layer, x, train, momentum)

    def running_stats(self, case: Case, layer) -> tuple:
        """``(running_mean, running_var)`` as ``layer`` holds them after the passes."""
        raise NotImplementedError(f"{self.name}: running_passes needs running_stats()")

    def __repr__(self) -> str:
        return f"<adapter {self.name} ({self.framework} on {self.device})>"


def _momentum(params: Mapping, k: int) -> float:
    """The weight of the k-th training pass's batch statistic: the case's, or 1/k with null."""
    return 1.0 / k if params["momentum"] is None else params["momentum"]


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


def _adapters(obj, origin: str) -> list[Adapter]:
    """What an entry point names: an adapter class, an instance, or a function returning a list of
    them (in report order: a distribution with several adapters keeps its order that way)."""
    if callable(obj) and not isinstance(obj, type) and not hasattr(obj, "run"):
        return [_instance(a, origin) for a in obj()]
    return [_instance(obj, origin)]


def _load(ep: importlib.metadata.EntryPoint, what: str) -> list[Adapter]:
    try:
        return _adapters(ep.load(), f"{what} {ep.name}")
    except AdapterLoadError:
        raise
    except Exception as exc:
        raise AdapterLoadError(f"{what} {ep.name!r} ({ep.value}) failed to load: {exc!r}") from exc


def builtin() -> list[Adapter]:
    """One instance of every built-in adapter, in report order: what normconf's own entry points of
    the ``normconf.adapters`` group name (``adapters:builtin``), loaded as other distributions' are."""
    found = [a for ep in _builtin_entry_points() for a in _load(ep, "built-in entry point")]
    if not found:
        raise AdapterLoadError(f"no built-in adapters: normconf declares them in the {GROUP!r} entry points of its "
                               "pyproject.toml; install it (pip install -e .) or import it from its source tree")
    return found


def _builtin_entry_points() -> list[importlib.metadata.EntryPoint]:
    """normconf's own entry points of the group. In a source tree (tox without an install,
    ``PYTHONPATH=.``) they are read from its ``pyproject.toml``, which is always the running code's,
    whatever an installed copy of normconf declares; else from the installed metadata."""
    source = Path(__file__).resolve().parent.parent / "pyproject.toml"
    # Python 3.10 has no tomllib: the installed metadata only
    if sys.version_info >= (3, 11) and source.is_file():
        import tomllib

        project = tomllib.loads(source.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == "normconf":
            table = project.get("entry-points", {}).get(GROUP, {})
            return [importlib.metadata.EntryPoint(name, value, GROUP) for name, value in table.items()]
    return [ep for ep in importlib.metadata.entry_points(group=GROUP) if _is_normconf(ep)]


def _is_normconf(ep: importlib.metadata.EntryPoint) -> bool:
    dist = getattr(ep, "dist", None)
    return dist is not None and dist.name.lower().replace("_", "-") == "normconf"


def entry_point_adapters() -> list[Adapter]:
    """The adapters other distributions declare in the ``normconf.adapters`` entry-point group."""
    own = {ep.value for ep in _builtin_entry_points()}
    return [a for ep in importlib.metadata.entry_points(group=GROUP) if not _is_normconf(ep) and ep.value not in own
            for a in _load(ep, "entry point")]


def registry(specs=(), entry_points: bool = True) -> dict[str, Adapter]:
    """Every adapter by name: built-in, then other distributions' entry points (``entry_points``),
    then ``specs`` (MODULE:CLASS)."""
    adapters: dict[str, Adapter] = {}
    for adapter in builtin() + (entry_point_adapters() if entry_points else []) + [load_spec(s) for s in specs]:
        if adapter.name in adapters and type(adapters[adapter.name]) is not type(adapter):
            raise AdapterLoadError(f"two adapters are named {adapter.name!r}: "
                                   f"{adapters[adapter.name]!r} and {adapter!r}")
        adapters[adapter.name] = adapter
    return adapters

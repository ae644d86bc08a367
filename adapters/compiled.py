"""Compiled twins of the torch, JAX and TensorFlow adapters: the same public API, the same conventions,
run under each framework's compiler, as models run in training and in production.

- ``torch-compile``: ``torch.compile(dynamic=False)`` (Inductor, whose CPU kernels are C++ it generates
  and builds with the system's compiler) of the eager adapter's op method, tensors made outside it as a
  model's inputs and parameters exist before its forward; the backward is the one AOTAutograd compiles
  with the forward. Batch norm (and an instance norm that tracks running statistics): the module is
  built eagerly, and its step, ``norm(x)``, is what runs compiled, as ``torch.compile(model)`` does.
- ``jax-jit``: ``jax.jit`` of the Flax module's ``apply`` (one pass; the batch statistics in and out) and,
  with gradients, of the function that returns ``jax.vjp``'s outputs and gradients; ``jax.jit`` of the
  whole op method for ``jax.numpy`` ops (normalize, channel statistics).
- ``tensorflow-xla``: ``tf.function(jit_compile=True)`` of the Keras layer's call (built and loaded
  eagerly, as ``model.compile(jit_compile=True)`` compiles a built model's step) with its
  ``GradientTape`` gradients inside the same function; of the whole ``tf`` computation for normalize
  and channel statistics.

Every op the eager adapter has runs compiled: a twin whose compiled function was not called for an op
raises instead of returning the eager numbers. Compiled functions are cached per signature (op,
shape, dtype, layout, the parameters that change the graph, and which arrays are present), at most
:data:`CACHE_SIZE` per adapter instance; ``compilations`` counts the framework's own compilations
(dynamo graphs, JAX traces, TensorFlow traces). By default (``default_subset``) ``jax-jit`` and
``tensorflow-xla`` run the cases tagged ``compiled`` (12: a tenth of a second to a second each), and
``torch-compile`` those of them also tagged ``inductor`` (6), because on a cold kernel cache Inductor costs
about 12 s for its first compilation in a process and 1 to 2.5 s for each case after it (a C++ build per
kernel); ``pytest --all-cases`` runs them on every case.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np

from normconf.adapter import to_layout

from .jax_adapter import JaxAdapter
from .tensorflow_adapter import TensorflowAdapter, weight_variable
from .torch_adapter import TorchAdapter

#: Signatures kept per adapter instance: a run with ``--all-cases`` meets about as many as it has
#: cases, each a compiled kernel or executable; past this the oldest (torch: all) are dropped.
CACHE_SIZE = 256
SUBSET = ("compiled",)
#: torch-compile's default cases: those of SUBSET also tagged ``inductor`` (see the module's docstring).
INDUCTOR_SUBSET = ("inductor",)
#: The case parameters that hold arrays (normconf.cases.ARRAY_PARAMS): data, not graph.
ARRAY_PARAMS = ("weight", "bias", "running_mean", "running_var", "grad_output")


def _frozen(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def signature(case) -> tuple:
    """What a compiled function is specialized on: op, shape, dtype, layout and the parameters,
    with the array parameters (weight, bias, running statistics, grad_output) reduced to whether they
    are present: their values are arguments of the compiled function, not part of it."""
    params = tuple(sorted((k, (v is not None) if k in ARRAY_PARAMS else _frozen(v)) for k, v in case.params.items()))
    return case.op, tuple(case.shape), case.dtype, case.layout, params


def digest(arrays: dict) -> str:
    """A hash of arrays a compiled function holds as constants (part of its cache key)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class CompileCache:
    """Compiled functions by key, least recently used dropped past ``size``; counts hits and misses."""

    def __init__(self, size: int = CACHE_SIZE, on_full: Callable[[], None] | None = None):
        self.size, self.on_full = size, on_full
        self.entries: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key, build: Callable):
        if key in self.entries:
            self.hits += 1
            self.entries.move_to_end(key)
            return self.entries[key]
        self.misses += 1
        if len(self.entries) >= self.size:
            if self.on_full is not None:  # the framework's caches cannot drop one entry: drop them all
                self.on_full()
                self.entries.clear()
            else:
                self.entries.popitem(last=False)
        self.entries[key] = value = build()
        return value

    def __len__(self) -> int:
        return len(self.entries)


class _Compiled:
    """What the three twins share: the default subset, the cache, and the check that the op ran compiled."""

    default_subset = SUBSET
    #: The ops whose whole op method runs under the compiler; the others (the module and layer ops)
    #: run their module's step compiled through the step hooks.
    whole_ops: tuple[str, ...] = ()

    def __init__(self):
        self.cache = CompileCache(on_full=self._reset)
        self.compilations = 0  # the framework's compilations (graphs, traces), counted as they happen
        self._calls = 0  # compiled functions called during the current run()

    def _reset(self):
        pass

    def _checked(self, case, run: Callable) -> dict:
        self._calls = 0
        out = run()
        if not self._calls:
            raise RuntimeError(f"{self.name} ran {case.op} without its compiler: the eager adapter's {case.op}() does "
                               f"not reach the step hooks this twin compiles (add {case.op!r} to whole_ops)")
        return out

    def _called(self):
        self._calls += 1


# -- torch.compile ---------------------------------------------------------------------------------------


@functools.cache
def _no_cxx() -> str | None:
    """Why Inductor cannot build its CPU kernels here: the C++ compiler it runs ($CXX, else g++) is missing."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx.split()[0] if cxx.strip() else "g++") is None:
        return (f"torch.compile's Inductor builds its CPU kernels with a C++ compiler and {cxx!r} is not on PATH "
                "(set CXX, or install one: apt-get install -y g++)")
    return None


def _module_step(norm, x):
    """A model's step: the module called on its input (what torch.compile(model) compiles)."""
    return norm(x)


class TorchCompileAdapter(_Compiled, TorchAdapter):
    """The torch adapter's op methods under ``torch.compile(dynamic=False)`` (Inductor); batch norm's
    module step compiled as ``torch.compile(model)`` compiles it."""

    name = "torch-compile"
    default_subset = INDUCTOR_SUBSET

    def __init__(self):
        super().__init__()
        self._graphs_seen = 0

    def available(self):
        return super().available() or _no_cxx()

    def _reset(self):
        import torch

        torch._dynamo.reset()

    def tensor(self, x, case):
        import torch

        return x if isinstance(x, torch.Tensor) else super().tensor(x, case)

    def param(self, v, case):
        import torch

        return v if isinstance(v, torch.Tensor) else super().param(v, case)

    def leaves(self, case, inputs):
        import torch

        if isinstance(inputs["x"], torch.Tensor):  # made by _prepared(), outside the compiled region
            return inputs["x"], inputs.get("weight"), inputs.get("bias")
        return super().leaves(case, inputs)

    def _prepared(self, case, inputs) -> dict:
        """The inputs as a model has them before its forward: tensors in the case's layout and dtype
        (leaves that require grad with ``grad``); the other arrays stay NumPy, as the op method reads them."""
        x, w, b = super().leaves(case, inputs)
        # NumPy arrays the op method reads (normalize's mean and std) are guarded by dynamo, which turns
        # them into tensors: writable copies, as torch warns about read-only ones
        out = {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}
        out["x"] = x
        out.update({k: v for k, v in (("weight", w), ("bias", b)) if v is not None})
        if "grad_output" in inputs:
            out["grad_output"] = super().tensor(inputs["grad_output"], case)
        return out

    @contextlib.contextmanager
    def _compiler(self):
        """Dynamo's settings for the twin, scoped to its call: every signature gets its own graph (no
        recompile limit reached before the cache resets dynamo; reaching one is an error, never a silent
        eager run), and the hint dynamo prints once per process for a graph break inside the adapter's own
        NumPy bookkeeping (layer_norm's inverse permutation) stays out of the run: it is about speed."""
        import logging
        import warnings

        import torch

        limit = 4 * CACHE_SIZE
        cpp_log = logging.getLogger("torch.utils.cpp_extension")  # "No CUDA runtime is found" on a CPU machine
        level = cpp_log.level
        cpp_log.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings(), torch._dynamo.config.patch(
                    recompile_limit=limit, accumulated_recompile_limit=limit, fail_on_recompile_limit_hit=True):
                warnings.filterwarnings("ignore", message="Dynamo does not know how to trace", category=UserWarning)
                yield
        finally:
            cpp_log.setLevel(level)
            graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
            self.compilations += graphs - self._graphs_seen
            self._graphs_seen = graphs

    def run(self, case, inputs):
        import torch

        from .torch_adapter import to_numpy

        self._graphs_seen = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        prepared = self._prepared(case, inputs)
        with torch.set_grad_enabled(case.params.get("grad", False)), self._compiler():
            out = self._checked(case, lambda: self._op(case, prepared))
        return {k: to_numpy(v) for k, v in out.items()}

    def _op(self, case, inputs):
        method = getattr(self, case.op)
        if case.op == "batch_norm" or "running_mean" in case.params:  # the module's steps: running_step
            return method(case, inputs)
        self._called()
        return self.cache.get(signature(case), lambda: torch_compile(method))(case, inputs)

    def running_step(self, case, norm, x, train, momentum):
        norm.train(train)
        step = self.cache.get((signature(case), "step", train), lambda: torch_compile(_module_step))
        self._called()
        return step(norm, x), norm


def torch_compile(fn):
    import torch

    return torch.compile(fn, dynamic=False)


# -- jax.jit -----------------------------------------------------------------------------------------------


class JaxJitAdapter(_Compiled, JaxAdapter):
    """The JAX adapter under ``jax.jit``: the Flax module's pass and its ``jax.vjp``, the ``jax.numpy`` ops whole."""

    name = "jax-jit"
    whole_ops = ("normalize", "channel_stats")

    def array(self, case, x):
        import jax

        return x if isinstance(x, jax.Array) else JaxAdapter.array(case, x)  # a tracer is a jax.Array

    def run(self, case, inputs):
        return self._checked(case, lambda: super(JaxJitAdapter, self).run(case, inputs))

    def _traced(self, fn):
        """``fn`` counting its traces (each is a compilation of the jitted function)."""
        def traced(*args):
            self.compilations += 1
            return fn(*args)
        return traced

    def _whole(self, case, inputs, method):
        """``method`` (the eager op method) under jax.jit with x as its argument; every other array is a
        constant of the function, as the method builds it with NumPy (its digest is in the cache key)."""
        import jax

        consts = {k: v for k, v in inputs.items() if k != "x" and isinstance(v, np.ndarray)}

        def build():
            return jax.jit(self._traced(lambda x: method(case, dict(inputs, x=x))))
        fn = self.cache.get((signature(case), digest(consts)), build)
        self._called()
        return fn(JaxAdapter.array(case, inputs["x"]))

    def normalize(self, case, inputs):
        return self._whole(case, inputs, super().normalize)

    def channel_stats(self, case, inputs):
        return self._whole(case, inputs, super().channel_stats)

    def running_step(self, case, layer, x, train, momentum):
        import jax

        def build():
            return jax.jit(self._traced(lambda x, params, stats: layer.apply(x, params, stats, train)))
        fn = self.cache.get((signature(case), "apply", train), build)
        self._called()
        y, layer.stats = fn(x, layer.params, layer.stats)
        return y, layer

    def final_step(self, case, layer, x, train, momentum):
        import jax
        import jax.numpy as jnp

        if not case.params.get("grad"):
            return self.running_step(case, layer, x, train, momentum)

        def grad_fn(x, params, stats, g):  # jax.jit of the gradient function: the pass, its vjp, the gradients
            y, vjp, new_stats = jax.vjp(functools.partial(layer.apply, stats=stats, train=train), x, params,
                                        has_aux=True)
            return y, new_stats, vjp(g)
        fn = self.cache.get((signature(case), "vjp", train), lambda: jax.jit(self._traced(grad_fn)))
        self._called()
        g = jnp.asarray(to_layout(layer.grad_output, case.layout), jnp.dtype(case.dtype))
        y, layer.stats, layer.grads = fn(x, layer.params, layer.stats, g)
        return y, layer


# -- tf.function(jit_compile=True) ------------------------------------------------------------------------


class TensorflowXlaAdapter(_Compiled, TensorflowAdapter):
    """The TensorFlow adapter under ``tf.function(jit_compile=True)``: the Keras layer's call with its
    gradients (the layer built and loaded eagerly), the ``tf`` ops of normalize and channel statistics whole."""

    name = "tensorflow-xla"
    whole_ops = ("normalize", "channel_stats")

    def taped(self, case, inputs, forward, unarrange=lambda v: v):
        """The eager ``taped`` (layout, dtype, conversion back) around a forward whose layers run
        compiled and return their gradients from inside the compiled function."""
        grad = case.params.get("grad", False)
        g = self.cast(case, to_layout(inputs["grad_output"], case.layout)) if grad else None
        self._context = SimpleNamespace(case=case, g=g, grads={})
        if case.op in self.whole_ops:
            compiled = self._whole(case, inputs, forward, g)
        else:
            def compiled(x):
                out, layer = forward(x)
                out.update(self._context.grads)
                return out, layer
        # grad=False: the gradients come from inside the compiled function, not from the eager tape
        return super().taped(case.with_params(grad=False) if grad else case, inputs, compiled, unarrange)

    def _whole(self, case, inputs, forward, g):
        import tensorflow as tf

        consts = {k: v for k, v in inputs.items() if k not in ("x", "grad_output") and isinstance(v, np.ndarray)}
        names = case.gradients

        def build():
            def whole(x, g):
                self.compilations += 1
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    out, _ = forward(x)
                if names:
                    out.update(zip(names, tape.gradient(out["y"], [x], output_gradients=g), strict=True))
                return out
            return tf_function(whole)
        fn = self.cache.get((signature(case), digest(consts)), build)

        def compiled(x):
            self._called()
            return fn(x, g if g is not None else tf.zeros([0], x.dtype)), None
        return compiled

    def _affine(self, layer, x, inputs, arrange):
        """Build and load the layer eagerly (the eager adapter's ``_affine``); its call runs compiled."""
        TensorflowAdapter._affine(layer, x, inputs, arrange)
        return lambda x: self._call(layer, x, None, final=True)

    def running_step(self, case, layer, x, train, momentum):
        return self._call(layer, x, train, final=False), layer

    def final_step(self, case, layer, x, train, momentum):
        return self._call(layer, x, train, final=True), layer

    def _call(self, layer, x, training, final: bool):
        """``layer(x)`` under tf.function(jit_compile=True), with (final pass, ``grad``) the GradientTape
        gradients computed in the same function. The compiled function of a signature keeps the layer it
        was traced with; another layer of that signature lends it its variables for the call and takes
        back what the call changed (batch norm's moving statistics)."""
        import tensorflow as tf

        ctx = self._context
        case = ctx.case
        names = case.gradients if final and ctx.g is not None else ()

        def build():
            def step(x, g):
                self.compilations += 1
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = layer(x) if training is None else layer(x, training=training)
                sources = {"grad_x": x, "grad_weight": weight_variable(layer),
                           "grad_bias": getattr(layer, "beta", None)}
                grads = tape.gradient(y, [sources[n] for n in names], output_gradients=g) if names else []
                return y, grads
            return layer, tf_function(step)
        owner, fn = self.cache.get((signature(case), "call", training, names), build)
        if owner is not layer:
            for mine, theirs in zip(owner.variables, layer.variables, strict=True):
                mine.assign(theirs)
        self._called()
        y, grads = fn(x, ctx.g if names else tf.zeros([0], x.dtype))
        if owner is not layer:
            for mine, theirs in zip(owner.variables, layer.variables, strict=True):
                theirs.assign(mine)
        ctx.grads.update(zip(names, grads, strict=True))
        return y


def tf_function(fn):
    """``tf.function(fn, jit_compile=True)``. Through a partial: TensorFlow counts traces per code object
    and warns ("triggered tf.function retracing") when one traces often; each signature's function is
    traced once on purpose, and the partial makes it a key of its own."""
    import tensorflow as tf

    return tf.function(functools.partial(fn), jit_compile=True)

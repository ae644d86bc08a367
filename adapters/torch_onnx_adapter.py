"""PyTorch's normalization modules exported with ``torch.onnx.export`` and run by ONNX Runtime (CPU).

A model is trained in PyTorch and served through ONNX Runtime: the normalization layer changes hands
twice, at the export (the exporter picks ONNX nodes for the module, or decomposes it) and at the
runtime (its CPU kernels, and the casts it inserts where it has no kernel for a dtype). This adapter
is that path for one layer at a time:

- the module the torch adapter's op runs, as a model holds it (``nn.InstanceNorm{1,2,3}d``,
  ``nn.BatchNorm{1,2,3}d``, ``nn.LayerNorm``, ``nn.GroupNorm``, ``nn.RMSNorm``), in the case dtype,
  with the case's weight, bias, running statistics and eps, switched to ``eval()`` as models are
  before export;
- exported by ``torch.onnx.export(module, (x,), dynamo=True)``: torch 2.9 and later's default
  exporter (``torch.export`` and onnxscript), at its default opset; the example input ``x`` is in the
  case's layout (channels_last memory seen as NCHW, as the torch adapter hands it over). The ONNX
  graph has no memory format, so both layouts export the same bytes;
- run by an ONNX Runtime session on the CPU execution provider, fed the input in canonical order
  (bfloat16 through ``OrtValue``s bound to the session, which NumPy feeds cannot carry).

Exports cost most of a second each, so the adapter runs the ``deploy`` cases by default
(``default_subset``), and caches the exported bytes and the session per signature: the op, shape,
dtype, every parameter that reaches the graph and the values of the arrays it holds (the layout
does not). A dtype that ONNX Runtime
refuses for the exported graph (a missing kernel, a type the op's schema does not allow) is
``unsupported`` with the runtime's own message. Training-mode passes are not exported (models are
exported in eval mode) and gradients are not computed: both ``unsupported``.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
from dataclasses import dataclass, field

import numpy as np

from normconf.adapter import Adapter, Unsupported, host_dtype, host_output

from .torch_adapter import TorchAdapter

#: How the module is exported (torch.onnx.export's default since torch 2.9).
EXPORTER = "torch.onnx.export(dynamo=True)"
#: The ONNX element types of the case dtypes (onnx.TensorProto values: nothing imports onnx here).
ELEM = {"float32": 1, "float16": 10, "float64": 11, "bfloat16": 16}
NO_GRADIENTS = "the exported model runs inference only (ONNX Runtime computes no gradients)"
TRAINING = ("training-mode passes are not exported: models are exported in eval mode (the torch adapter "
            "checks the training passes)")
#: Parameters that never reach the exported graph.
_NOT_IN_GRAPH = ("grad", "grad_output", "framework_defaults")
#: The arrays the exported model holds as initializers: the signature has their values.
_ARRAYS = ("weight", "bias", "running_mean", "running_var")


@dataclass
class Exported:
    """One exported signature: the model's bytes, what the exporter made of the module, and the
    ONNX Runtime session (or why the runtime refuses the model)."""

    model: bytes
    nodes: list[str]  # the graph's op types, in graph order
    opset: int  # of the default domain
    seconds: float  # the export's
    session: object | None = None
    refused: str | None = None
    hits: int = field(default=0)


class TorchOnnxAdapter(TorchAdapter):
    """``nn`` normalization modules through ``torch.onnx.export`` (dynamo) and ONNX Runtime's CPU EP."""

    name = "torch-onnx-ort"
    framework = "torch"
    requires: tuple[str, ...] = ("torch", "onnx", "onnxscript", "onnxruntime")
    default_subset = ("deploy",)
    unsupported_ops = {
        "normalize": "torchvision's Normalize is a data transform, not a layer of the exported model",
        "channel_stats": "channel_stats are dataset statistics computed before training, not a layer of a model",
    }

    def __init__(self):
        self._exports: dict[tuple, Exported] = {}
        # (op, dtype) -> the runtime's refusal of that dtype for the nodes the op exports to (a missing
        # kernel, a type outside the op's schema): the other cases of the pair need no export to know
        self._refused: dict[tuple[str, str], str] = {}

    # -- what the adapter reports ---------------------------------------------------------------------

    def describe(self):
        info = super().describe()
        info["exporter"] = EXPORTER
        for dist in ("onnx", "onnxscript", "onnxruntime"):
            try:
                info[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                info[dist] = None
        return info

    def export_stats(self) -> dict:
        """How many signatures were exported, how often the cache served one, and the export seconds."""
        return {"exports": len(self._exports), "hits": sum(e.hits for e in self._exports.values()),
                "seconds": sum(e.seconds for e in self._exports.values())}

    # -- which cases -----------------------------------------------------------------------------------

    def unsupported(self, case):
        reason = super().unsupported(case)
        if reason:
            return reason
        p = case.params
        if case.op == "batch_norm" and p["training"]:
            return TRAINING
        if case.op == "instance_norm" and p["track_running_stats"]:
            return TRAINING
        return None  # what the runtime refuses is known from the exported graph only: run() says it

    def unsupported_outputs(self, case):
        return {name: NO_GRADIENTS for name in case.gradients}

    # -- export and run --------------------------------------------------------------------------------

    def signature(self, case, inputs) -> tuple:
        """What the exported graph depends on: op, shape, dtype, the parameters that reach it and the
        values of the arrays it holds (weight, bias, running statistics); not the layout."""
        arrays = tuple((k, hashlib.sha256(np.ascontiguousarray(inputs[k], np.float64).tobytes()).hexdigest())
                       for k in _ARRAYS if inputs.get(k) is not None)
        params = tuple(sorted((k, repr(v)) for k, v in case.params.items() if k not in _NOT_IN_GRAPH + _ARRAYS))
        return case.op, tuple(case.shape), case.dtype, params, arrays

    def exported(self, case, inputs) -> Exported:
        """The cached export of ``case``'s module (exported, and its session built, on first use)."""
        key = self.signature(case, inputs)
        found = self._exports.get(key)
        if found is not None:
            found.hits += 1
            return found
        import time

        import onnx
        import torch

        module = self.module(case, inputs)
        x = self.tensor(inputs["x"], case)
        start = time.perf_counter()
        with _exporter_tables_once():
            program = torch.onnx.export(module, (x,), dynamo=True, verbose=False)
        assert program is not None  # dynamo=True always returns the program
        model = program.model_proto.SerializeToString()
        seconds = time.perf_counter() - start
        proto = onnx.load_from_string(model)
        opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        entry = Exported(model, [n.op_type for n in proto.graph.node], opset, seconds)
        entry.session, entry.refused, of_dtype = _session(model, case.dtype)
        if of_dtype:
            self._refused[case.op, case.dtype] = entry.refused
        self._exports[key] = entry
        return entry

    def run(self, case, inputs):
        # the op methods below return NumPy already: none of the torch adapter's autograd and conversion
        return Adapter.run(self, case, inputs)

    def deployed(self, case, inputs) -> dict:
        """y of ``case``: its module exported (or found in the cache) and run by ONNX Runtime."""
        refused = self._refused.get((case.op, case.dtype))
        if refused:
            raise Unsupported(refused)
        entry = self.exported(case, inputs)
        if entry.refused:
            raise Unsupported(entry.refused)
        x = np.ascontiguousarray(np.asarray(inputs["x"], dtype=host_dtype(case.dtype)))
        return {"y": host_output(_run(entry.session, x, case.dtype))}

    # the ops: one exported module each (the torch adapter's F.* calls are modules here, as models hold them)
    def instance_norm(self, case, inputs):
        return self.deployed(case, inputs)

    def batch_norm(self, case, inputs):
        return self.deployed(case, inputs)

    def layer_norm(self, case, inputs):
        return self.deployed(case, inputs)

    def group_norm(self, case, inputs):
        return self.deployed(case, inputs)

    def rms_norm(self, case, inputs):
        return self.deployed(case, inputs)

    normalize = channel_stats = None  # type: ignore[assignment]  # not layers of a model: unsupported_ops says why

    # -- the modules -----------------------------------------------------------------------------------

    def module(self, case, inputs):
        """The ``nn`` module of ``case`` in eval mode, built in the case dtype, holding its parameters."""
        import torch

        return getattr(self, f"{case.op}_module")(case, inputs, getattr(torch, case.dtype)).eval()

    def _affine(self, norm, case, inputs):
        """Set an affine module's weight and bias to the case's (ones or zeros for the one it lacks,
        as the torch adapter's modules do)."""
        import torch

        w, b = self.param(inputs.get("weight"), case), self.param(inputs.get("bias"), case)
        with torch.no_grad():
            norm.weight.copy_(w if w is not None else torch.ones_like(norm.weight))
            if getattr(norm, "bias", None) is not None:
                norm.bias.copy_(b if b is not None else torch.zeros_like(norm.bias))
        return norm

    def instance_norm_module(self, case, inputs, dtype):
        import torch

        nn = torch.nn
        cls = {3: nn.InstanceNorm1d, 4: nn.InstanceNorm2d, 5: nn.InstanceNorm3d}[len(case.shape)]
        affine = _has_affine(inputs)
        norm = cls(case.shape[1], eps=case.params["eps"], affine=affine, dtype=dtype)
        return self._affine(norm, case, inputs) if affine else norm

    def batch_norm_module(self, case, inputs, dtype):
        import torch

        nn = torch.nn
        cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[len(case.shape)]
        affine = _has_affine(inputs)
        norm = cls(case.shape[1], eps=case.params["eps"], affine=affine, dtype=dtype)
        if affine:
            self._affine(norm, case, inputs)
        with torch.no_grad():
            norm.running_mean.copy_(self.param(inputs["running_mean"], case))
            norm.running_var.copy_(self.param(inputs["running_var"], case))
        return norm

    def group_norm_module(self, case, inputs, dtype):
        import torch

        affine = _has_affine(inputs)
        norm = torch.nn.GroupNorm(case.params["groups"], case.shape[1], eps=case.params["eps"], affine=affine,
                                  dtype=dtype)
        return self._affine(norm, case, inputs) if affine else norm

    def layer_norm_module(self, case, inputs, dtype):
        import torch

        axes = case.params["axes"]
        bias = inputs.get("bias") is not None
        norm = torch.nn.LayerNorm([case.shape[a] for a in axes], eps=case.params["eps"],
                                  elementwise_affine=_has_affine(inputs), bias=bias, dtype=dtype)
        if norm.elementwise_affine:
            self._affine(norm, case, inputs)
        return _modules().Trailing(norm, axes, len(case.shape))

    def rms_norm_module(self, case, inputs, dtype):
        """``nn.RMSNorm`` in the input dtype, as the torch adapter's ``F.rms_norm`` (its native ``cast:
        last`` holds for the exported graph too: the weight multiplies in float32 before the one
        cast); eps None stays None (the input dtype's machine epsilon), Gemma's weight_offset is added
        to the weight, as ports of Gemma checkpoints to ``nn.RMSNorm`` do."""
        import torch

        p, axes, w = case.params, case.params["axes"], inputs.get("weight")
        norm = torch.nn.RMSNorm([case.shape[a] for a in axes], eps=p["eps"], elementwise_affine=w is not None,
                                dtype=dtype)
        if w is not None:
            with torch.no_grad():  # weight_offset + weight, rounded once to the dtype
                norm.weight.copy_(torch.from_numpy(np.asarray(w, np.float64) + p["weight_offset"]))
        return _modules().Trailing(norm, axes, len(case.shape))


def _has_affine(inputs) -> bool:
    return inputs.get("weight") is not None or inputs.get("bias") is not None


#: What the exporter rebuilds at every call, built once per process (see _exporter_tables_once): the
#: registries of torchlib functions per (class, opset), and the decomposition tables per operator set.
_REGISTRIES: dict[tuple, object] = {}
_TABLES: dict[tuple, object] = {}


def _cia_key() -> tuple:
    """What the set of CompositeImplicitAutograd ops torch.export preserves depends on: the operator
    namespaces and the C++ dispatcher's CIA registrations (a library registering an op changes them)."""
    import torch

    return (tuple(torch.ops._dir),
            tuple(sorted(torch._C._dispatch_get_registrations_for_dispatch_key("CompositeImplicitAutograd"))))


@contextlib.contextmanager
def _exporter_tables_once():
    """While it is open, torch.onnx.export builds the tables it only reads once per process instead of
    at every call (the deploy subset's 42 exports: 13.0 s with the registry alone cached, 9.8 s with all
    three). Each table is rebuilt when what it is a function of changes:

    - ``ONNXRegistry.from_torchlib``: the registry of ~500 onnxscript functions, read from their
      source each time (2.4 of 3.4 s per export before this cache, profiled on the machine of
      docs/adapters.md), per opset;
    - ``_collect_all_valid_cia_ops``: torch.export's walk over every operator namespace, which
      materializes all CIA ops once per namespace, keyed by the namespaces and the
      dispatcher's CIA registrations (torch does not cache it because a library can register ops:
      the key sees that);
    - ``create_onnx_friendly_decomposition_table``: the decompositions for ops without an ONNX
      function, per registered-op set and size of torch's decomposition tables; each call
      gets its own copy of the dict.

    The export is otherwise the public call, its bytes the same (tests/test_torch_onnx.py compares
    them for every op). A torch without these internals exports the slow way."""
    try:
        import torch._decomp
        import torch.export.decomp_utils as decomp_utils
        import torch.export.exported_program as exported_program
        from torch.onnx._internal.exporter import _decomp, _registration

        original = _registration.ONNXRegistry.__dict__["from_torchlib"]
        collect = exported_program._collect_all_valid_cia_ops
        table = _decomp.create_onnx_friendly_decomposition_table
        assert decomp_utils._collect_all_valid_cia_ops is collect
    except (ImportError, KeyError, AttributeError, AssertionError):
        yield
        return

    def from_torchlib(cls, *args, **kwargs):
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in _REGISTRIES:
            _REGISTRIES[key] = original.__func__(cls, *args, **kwargs)
        return _REGISTRIES[key]

    def collect_once():
        key = ("cia", _cia_key())
        if key not in _TABLES:
            _TABLES[key] = frozenset(collect())
        return set(_TABLES[key])

    def table_once(onnx_registered_ops):
        key = ("decomp", frozenset(onnx_registered_ops), len(torch._decomp.decomposition_table), _cia_key())
        if key not in _TABLES:
            _TABLES[key] = table(onnx_registered_ops)
        return dict(_TABLES[key])

    _registration.ONNXRegistry.from_torchlib = classmethod(from_torchlib)
    exported_program._collect_all_valid_cia_ops = decomp_utils._collect_all_valid_cia_ops = collect_once
    _decomp.create_onnx_friendly_decomposition_table = table_once
    try:
        yield
    finally:
        _registration.ONNXRegistry.from_torchlib = original
        exported_program._collect_all_valid_cia_ops = decomp_utils._collect_all_valid_cia_ops = collect
        _decomp.create_onnx_friendly_decomposition_table = table


def _session(model: bytes, dtype: str):
    """``(session, None, False)``, or ``(None, why, of_dtype)`` when ONNX Runtime refuses to load the
    model: no CPU kernel for a node in this dtype (NOT_IMPLEMENTED) or a type the node's schema does
    not allow (INVALID_GRAPH), both refusals of the dtype (``of_dtype``); or a shape its inference
    rejects (FAIL: the exported group norm's Reshape to [0, groups, -1] on an empty batch)."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the runtime's notes on the graph are not results
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]), None, False
    except (state.NotImplemented, state.InvalidGraph, state.Fail) as exc:
        message = " ".join(str(exc).split())
        why = f"ONNX Runtime {ort.__version__} (CPU) refuses the exported {dtype} model: {message}"
        return None, why, isinstance(exc, state.NotImplemented) or "Type Error" in message


def _run(session, x: np.ndarray, dtype: str) -> np.ndarray:
    """y of the one-input, one-output model for ``x`` (canonical order, the case dtype's host array)."""
    name, out = session.get_inputs()[0].name, session.get_outputs()[0].name
    if dtype != "bfloat16":
        return session.run([out], {name: x})[0]
    import ml_dtypes
    import onnxruntime as ort

    # NumPy has no bfloat16 and ONNX Runtime reads no ml_dtypes array: bfloat16 bits as uint16
    # OrtValues, bound to the session for input and output
    bits = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    y = np.empty(x.shape, np.uint16)
    binding = session.io_binding()
    binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, ELEM[dtype]))
    binding.bind_ortvalue_output(out, ort.OrtValue.ortvalue_from_numpy_with_onnx_type(y, ELEM[dtype]))
    session.run_with_iobinding(binding)
    return y.view(ml_dtypes.bfloat16)


@functools.cache
def _modules():
    """The wrapper modules, defined on first use (importing this module imports no torch)."""
    import types

    import torch

    class Trailing(torch.nn.Module):
        """``norm`` over the case's axes: moved to the end first (the modules normalize trailing
        dims) and back after, as a model that normalizes other dims writes it."""

        def __init__(self, norm, axes, rank):
            super().__init__()
            self.norm = norm
            self.order = [d for d in range(rank) if d not in axes] + list(axes)
            self.back = np.argsort(self.order).tolist()

        def forward(self, x):
            if self.order == sorted(self.order):
                return self.norm(x)
            return self.norm(x.permute(*self.order)).permute(*self.back)

    return types.SimpleNamespace(Trailing=Trailing)

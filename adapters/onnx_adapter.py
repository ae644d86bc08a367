"""ONNX: one-node graphs per op and opset, run by the ONNX reference evaluator, ONNX Runtime and OpenVINO.

Each case becomes a graph of one normalization node (``InstanceNormalization``,
``BatchNormalization``, ``LayerNormalization``, ``GroupNormalization``, ``RMSNormalization``) at the
adapter's opset: the newest version of the op at or below it. What ONNX cannot say is said the way an
ONNX user says it, with more nodes around the one node:

- **layouts**: the normalization ops take channels first only; a channels_last input is fed in its
  own memory order ``[N, *spatial, C]`` and a ``Transpose`` node moves the channels to axis 1 before
  the op (and back after it). LayerNormalization, which normalizes the trailing dims from ``axis``
  on, is fed the layout's memory order and transposed only when the case's axes are not trailing
  there.
- **bfloat16**: the graph's inputs and outputs are float32 holding bfloat16 values (every bfloat16
  value is a float32 value); ``Cast`` nodes make them bfloat16 for an op version that takes bfloat16
  and a runtime that has the kernel (``bf16_native``), else the op runs in float32 between a Cast of
  its output to bfloat16 and back (what a deployment without bfloat16 kernels does).
- float16, float32, float64: native.
- **affine**: the ONNX ops take ``scale`` and ``B`` as required inputs (LayerNormalization's ``B``
  and RMSNormalization's have none): a case without them is fed ones and zeros.
- **running statistics**: BatchNormalization-14/15 ``training_mode=1`` returns the updated running
  mean and variance. ONNX's momentum weights the OLD value (``running = input * momentum + current *
  (1 - momentum)``), so the case's momentum m (PyTorch's, the weight of the new statistic) becomes the
  attribute 1 - m; it is a 32-bit float attribute, like epsilon, so a float64 case's 0.9 is
  0.89999998 (cause ``attribute_precision``).

Gradients are not computed (inference runtimes): they are ``unsupported_outputs``. Graphs and
sessions are cached per signature (op, opset, dtype, rank, layout, attributes), so the cases of a run
share a few dozen sessions.

:func:`run_onnx_model` runs serialized ONNX bytes on ONNX Runtime's CPU execution provider (a cached
session per model); other adapters that export a model to ONNX use it as well.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from normconf.adapter import Adapter, Unsupported, from_layout, host_dtype, host_output, to_layout

#: The ONNX element types of the case dtypes (onnx.TensorProto values, so that nothing imports onnx here).
ELEM = {"float32": 1, "float16": 10, "float64": 11, "bfloat16": 16}
#: The newest opset any adapter here builds graphs for: RMSNormalization is new in 23, and no
#: normalization op changed after it.
LATEST = 23
#: The versions of each op (its since_version), newest last.
VERSIONS = {"InstanceNormalization": (6, 22), "BatchNormalization": (9, 14, 15), "LayerNormalization": (17,),
            "GroupNormalization": (18, 21), "RMSNormalization": (23,)}
#: Since which version each op takes bfloat16 (the type constraint of its schema).
BF16_SINCE = {"InstanceNormalization": 22, "BatchNormalization": 15, "LayerNormalization": 17,
              "GroupNormalization": 18, "RMSNormalization": 23}
NO_GRADIENTS = "inference runtime: no gradients"


def _round(dtype: str, v) -> np.ndarray:
    from normconf.adapter import round_to_dtype

    return np.asarray(round_to_dtype(np.asarray(v, dtype=np.float64), dtype), dtype=np.float64)


def op_version(op_type: str, opset: int) -> int | None:
    """The version of ``op_type`` a graph of ``opset`` runs: the newest at or below it (None: none)."""
    found = [v for v in VERSIONS[op_type] if v <= opset]
    return found[-1] if found else None


@functools.lru_cache(maxsize=512)
def build_model(op_type: str, opset: int, dtype: str, rank: int, *, attrs: tuple = (),
                params: tuple[tuple[str, int], ...] = (), outputs: tuple[str, ...] = ("Y",),
                perm: tuple[int, ...] | None = None, bf16_native: bool = True) -> bytes:
    """A serialized one-node ONNX model: ``op_type`` at the newest version within ``opset``, on an
    input ``X`` of ``rank`` dims in ``dtype`` and the parameter inputs ``params`` (``(name, rank)``, in
    the op's input order; a name starting with ``~`` is an omitted optional input), with attributes
    ``attrs`` (``(name, value)`` pairs). ``perm``: a Transpose of X before the node (and its inverse
    on the first output after it). bfloat16: the graph's inputs and outputs are float32 holding
    bfloat16 values, Cast to bfloat16 around the node with ``bf16_native``, else the node runs in
    float32 and its outputs are Cast to bfloat16 (and back to float32 to leave the graph).
    Dims are symbolic, so that one model serves every shape of that rank."""
    from onnx import TensorProto, helper

    bf16 = dtype == "bfloat16"
    host = TensorProto.FLOAT if bf16 else ELEM[dtype]
    nodes, ins = [], []

    def graph_input(name: str, r: int) -> str:
        ins.append(helper.make_tensor_value_info(name, host, [f"{name}_{i}" for i in range(r)]))
        if bf16 and bf16_native:
            nodes.append(helper.make_node("Cast", [name], [f"{name}_bf16"], to=TensorProto.BFLOAT16))
            return f"{name}_bf16"
        return name

    x = graph_input("X", rank)
    if perm is not None:
        nodes.append(helper.make_node("Transpose", [x], ["X_t"], perm=list(perm)))
        x = "X_t"
    node_ins = [x] + ["" if name.startswith("~") else graph_input(name, r) for name, r in params]
    while node_ins and node_ins[-1] == "":
        node_ins.pop()
    node_outs = [f"{o}_node" for o in outputs]
    nodes.append(helper.make_node(op_type, node_ins, node_outs, **dict(attrs)))
    outs = []
    for i, (o, produced) in enumerate(zip(outputs, node_outs, strict=True)):
        cur = produced
        if i == 0 and perm is not None:
            inverse = [int(v) for v in np.argsort(perm)]
            nodes.append(helper.make_node("Transpose", [cur], [f"{o}_back"], perm=inverse))
            cur = f"{o}_back"
        if bf16:
            if not bf16_native:
                nodes.append(helper.make_node("Cast", [cur], [f"{o}_bf16"], to=TensorProto.BFLOAT16))
                cur = f"{o}_bf16"
            nodes.append(helper.make_node("Cast", [cur], [f"{o}_f32"], to=TensorProto.FLOAT))
            cur = f"{o}_f32"
        nodes.append(helper.make_node("Identity", [cur], [o]))
        outs.append(helper.make_tensor_value_info(o, host, [f"{o}_{d}" for d in range(rank if i == 0 else 1)]))
    graph = helper.make_graph(nodes, f"{op_type}_{opset}", ins, outs)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="normconf")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model.SerializeToString()


@functools.lru_cache(maxsize=256)
def _ort_session(model_bytes: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are not results
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def run_onnx_model(model_bytes: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a serialized ONNX model on ONNX Runtime's CPU execution provider: ``{output name: array}``.

    The session is cached per model bytes (building one costs milliseconds; running it microseconds)."""
    session = _ort_session(bytes(model_bytes))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


@functools.lru_cache(maxsize=256)
def _reference(model_bytes: bytes):
    import onnx
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(onnx.load_from_string(model_bytes))


@functools.lru_cache(maxsize=1)
def _openvino_core():
    import os

    # `import openvino` imports its model converter, which sends usage telemetry from a forked process
    # unless the user opted out (openvino_telemetry; a fork under JAX's threads warns, and a
    # conformance run has no business on the network). Its documented opt-out for CI jobs, CI=true,
    # is set for the import alone; nothing is written to the user's home (the opt_in_out script would).
    saved = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        import openvino as ov
    finally:
        if saved is None:
            del os.environ["CI"]
        else:
            os.environ["CI"] = saved
    return ov.Core()


@functools.lru_cache(maxsize=256)
def _openvino_compiled(model_bytes: bytes):
    core = _openvino_core()
    model = core.read_model(model_bytes)  # OpenVINO's ONNX frontend reads the serialized model
    # f32: the precision of the model's own float32 (the CPU plugin's default on CPUs with bfloat16
    # or AMX units is bf16, which would make every float32 result a bfloat16 one on those machines
    # only); pinned as the CUDA adapters pin TF32 off
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


class OnnxAdapter(Adapter):
    """One-node ONNX graphs at ``opset``; subclasses say how a model runs (:meth:`execute`)."""

    framework = "onnx"
    requires = ("onnx",)
    default_subset = ("deploy",)
    opset = LATEST
    # ONNX normalizes with the population variance and writes it into the running variance
    # (BatchNormalization: "current_var = ReduceVar(X)"), with no option for n-1
    native = {"variance": "biased", "running_variance": "biased"}
    #: Whether the runtime has bfloat16 kernels for the normalization ops (else Cast around float32).
    bf16_native = True

    def execute(self, model: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {**super().describe(), "opset": self.opset}

    def unsupported(self, case):
        if case.op == "instance_norm" and case.params.get("track_running_stats"):
            return "ONNX InstanceNormalization keeps no running statistics (PyTorch's track_running_stats)"
        if case.op == "batch_norm" and case.params["training"] and self.opset < 14:
            return f"BatchNormalization below opset 14 has no training_mode (opset {self.opset})"
        reason = super().unsupported(case)
        if reason:
            return reason
        return self.refused(case)

    def implements(self, op):
        # RMSNormalization is new in opset 23: the opset-18 adapters have no API for rms_norm
        return super().implements(op) and (op != "rms_norm" or self.opset >= 23)

    def native_for(self, case):
        out = super().native_for(case)
        if case.op == "rms_norm":
            # RMSNormalization's second stage (the scale) runs in the input type after the cast of
            # the normalized values (stash_type governs the first stage only): LLaMA's order
            out["cast"] = "before_weight"
        return out

    def unsupported_outputs(self, case):
        return {name: NO_GRADIENTS for name in case.gradients}

    def refused(self, case) -> str | None:
        """Why the runtime cannot load this case's graph (no kernel for the op in this dtype, an op
        or opset its reader does not know): the runtime's message. The session it builds is cached
        for :meth:`run`."""
        try:
            self.load(self.plan(case)[0])
        except Exception as exc:  # noqa: BLE001 - the runtime's own message is the reason
            return self.refusal(exc)
        return None

    def refusal(self, exc: Exception) -> str:
        text = " ".join(str(exc).split())
        return f"{self.name} cannot run it: {type(exc).__name__}: {text[:400]}"

    def run(self, case, inputs):
        if case.shape[0] != 0:
            return super().run(case, inputs)
        # a runtime may refuse an empty batch only when it runs it (a Reshape to {0, G, -1}): that
        # refusal is unsupported, with its message; a graph that loads and runs is judged as any other
        try:
            return super().run(case, inputs)
        except Exception as exc:  # noqa: BLE001 - the runtime's own message is the reason
            raise Unsupported(self.refusal(exc)) from exc

    def load(self, model: bytes) -> None:
        """Build (and cache) what :meth:`execute` runs, raising where the runtime cannot."""

    # -- per op: the model and how the case's inputs feed it ------------------------------------------

    def plan(self, case):
        """``(model bytes, feeds(case, inputs) -> {name: array})`` for the case's op."""
        return getattr(self, f"plan_{case.op}")(case)

    def model(self, op_type, case, **kw) -> bytes:
        rank = len(case.shape)
        if kw.pop("channel_op", True) and case.layout == "channels_last":
            kw["perm"] = (0, rank - 1) + tuple(range(1, rank - 1))
        version = op_version(op_type, self.opset)
        bf16_native = self.bf16_native and version is not None and version >= BF16_SINCE[op_type]
        return build_model(op_type, self.opset, case.dtype, rank, bf16_native=bf16_native, **kw)

    def vec(self, case, v) -> np.ndarray:
        return np.asarray(v, dtype=host_dtype(case.dtype))

    def affine(self, case, inputs, c: int) -> dict:
        w = inputs["weight"] if "weight" in inputs else np.ones(c)
        b = inputs["bias"] if "bias" in inputs else np.zeros(c)
        return {"scale": self.vec(case, w), "B": self.vec(case, b)}

    def x(self, case, inputs) -> np.ndarray:
        return to_layout(inputs["x"], case.layout, host_dtype(case.dtype))

    def plan_instance_norm(self, case):
        model = self.model("InstanceNormalization", case, attrs=(("epsilon", case.params["eps"]),),
                           params=(("scale", 1), ("B", 1)))
        return model, lambda case, inputs: {"X": self.x(case, inputs), **self.affine(case, inputs, case.shape[1])}

    def instance_norm(self, case, inputs):
        model, feeds = self.plan(case)
        return {"y": self.output(case, self.execute(model, feeds(case, inputs))["Y"])}

    def plan_group_norm(self, case):
        p, c = case.params, case.shape[1]
        version = op_version("GroupNormalization", self.opset)
        model = self.model("GroupNormalization", case, attrs=(("epsilon", p["eps"]), ("num_groups", p["groups"])),
                           params=(("scale", 1), ("B", 1)))

        def feeds(case, inputs):
            affine = self.affine(case, inputs, c)
            if version == 18:
                # GroupNormalization-18 takes one scale and one bias per group: each group's first
                # channel's (exact where the case's weight and bias are constant within groups, which
                # is all a per-channel affine can become at opset 18)
                g = case.params["groups"]
                affine = {k: v.reshape(g, c // g)[:, 0].copy() for k, v in affine.items()}
            return {"X": self.x(case, inputs), **affine}
        return model, feeds

    def group_norm(self, case, inputs):
        model, feeds = self.plan(case)
        return {"y": self.output(case, self.execute(model, feeds(case, inputs))["Y"])}

    def layer_norm_perm(self, case) -> tuple[tuple[int, ...] | None, int, list[int]]:
        """``(perm, axis, weight order)``: the Transpose (in the layout's memory order) that makes the
        case's axes trailing (None where they already are), LayerNormalization's ``axis``, and the
        order of the weight's dims once transposed (its dims are the axes in canonical order)."""
        rank = len(case.shape)
        memory = list(range(rank)) if case.layout == "channels_first" else [0] + list(range(2, rank)) + [1]
        where = {canon: pos for pos, canon in enumerate(memory)}  # canonical dim -> memory position
        axes = list(case.params["axes"])  # canonical, sorted
        normed = sorted(where[a] for a in axes)
        perm = [d for d in range(rank) if d not in normed] + normed
        order = sorted(range(len(axes)), key=lambda i: where[axes[i]])
        return (None if perm == list(range(rank)) else tuple(perm)), rank - len(axes), order

    def plan_layer_norm(self, case):
        perm, axis, order = self.layer_norm_perm(case)
        has_bias = case.params.get("bias") is not None
        model = self.model("LayerNormalization", case, channel_op=False, perm=perm,
                           attrs=(("axis", axis), ("epsilon", case.params["eps"])),
                           params=(("scale", len(order)), ("B" if has_bias else "~B", len(order))))

        def feeds(case, inputs):
            sizes = [case.shape[a] for a in case.params["axes"]]
            w = np.transpose(np.asarray(inputs["weight"]) if "weight" in inputs else np.ones(sizes), order)
            out = {"X": self.x(case, inputs), "scale": self.vec(case, w)}
            if "bias" in inputs:
                out["B"] = self.vec(case, np.transpose(np.asarray(inputs["bias"]), order))
            return out
        return model, feeds

    def layer_norm(self, case, inputs):
        model, feeds = self.plan(case)
        return {"y": self.output(case, self.execute(model, feeds(case, inputs))["Y"])}

    def plan_rms_norm(self, case):
        from normconf.adapter import rms_eps

        perm, axis, order = self.layer_norm_perm(case)
        model = self.model("RMSNormalization", case, channel_op=False, perm=perm,
                           attrs=(("axis", axis), ("epsilon", rms_eps(case.params, case.dtype))),
                           params=(("scale", len(order)),))

        def feeds(case, inputs):
            sizes = [case.shape[a] for a in case.params["axes"]]
            w = np.asarray(inputs["weight"]) if "weight" in inputs else np.ones(sizes)
            if "weight" in inputs and case.params["weight_offset"]:
                # RMSNormalization has one scale: the offset is folded into it, in the case dtype
                w = _round(case.dtype, _round(case.dtype, w) + case.params["weight_offset"])
            return {"X": self.x(case, inputs), "scale": self.vec(case, np.transpose(w, order))}
        return model, feeds

    def rms_norm(self, case, inputs):
        if op_version("RMSNormalization", self.opset) is None:
            raise NotImplementedError(self.no_api("rms_norm"))
        model, feeds = self.plan(case)
        return {"y": self.output(case, self.execute(model, feeds(case, inputs))["Y"])}

    def bn_model(self, case, train: bool, momentum: float | None) -> bytes:
        attrs: tuple = (("epsilon", case.params["eps"]),)
        outputs: tuple[str, ...] = ("Y",)
        if train:
            # ONNX weights the old value by momentum: the case's (PyTorch's) m is 1 - m here
            attrs += (("momentum", 1.0 - momentum), ("training_mode", 1))
            outputs = ("Y", "running_mean", "running_var")
        return self.model("BatchNormalization", case, attrs=attrs, outputs=outputs,
                          params=(("scale", 1), ("B", 1), ("input_mean", 1), ("input_var", 1)))

    def plan_batch_norm(self, case):
        p = case.params
        train = p["training"] and not p["eval_after"]
        momentum = (1.0 if p["momentum"] is None else p["momentum"]) if train else None
        model = self.bn_model(case, train, momentum)
        return model, lambda case, inputs: {"X": self.x(case, inputs), **self.affine(case, inputs, case.shape[1]),
                                            "input_mean": self.vec(case, inputs["running_mean"]),
                                            "input_var": self.vec(case, inputs["running_var"])}

    def batch_norm(self, case, inputs):
        c = case.shape[1]
        layer = {"inputs": inputs, **self.affine(case, inputs, c),
                 "input_mean": self.vec(case, inputs["running_mean"]),
                 "input_var": self.vec(case, inputs["running_var"])}
        out = self.running_passes(case, inputs, layer, self.x(case, inputs))
        out["y"] = self.output(case, out["y"])
        if "running_mean" in out:
            out["running_mean"] = host_output(out["running_mean"])
            out["running_var"] = host_output(out["running_var"])
        return out

    def step_input(self, case, x):
        return to_layout(x, case.layout, host_dtype(case.dtype))

    def running_step(self, case, layer, x, train, momentum):
        model = self.bn_model(case, train, momentum)
        feeds = {"X": x, **{k: layer[k] for k in ("scale", "B", "input_mean", "input_var")}}
        got = self.execute(model, feeds)
        if train:
            layer = {**layer, "input_mean": got["running_mean"], "input_var": got["running_var"]}
        return got["Y"], layer

    def running_stats(self, case, layer):
        return layer["input_mean"], layer["input_var"]

    def output(self, case, y) -> np.ndarray:
        return from_layout(host_output(y), case.layout)


class OnnxReferenceAdapter(OnnxAdapter):
    """``onnx.reference.ReferenceEvaluator``: ONNX's own Python implementation of the spec (NumPy)."""

    name = "onnx-reference"

    def load(self, model):
        _reference(model)

    def execute(self, model, feeds):
        ref = _reference(model)
        return dict(zip(ref.output_names, ref.run(None, feeds), strict=True))


class OnnxReferenceOpset18Adapter(OnnxReferenceAdapter):
    """The reference evaluator at opset 18: GroupNormalization-18 (one scale and bias per group)."""

    name = "onnx-reference-opset18"
    opset = 18


class OnnxRuntimeAdapter(OnnxAdapter):
    """ONNX Runtime's CPU execution provider."""

    name = "onnxruntime"
    framework = "onnxruntime"
    requires = ("onnx", "onnxruntime")
    bf16_native = False

    def load(self, model):
        _ort_session(model)

    def execute(self, model, feeds):
        return run_onnx_model(model, feeds)


class OnnxRuntimeOpset18Adapter(OnnxRuntimeAdapter):
    """ONNX Runtime at opset 18: GroupNormalization-18 (one scale and bias per group)."""

    name = "onnxruntime-opset18"
    opset = 18


class OpenvinoAdapter(OnnxAdapter):
    """OpenVINO's CPU plugin reading the same ONNX model (its ONNX frontend), at f32 precision."""

    name = "openvino"
    framework = "openvino"
    requires = ("onnx", "openvino")

    def load(self, model):
        _openvino_compiled(model)

    def execute(self, model, feeds):
        compiled = _openvino_compiled(model)
        result = compiled(feeds)
        return {port.get_any_name(): np.asarray(result[port]) for port in compiled.outputs}


ADAPTERS: Sequence[type[OnnxAdapter]] = (OnnxReferenceAdapter, OnnxReferenceOpset18Adapter, OnnxRuntimeAdapter,
                                         OnnxRuntimeOpset18Adapter, OpenvinoAdapter)

"""TensorFlow: Keras 3 normalization layers on the TensorFlow backend and ``tf`` ops, as users write them."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys

import numpy as np

from normconf.adapter import Adapter, from_layout, host_dtype, host_output, to_layout


class TensorflowAdapter(Adapter):
    """``keras.layers`` Batch/Layer/GroupNormalization; ``tf`` ops for normalize and channel statistics."""

    name = framework = "tensorflow"
    requires = ("tensorflow", "keras")
    # Keras normalizes with the biased variance and writes the biased batch variance into moving_variance
    # (tf.nn.moments has no divisor knob): https://keras.io/api/layers/normalization_layers/batch_normalization/
    # tf.math.reduce_std has no ddof either: https://www.tensorflow.org/api_docs/python/tf/math/reduce_std
    # keras.ops.rms_normalization (RMSNormalization's call) normalizes and multiplies by the scale in float32 and
    # casts to the input dtype last:
    # https://github.com/keras-team/keras/blob/v3.15.1/keras/src/ops/nn.py (_rms_normalization)
    native = {"variance": "biased", "running_variance": "biased", "cast": "last"}
    # Keras defaults: epsilon=1e-3 in all three layers, BatchNormalization momentum=0.99 (old-value weight,
    # 0.01 in the case's convention): https://keras.io/api/layers/normalization_layers/
    defaults = {op: {"eps": 1e-3} for op in ("instance_norm", "layer_norm", "group_norm")}
    defaults.update(batch_norm={"eps": 1e-3, "momentum": 0.01}, channel_stats={"variance": "biased"})
    # RMSNormalization(axis=-1, epsilon=1e-6): https://keras.io/api/layers/normalization_layers/rms_normalization/
    defaults["rms_norm"] = {"eps": 1e-6}

    def version(self):
        for dist in ("tensorflow", "tensorflow-cpu"):  # the same package under two distribution names
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                pass
        return None

    def unsupported(self, case):
        p = case.params
        if case.op == "instance_norm" and p["track_running_stats"]:
            return ("keras.layers.GroupNormalization (groups=-1, Keras' instance norm) keeps no running statistics: "
                    "https://keras.io/api/layers/normalization_layers/group_normalization")
        if case.op == "batch_norm" and p["training"] and p["momentum"] is None:
            # Keras' momentum is a fixed float: no cumulative average (PyTorch momentum=None), see
            # https://keras.io/api/layers/normalization_layers/batch_normalization/
            return "keras.layers.BatchNormalization has no cumulative-average mode (momentum null)"
        if case.op == "rms_norm":
            rank = len(case.shape)
            memory = sorted(_memory_axes(case))
            if memory != list(range(rank - len(memory), rank)):
                # _rms_normalization multiplies by the scale as built, shaped like the normalized dims, without
                # reshaping it to broadcast over x (as LayerNormalization's rms_scaling did, keras#19642)
                return ("keras.layers.RMSNormalization multiplies by its scale (shaped like the normalized dims) "
                        "without reshaping it: normalized dims that are not the trailing ones of the layout raise "
                        "'Incompatible shapes' (or broadcast it along the wrong dims); the same bug in "
                        "LayerNormalization(rms_scaling=True): https://github.com/keras-team/keras/issues/19642")
        return super().unsupported(case)

    def run(self, case, inputs):
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        if "tensorflow" not in sys.modules and importlib.util.find_spec("triton") is not None:
            # TF >= 2.20 loads its LLVM with RTLD_GLOBAL; a triton loaded after it (torch and torchvision
            # import it lazily) segfaults, so it goes first: https://github.com/tensorflow/tensorflow/issues/124205
            import triton  # noqa: F401
        import tensorflow  # noqa: F401  (before keras, which the op methods import)

        return super().run(case, inputs)

    @staticmethod
    def cast(case, v):
        """A case array as a tensor of the case dtype (exact: its values are of that dtype)."""
        import tensorflow as tf

        return tf.cast(tf.constant(np.asarray(v)), case.dtype)

    def taped(self, case, inputs, forward, unarrange=lambda v: v):
        """``forward(x)`` -> ``(outputs, Keras layer or None)`` on ``x`` in the layout's memory order, under a
        GradientTape (which watches the layer's trainable gamma and beta by itself); with ``grad``, the
        gradients too. Returns NumPy in canonical order; ``unarrange`` takes gamma's order to the case's."""
        import tensorflow as tf

        x = self.cast(case, to_layout(inputs["x"], case.layout, host_dtype(case.dtype)))
        with tf.GradientTape() as tape:
            tape.watch(x)
            out, layer = forward(x)
        if case.params.get("grad"):
            names = case.gradients
            sources = {"grad_x": x, "grad_weight": weight_variable(layer),
                       "grad_bias": getattr(layer, "beta", None)}
            grads = tape.gradient(out["y"], [sources[n] for n in names],
                                  output_gradients=self.cast(case, to_layout(inputs["grad_output"], case.layout)))
            out.update(zip(names, grads, strict=True))
        out = {k: host_output(v.numpy() if v.dtype != tf.bfloat16 else tf.cast(v, tf.float64).numpy())
               for k, v in out.items()}
        for k in ("y", "grad_x"):
            if k in out:
                out[k] = from_layout(out[k], case.layout)
        for k in ("grad_weight", "grad_bias"):
            if k in out:
                out[k] = unarrange(out[k])
        return out

    def instance_norm(self, case, inputs):
        # groups=-1 is Keras' instance norm: https://keras.io/api/layers/normalization_layers/group_normalization
        return self._group_norm(case, inputs, -1)

    def group_norm(self, case, inputs):
        return self._group_norm(case, inputs, case.params["groups"])

    def _group_norm(self, case, inputs, groups):
        import keras

        def forward(x):
            layer = keras.layers.GroupNormalization(groups=groups, axis=_cax(case), epsilon=case.params["eps"],
                                                    **_affine_args(case, inputs))
            return {"y": self._affine(layer, x, inputs, lambda v: self.cast(case, v))(x)}, layer
        return self.taped(case, inputs, forward)

    def layer_norm(self, case, inputs):
        import keras

        rank = len(case.shape)
        memory = list(range(rank)) if _cax(case) == 1 else [0, *range(2, rank), 1]  # canonical dim at each memory axis
        axes = [memory.index(a) for a in case.params["axes"]]
        # gamma/beta have the dims of the sorted (memory-order) axes:
        # https://keras.io/api/layers/normalization_layers/layer_normalization
        order = np.argsort(axes)

        def forward(x):
            layer = keras.layers.LayerNormalization(axis=axes, epsilon=case.params["eps"], **_affine_args(case, inputs))
            return {"y": self._affine(layer, x, inputs, lambda v: self.cast(case, np.transpose(v, order)))(x)}, layer
        return self.taped(case, inputs, forward, unarrange=lambda v: np.transpose(v, np.argsort(order)))

    def rms_norm(self, case, inputs):
        """``keras.layers.RMSNormalization`` over the case's axes in memory order; its ``scale`` holds
        ``weight_offset + weight`` in the layer's dtype (Gemma's 1 + weight, as a port of its checkpoint
        loads it), ones without a weight (the layer always scales). ``eps: null`` is passed as the dtype's
        ``finfo(...).eps``: Keras' own None would be ``keras.config.epsilon()``, 1e-7."""
        import keras
        import ml_dtypes
        import tensorflow as tf

        p = case.params
        eps = float(ml_dtypes.finfo(tf.as_dtype(case.dtype).as_numpy_dtype).eps) if p["eps"] is None else p["eps"]
        axes = _memory_axes(case)
        order = np.argsort(axes)  # scale has the dims of the sorted (memory-order) axes

        def forward(x):
            layer = keras.layers.RMSNormalization(axis=axes, epsilon=eps, dtype=case.dtype)
            shifted = {"weight": np.asarray(inputs["weight"]) + p["weight_offset"]} if "weight" in inputs else {}
            call = self._affine(layer, x, shifted, lambda v: self.cast(case, np.transpose(v, order)))
            return {"y": call(x)}, layer
        return self.taped(case, inputs, forward, unarrange=lambda v: np.transpose(v, np.argsort(order)))

    def batch_norm(self, case, inputs):
        import keras

        p = case.params

        def forward(x):
            # Keras' momentum weighs the OLD moving value: keras momentum = 1 - case momentum
            # (https://github.com/keras-team/keras/issues/6839); unused in inference.
            momentum = 0.99 if p["momentum"] is None else 1.0 - p["momentum"]
            layer = keras.layers.BatchNormalization(axis=_cax(case), momentum=momentum, epsilon=p["eps"],
                                                    **_affine_args(case, inputs))
            self._affine(layer, x, inputs, lambda v: self.cast(case, v))
            layer.moving_mean.assign(self.cast(case, inputs["running_mean"]))
            layer.moving_variance.assign(self.cast(case, inputs["running_var"]))
            return self.running_passes(case, inputs, layer, x), layer
        return self.taped(case, inputs, forward)

    def step_input(self, case, x):
        return self.cast(case, to_layout(x, case.layout))

    def running_step(self, case, layer, x, train, momentum):
        return layer(x, training=train), layer

    def running_stats(self, case, layer):
        return layer.moving_mean.value, layer.moving_variance.value

    def normalize(self, case, inputs):
        import tensorflow as tf

        def forward(x):  # (x - mean) / std with the constants in x's dtype, as users write it
            shape = [-1 if a == _cax(case) else 1 for a in range(len(case.shape))]
            mean, std = (tf.reshape(self.cast(case, inputs[k]), shape) for k in ("mean", "std"))
            return {"y": (x - mean) / std}, None
        return self.taped(case, inputs, forward)

    def channel_stats(self, case, inputs):
        import tensorflow as tf

        def forward(x):  # np.mean/np.std's analogs; on CPU they sum float16 in float16 (not repaired):
            # https://github.com/tensorflow/tensorflow/issues/56890
            per_image = case.params["method"] == "per_image_mean"
            spatial = [a for a in range(1, len(case.shape)) if a != _cax(case)]
            axes = spatial if per_image else [0] + spatial
            mean, std = tf.math.reduce_mean(x, axis=axes), tf.math.reduce_std(x, axis=axes)
            if per_image:  # the mean over images of each image's statistics
                mean, std = tf.math.reduce_mean(mean, axis=0), tf.math.reduce_mean(std, axis=0)
            return {"mean": mean, "std": std}, None
        return self.taped(case, inputs, forward)

    @staticmethod
    def _affine(layer, x, inputs, arrange):
        """Build ``layer`` and set gamma/beta (RMSNormalization: scale) from the case's weight/bias; returns
        the layer."""
        layer.build(tuple(x.shape))
        if "weight" in inputs:
            weight_variable(layer).assign(arrange(inputs["weight"]))
        if "bias" in inputs:
            layer.beta.assign(arrange(inputs["bias"]))
        return layer


def weight_variable(layer):
    """The Keras layer's weight variable: ``gamma``, or RMSNormalization's ``scale`` (on the other layers
    ``scale`` is the constructor's flag); None where the layer has none."""
    import keras

    if isinstance(layer, keras.layers.RMSNormalization):
        return layer.scale
    return getattr(layer, "gamma", None)


def _memory_axes(case) -> list[int]:
    """The case's ``axes`` (canonical dims) as the memory axes of its layout."""
    rank = len(case.shape)
    memory = list(range(rank)) if _cax(case) == 1 else [0, *range(2, rank), 1]  # canonical dim at each memory axis
    return [memory.index(a) for a in case.params["axes"]]


def _cax(case) -> int:
    """Where the channels live in memory."""
    return 1 if case.layout == "channels_first" else len(case.shape) - 1


def _affine_args(case, inputs) -> dict:
    # dtype=case dtype as its users write it; Keras' norms then compute float16/bfloat16 in float32 inside:
    # https://github.com/keras-team/keras/tree/v3.15.1/keras/src/layers/normalization/group_normalization.py
    return dict(center="bias" in inputs, scale="weight" in inputs, dtype=case.dtype)

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
    native = {"variance": "biased", "running_variance": "biased"}
    # Keras defaults: epsilon=1e-3 in all three layers, BatchNormalization momentum=0.99 (old-value weight,
    # 0.01 in the case's convention): https://keras.io/api/layers/normalization_layers/
    defaults = {op: {"eps": 1e-3} for op in ("instance_norm", "layer_norm", "group_norm")}
    defaults.update(batch_norm={"eps": 1e-3, "momentum": 0.01}, channel_stats={"variance": "biased"})

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
        return super().unsupported(case)

    def run(self, case, inputs):
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        if "tensorflow" not in sys.modules and importlib.util.find_spec("triton") is not None:
            # TF >= 2.20 loads its LLVM with RTLD_GLOBAL; a triton loaded after it (torch and torchvision
            # import it lazily) segfaults, so it goes first: https://github.com/tensorflow/tensorflow/issues/124205
            import triton  # noqa: F401
        import tensorflow as tf

        cast = lambda v: tf.cast(tf.constant(np.asarray(v)), case.dtype)  # noqa: E731  (exact: values are of dt)
        x = cast(to_layout(inputs["x"], case.layout, host_dtype(case.dtype)))
        with tf.GradientTape() as tape:  # watches the layer's trainable gamma and beta by itself
            tape.watch(x)
            out, layer, unarrange = self._forward(case, inputs, x, cast)
        if case.params.get("grad"):
            names = case.gradients
            sources = {"grad_x": x, "grad_weight": getattr(layer, "gamma", None), "grad_bias": getattr(layer, "beta", None)}
            grads = tape.gradient(out["y"], [sources[n] for n in names],
                                  output_gradients=cast(to_layout(inputs["grad_output"], case.layout)))
            out.update(zip(names, grads))
        out = {k: host_output(v.numpy() if v.dtype != tf.bfloat16 else tf.cast(v, tf.float64).numpy()) for k, v in out.items()}
        for k in ("y", "grad_x"):
            if k in out:
                out[k] = from_layout(out[k], case.layout)
        for k in ("grad_weight", "grad_bias"):
            if k in out:
                out[k] = unarrange(out[k])
        return out

    def _forward(self, case, inputs, x, cast):
        """The op on ``x`` (memory order): ``(outputs, Keras layer or None, gamma's order -> the case's)``."""
        import keras
        import tensorflow as tf

        p, dt, rank = case.params, case.dtype, len(case.shape)
        cax = 1 if case.layout == "channels_first" else rank - 1  # where the channels live in memory
        spatial = [a for a in range(1, rank) if a != cax]
        # dtype=case dtype as its users write it; Keras' norms then compute float16/bfloat16 in float32 inside:
        # https://github.com/keras-team/keras/tree/v3.15.1/keras/src/layers/normalization/group_normalization.py
        affine = dict(center="bias" in inputs, scale="weight" in inputs, dtype=dt)
        layer, unarrange = None, lambda v: v  # the Keras layer (its gamma/beta), and gamma's order -> the case's
        if case.op in ("instance_norm", "group_norm"):
            # groups=-1 is Keras' instance norm: https://keras.io/api/layers/normalization_layers/group_normalization
            groups = -1 if case.op == "instance_norm" else p["groups"]
            layer = keras.layers.GroupNormalization(groups=groups, axis=cax, epsilon=p["eps"], **affine)
            out = {"y": self._affine(layer, x, inputs, cast)(x)}
        elif case.op == "layer_norm":
            memory = list(range(rank)) if cax == 1 else [0, *range(2, rank), 1]  # canonical dim at each memory axis
            axes = [memory.index(a) for a in p["axes"]]
            # gamma/beta have the dims of the sorted (memory-order) axes:
            # https://keras.io/api/layers/normalization_layers/layer_normalization
            order = np.argsort(axes)
            unarrange = lambda v: np.transpose(v, np.argsort(order))  # noqa: E731
            layer = keras.layers.LayerNormalization(axis=axes, epsilon=p["eps"], **affine)
            out = {"y": self._affine(layer, x, inputs, lambda v: cast(np.transpose(v, order)))(x)}
        elif case.op == "batch_norm":
            # Keras' momentum weighs the OLD moving value: keras momentum = 1 - case momentum
            # (https://github.com/keras-team/keras/issues/6839); unused in inference.
            momentum = 0.99 if p["momentum"] is None else 1.0 - p["momentum"]
            layer = keras.layers.BatchNormalization(axis=cax, momentum=momentum, epsilon=p["eps"], **affine)
            self._affine(layer, x, inputs, cast)
            layer.moving_mean.assign(cast(inputs["running_mean"]))
            layer.moving_variance.assign(cast(inputs["running_var"]))
            earlier = inputs["x_steps"] if p["eval_after"] else inputs["x_steps"][:-1] if p["training"] else []
            for xk in earlier:
                layer(cast(to_layout(xk, case.layout)), training=p["training"])
            out = {"y": layer(x, training=p["training"] and not p["eval_after"])}
            if p["training"]:
                out.update(running_mean=layer.moving_mean.value, running_var=layer.moving_variance.value)
        elif case.op == "normalize":  # (x - mean) / std with the constants in x's dtype, as users write it
            shape = [-1 if a == cax else 1 for a in range(rank)]
            out = {"y": (x - tf.reshape(cast(inputs["mean"]), shape)) / tf.reshape(cast(inputs["std"]), shape)}
        else:  # channel_stats with np.mean/np.std's analogs; on CPU they sum float16 in float16 (not repaired):
            # https://github.com/tensorflow/tensorflow/issues/56890
            per_image = p["method"] == "per_image_mean"
            axes = spatial if per_image else [0] + spatial
            mean, std = tf.math.reduce_mean(x, axis=axes), tf.math.reduce_std(x, axis=axes)
            if per_image:  # the mean over images of each image's statistics
                mean, std = tf.math.reduce_mean(mean, axis=0), tf.math.reduce_mean(std, axis=0)
            out = {"mean": mean, "std": std}
        return out, layer, unarrange

    @staticmethod
    def _affine(layer, x, inputs, arrange):
        """Build ``layer`` and set gamma/beta from the case's weight/bias; returns the layer."""
        layer.build(tuple(x.shape))
        if "weight" in inputs:
            layer.gamma.assign(arrange(inputs["weight"]))
        if "bias" in inputs:
            layer.beta.assign(arrange(inputs["bias"]))
        return layer


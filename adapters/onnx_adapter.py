"""ONNX: one-node graphs per op and opset, run by the ONNX reference evaluator, ONNX Runtime and OpenVINO.

:func:`run_onnx_model` runs serialized ONNX bytes on ONNX Runtime's CPU execution provider (a cached
session per model); other adapters that export a model to ONNX use it as well.
"""
from __future__ import annotations

import functools

import numpy as np


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

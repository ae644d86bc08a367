"""CuPy on the GPU: the NumPy formula (``cp.mean`` / ``cp.var(ddof=...)``) on CuPy arrays."""
from __future__ import annotations

import functools
import importlib.metadata

from normconf.adapter import no_cuda_driver

from .numpy_adapter import NumpyAdapter


class CupyAdapter(NumpyAdapter):
    """Same as NumPy, except the arrays are CuPy arrays on the CUDA device."""

    name = framework = "cupy"
    device = "cuda"
    distribution = "cupy-cuda12x"
    requires = ("cupy",)
    no_autodiff = "CuPy has no autodiff"
    # CuPy has no bfloat16 of its own; cupy>=14 accepts ml_dtypes.bfloat16 only experimentally:
    # https://github.com/cupy/cupy/issues/7527, https://github.com/cupy/cupy/pull/9494
    unsupported_dtypes = {"bfloat16": "CuPy has no bfloat16 dtype (experimental ml_dtypes support only: "
                                      "https://github.com/cupy/cupy/pull/9494)"}

    @property
    def xp(self):
        import cupy

        return cupy

    def available(self):
        return super().available() or no_cuda_driver() or _no_cuda()

    def version(self):
        # CuPy ships one wheel per CUDA major (cupy-cuda11x, cupy-cuda12x, ...) or builds as "cupy":
        # report whichever distribution provides the `cupy` package.
        for dist in ("cupy-cuda12x", "cupy-cuda13x", "cupy-cuda11x", "cupy"):  # cheap: no scan of every package
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                pass
        for dist in importlib.metadata.packages_distributions().get("cupy", []):
            return importlib.metadata.version(dist)
        return None

    def run(self, case, inputs):
        import cupy

        out = super().run(case, inputs)
        for key, value in out.items():
            if not isinstance(value, cupy.ndarray):  # never report host NumPy numbers as CuPy's
                raise TypeError(f"{key!r} was computed by NumPy on the host, not CuPy: NumpyAdapter's op "
                                f"methods must build their arrays with self.xp")
        return {key: cupy.asnumpy(value) for key, value in out.items()}


@functools.cache
def _no_cuda() -> str | None:
    """Why CuPy cannot compute on a CUDA device here, or None; asked once per process."""
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError (no driver, driver too old), or a CUDA library missing
        return f"no CUDA device: cupy.cuda.runtime.getDeviceCount() raised {type(exc).__name__}: {exc}"
    if count == 0:
        return "no CUDA device: cupy.cuda.runtime.getDeviceCount() returned 0"
    try:  # a device without a working kernel compiler (NVRTC) fails on the first reduction
        float(cupy.var(cupy.arange(4, dtype=cupy.float32)))
    except Exception as exc:
        return f"CUDA device present but a first CuPy kernel failed: {type(exc).__name__}: {exc}"
    return None

"""The built-in adapters. Importing this package imports no framework.

They are registered through the ``normconf.adapters`` entry-point group (``pyproject.toml``) as any
other distribution registers its adapters: the entry point names :func:`builtin`, which the engine's
registry loads without importing this package itself."""
from __future__ import annotations


def builtin():
    """One instance of every built-in adapter, in report order."""
    from .compiled import JaxJitAdapter, TensorflowXlaAdapter, TorchCompileAdapter
    from .cupy_adapter import CupyAdapter
    from .jax_adapter import JaxAdapter, JaxCudaAdapter
    from .labml_adapter import LabmlAdapter
    from .numpy_adapter import NumpyAdapter
    from .onnx_adapter import ADAPTERS as ONNX
    from .recipes import RECIPES
    from .tensorflow_adapter import TensorflowAdapter
    from .torch_adapter import TorchAdapter
    from .torch_cuda_adapter import TorchCudaAdapter
    from .torch_onnx_adapter import TorchOnnxAdapter

    frameworks = [NumpyAdapter(), TorchAdapter(), TensorflowAdapter(), JaxAdapter(), LabmlAdapter(),
                  TorchCudaAdapter(), JaxCudaAdapter(), CupyAdapter()]
    # the compiled twins, after their eager adapters (default subset: the cases tagged `compiled`)
    frameworks += [TorchCompileAdapter(), TensorflowXlaAdapter(), JaxJitAdapter()]
    # the export round trip after the runtimes it ends in (default subset: the cases tagged `deploy`)
    deploy = [cls() for cls in ONNX] + [TorchOnnxAdapter()]
    return frameworks + deploy + [cls() for cls in RECIPES]

"""PyTorch on CUDA: the ``torch`` adapter with another device (a subclass, nothing else)."""
from __future__ import annotations

from normconf.adapter import no_cuda_driver

from .torch_adapter import TorchAdapter


class TorchCudaAdapter(TorchAdapter):
    """The ``torch`` adapter on device ``cuda``, with TF32 off (reported in the environment)."""

    name, device = "torch-cuda", "cuda"

    def available(self):
        reason = super().available() or no_cuda_driver()
        if reason:
            return reason
        import torch

        if not torch.cuda.is_available():
            return f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False)"
        return None

    def run(self, case, inputs):
        import torch

        # TF32 would round float32 matmul/conv inputs to 10 mantissa bits; norms do not use it, but a
        # conformance run pins it off so float32 means float32 everywhere.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return super().run(case, inputs)

    def describe(self):
        info = super().describe()
        if info["available"]:
            import torch

            info.update(device_name=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                        tf32={"matmul": torch.backends.cuda.matmul.allow_tf32,
                              "cudnn": torch.backends.cudnn.allow_tf32})
        return info

"""Tensors crossing between torch (the Lightning shell) and MindSpore (the compute core), on either device.

On CPU both frameworks share the memory (``mindspore.Tensor.from_numpy`` over the
torch tensor's numpy view, and back): no copy, ~0.01 ms for 44 MB. On a GPU the
tensors cross through DLPack where MindSpore supports it (no host round trip);
where it does not, they go through host memory and come back onto the torch
device; ``Handoff.path`` says which one a run uses and ``seconds`` how long the
crossings took, for the benchmark.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch


def _dlpack_to_mindspore(t: torch.Tensor):
    from mindspore.utils import dlpack

    return dlpack.from_dlpack(torch.utils.dlpack.to_dlpack(t))


def _dlpack_to_torch(t) -> torch.Tensor:
    from mindspore.utils import dlpack

    return torch.utils.dlpack.from_dlpack(dlpack.to_dlpack(t))


class Handoff:
    """Moves tensors between the frameworks for one device (``torch.device``), timing every crossing."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        # CPU: numpy views both ways; GPU: DLPack until it fails once, then host memory
        self.path = "numpy (shared memory)" if self.device.type == "cpu" else "dlpack"
        self.seconds = 0.0

    def to_mindspore(self, t: torch.Tensor, dtype: Optional[np.dtype] = None):
        start = time.perf_counter()
        try:
            return self._to_mindspore(t.detach(), dtype)
        finally:
            self.seconds += time.perf_counter() - start

    def to_torch(self, t) -> torch.Tensor:
        start = time.perf_counter()
        try:
            return self._to_torch(t)
        finally:
            self.seconds += time.perf_counter() - start

    def _to_mindspore(self, t: torch.Tensor, dtype):
        import mindspore as ms

        if dtype is not None and t.dtype != _TORCH_DTYPES[np.dtype(dtype)]:
            t = t.to(_TORCH_DTYPES[np.dtype(dtype)])
        if t.device.type != "cpu" and self.path == "dlpack":
            try:
                return _dlpack_to_mindspore(t.contiguous())
            except Exception:  # MindSpore 2.10 documents DLPack for Ascend only: fall back to host memory
                self.path = "host memory (no DLPack)"
        return ms.Tensor.from_numpy(np.ascontiguousarray(t.cpu().numpy()))

    def _to_torch(self, t) -> torch.Tensor:
        if self.device.type != "cpu" and self.path == "dlpack":
            try:
                return _dlpack_to_torch(t).to(self.device)
            except Exception:
                self.path = "host memory (no DLPack)"
        return torch.from_numpy(t.asnumpy()).to(self.device)


_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.int32): torch.int32}

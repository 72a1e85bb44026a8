"""Tensors crossing between torch (the Lightning shell) and MindSpore (the compute core), on either device.

On CPU both frameworks share the memory (``mindspore.from_numpy`` over the torch
tensor's numpy view, and back): no copy, ~0.01 ms for 44 MB. On a GPU the
tensors cross through DLPack where MindSpore supports it (no host round trip);
where it does not (MindSpore 2.10 documents DLPack for Ascend only), a first
crossing of one element says once why, and tensors go through host memory.
Only that probe's failure is caught: an error in a real crossing (a device
out of memory, a lost device) is raised. ``Handoff.path`` says which path a
run uses and ``seconds`` how long the crossings took, for the benchmark.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_warn

SHARED, DLPACK, HOST = "numpy (shared memory)", "dlpack", "host memory (no DLPack)"
_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.int32): torch.int32}


def _dlpack_to_mindspore(t: torch.Tensor):
    from mindspore.utils import dlpack

    return dlpack.from_dlpack(torch.utils.dlpack.to_dlpack(t))


def _dlpack_to_torch(t) -> torch.Tensor:
    from mindspore.utils import dlpack

    return torch.utils.dlpack.from_dlpack(dlpack.to_dlpack(t))


def probe_dlpack(device: torch.device) -> str:
    """``DLPACK`` when one element crosses both ways on ``device``, else ``HOST``, saying why once."""
    try:
        back = _dlpack_to_torch(_dlpack_to_mindspore(torch.ones(1, device=device)))
        if back.device != device or float(back.cpu()[0]) != 1.0:
            raise RuntimeError(f"the element came back as {back} on {back.device}")
        return DLPACK
    except Exception as exc:
        rank_zero_warn(f"MindSpore cannot exchange tensors with torch on {device} through DLPack "
                       f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}): "
                       "they cross through host memory (a copy each way)")
        return HOST


class Handoff:
    """Moves tensors between the frameworks for one device (``torch.device``), timing every crossing."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.path = SHARED if self.device.type == "cpu" else probe_dlpack(self.device)
        self.seconds = 0.0

    def to_mindspore(self, t: torch.Tensor, dtype: Optional[np.dtype] = None):
        import mindspore as ms

        start = time.perf_counter()
        t = t.detach()
        if dtype is not None and t.dtype != _TORCH_DTYPES[np.dtype(dtype)]:
            t = t.to(_TORCH_DTYPES[np.dtype(dtype)])
        if self.path == DLPACK:
            out = _dlpack_to_mindspore(t.contiguous())
        else:
            out = ms.from_numpy(np.ascontiguousarray(t.cpu().numpy()))
        self.seconds += time.perf_counter() - start
        return out

    def to_torch(self, t, owned: bool = False) -> torch.Tensor:
        """A torch tensor on the device; on CPU a view of MindSpore's memory, which a later MindSpore step may
        reuse: ``owned=True`` copies it, for what is handed to Lightning or the user."""
        array = self._computed(t)  # waiting for MindSpore's step is compute, not hand-off
        start = time.perf_counter()
        if self.path == DLPACK:
            out = _dlpack_to_torch(t)
            out = out.clone() if owned else out
        elif self.path == SHARED:
            out = torch.from_numpy(array)
            out = out.clone() if owned else out
        else:
            out = torch.from_numpy(array).to(self.device)  # a copy onto the device
        self.seconds += time.perf_counter() - start
        return out

    def _computed(self, t):
        """Wait until MindSpore has computed ``t`` (its compiled steps run ahead of Python); on the host paths,
        its numpy view."""
        if self.path == DLPACK:
            import mindspore as ms

            ms.runtime.synchronize()
            return None
        return t.asnumpy()

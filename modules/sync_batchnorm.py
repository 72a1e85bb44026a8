"""Synchronised BatchNorm for the torch backend under DDP, on GPUs and on CPUs, as a Lightning ``LayerSync``.

Upstream trains with ``sync_batchnorm=True``: every BatchNorm layer normalises
with the mean and variance of the whole global batch, across processes. On
GPUs this is Lightning's own plugin (``torch.nn.SyncBatchNorm``), whose kernels
exist for GPUs only (on CPU: "SyncBatchNorm expected input tensor to be on
GPU", and DDP refuses it). On CPUs (gloo) ``ProcessGroupBatchNorm`` computes the
same global statistics with torch's differentiable functional ``all_reduce``,
whose backward sums the statistics' gradients across processes as
``torch.nn.SyncBatchNorm``'s does; it holds the same parameters and buffers,
so checkpoints do not change.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from pytorch_lightning.plugins.layer_sync import TorchSyncBatchNorm
from torch.distributed._functional_collectives import all_reduce  # differentiable (torch.distributed.nn's is deprecated)
from torch.nn.modules.batchnorm import _BatchNorm


class ProcessGroupBatchNorm(_BatchNorm):
    """BatchNorm over the global batch of a CPU process group in training; plain BatchNorm otherwise."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [d for d in range(x.dim()) if d != 1]
        group = dist.group.WORLD
        # global count and mean, then the global variance around it (two passes: as stable as BatchNorm's own)
        local = torch.cat([x.sum(dims), x.new_tensor([x.numel() / x.shape[1]])])
        total = all_reduce(local, "sum", group)
        count, mean = total[-1], total[:-1] / total[-1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = x - mean.reshape(shape)
        var = all_reduce((centred * centred).sum(dims), "sum", group) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * var.detach() * count / (count - 1))
        out = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out


def swap_batchnorm(module: torch.nn.Module, kind: type, source: type = _BatchNorm) -> torch.nn.Module:
    """``module`` with every ``source`` BatchNorm layer rebuilt as a ``kind`` holding the same tensors."""
    converted = module
    if isinstance(module, source) and type(module) is not kind:
        converted = kind(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean, converted.running_var = module.running_mean, module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, swap_batchnorm(child, kind, source))
    return converted


class SyncBatchNormAnyDevice(TorchSyncBatchNorm):
    """Lightning's ``sync_batchnorm`` plugin for either device: ``torch.nn.SyncBatchNorm`` on GPUs,
    ``ProcessGroupBatchNorm`` on CPUs (Lightning applies it before the model moves to its device, so the
    Trainer's set-up says which: ``gpu``)."""

    def __init__(self, gpu: bool):
        self.gpu = gpu

    def apply(self, model: torch.nn.Module) -> torch.nn.Module:
        return super().apply(model) if self.gpu else swap_batchnorm(model, ProcessGroupBatchNorm)

    def revert(self, model: torch.nn.Module) -> torch.nn.Module:
        model = swap_batchnorm(model, torch.nn.BatchNorm2d, source=ProcessGroupBatchNorm)
        return super().revert(model)

"""The activations' kinks in parity checks: a ReLU input within fp32 noise of 0 may land on either side.

A gradient through ``relu(x)`` takes ``x > 0`` per element. The two backends' forwards differ by fp32
rounding (the forward rows allow ``1e-4 x std``), so where ``|x|`` is that small the two can decide
differently, and one such element moves a gradient by about its share of the tensor's norm: measured on
``tiny_vitl16`` at 96x64 (``lseg-parity --seed 1`` batch), one DPT input of ``-1.2e-6`` (std 1) that
MindSpore rounded above 0 put every gradient below it 0.3-1 % off the float64 reference, which agrees with
torch's own fp32 run to 2e-6. Such a difference says nothing about the port, and at 5-12 inputs within
``1e-5 x std`` of 0 per batch there it is a matter of which batch is drawn.

So the torch reference takes MindSpore's side there: one eager, training-mode MindSpore forward records the
input of every ``ReLU``/``LeakyReLU`` call (``ms_activation_inputs``), and ``FollowActivations`` makes the
torch net's matching calls (same order, same shapes) pass or block those elements as MindSpore did, where
the torch input lies within ``near x`` its std of 0 (the parity command passes its forward tolerance,
1e-4). Everywhere else the decisions must agree: the parity command fails a row on a decision that differs
further from 0, as on a different number of calls (``parity.activation_row``).
"""
from __future__ import annotations

from typing import List

import numpy as np


def _activation_cells(ms_net):
    from mindspore import nn

    return [cell for _, cell in ms_net.cells_and_names() if isinstance(cell, (nn.ReLU, nn.LeakyReLU))]


def ms_activation_inputs(ms_net, images, text_features) -> List[np.ndarray]:
    """The input of every ReLU/LeakyReLU call of one training-mode forward of the MindSpore net on ``images``
    (float32 numpy), in call order. Runs eagerly with forward hooks; the BatchNorm statistics the forward
    updates are put back."""
    import mindspore as ms

    from lang_seg.backends.mindspore_backend import assign, named_parameters

    statistics = {name: p.asnumpy().copy() for name, p in named_parameters(ms_net) if "moving_" in name}
    recorded: List[np.ndarray] = []
    handles = [cell.register_forward_hook(lambda cell, args, output: recorded.append(args[0].asnumpy()))
               for cell in _activation_cells(ms_net)]
    was_training = ms_net.training
    try:
        ms_net.set_train(True)
        ms_net(ms.from_numpy(images), text_features)
    finally:
        for handle in handles:
            handle.remove()
        ms_net.set_train(was_training)
        for name, p in named_parameters(ms_net):
            if name in statistics:
                assign(p, statistics[name])
    return recorded


class FollowActivations:
    """While active, the torch net's ReLU/LeakyReLU calls take MindSpore's side (``ms_inputs``, in call order)
    where their input is within ``near x std`` of 0 and the sides differ; counts what it found:
    ``calls``, ``followed`` (elements given MindSpore's side), ``disagree`` (differing sides further
    from 0, left as torch decides) and ``matched`` (as many calls as MindSpore made, the same shapes)."""

    def __init__(self, net, ms_inputs: List[np.ndarray], near: float):
        import torch

        self.net, self.ms_inputs, self.near = net, ms_inputs, near
        self.modules = [m for m in net.modules() if isinstance(m, (torch.nn.ReLU, torch.nn.LeakyReLU))]
        self.calls = self.followed = self.disagree = 0
        self.shape_mismatch = False
        self._handles: list = []
        self._pre = None

    def __enter__(self):
        for module in self.modules:
            self._handles.append(module.register_forward_pre_hook(self._keep_input))
            self._handles.append(module.register_forward_hook(self._follow))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _keep_input(self, module, args):
        self._pre = args[0].clone()  # an in-place ReLU (the ResNet's) overwrites its input

    def _follow(self, module, args, output):
        import torch

        x, index = self._pre, self.calls
        self.calls += 1
        if index >= len(self.ms_inputs) or tuple(self.ms_inputs[index].shape) != tuple(x.shape):
            self.shape_mismatch = True
            return output
        theirs = torch.from_numpy(self.ms_inputs[index] > 0)
        ours = x.detach() > 0
        differ = theirs != ours
        near = x.detach().abs() <= self.near * float(x.detach().double().std())
        self.disagree += int((differ & ~near).sum())
        follow = differ & near
        self.followed += int(follow.sum())
        if not bool(follow.any()):
            return output
        slope = getattr(module, "negative_slope", 0.0)
        taken = x * torch.where(theirs, torch.ones_like(x), torch.full_like(x, slope))
        return torch.where(follow, taken, output)

    @property
    def matched(self) -> bool:
        return self.calls == len(self.ms_inputs) and not self.shape_mismatch

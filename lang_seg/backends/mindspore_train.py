"""Compiled MindSpore loss + gradients for LSeg training (what the Lightning bridge drives)."""
from __future__ import annotations

from typing import Dict, List, Optional

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from ..names import is_trained, ms_to_torch_name
from .mindspore_backend import assign, compiler, named_parameters
from .mindspore_loss import cross_entropy


def trainable_parameters(net) -> List[object]:
    """What upstream's SGD updates (``lang_seg.names.is_trained``): torch leaves the never-reached
    tensors' gradients None and SGD skips them, so they are not trained here either."""
    return [p for name, p in named_parameters(net) if is_trained(name, net.options) and p.requires_grad]


def parameter_names(net) -> Dict[int, str]:
    return {id(p): name for name, p in named_parameters(net)}


class LossAndGrad:
    """``(images, target, text_features) -> (loss, out, grads)`` compiled once per input shape.

    ``images``: float32 ``(N, 3, H, W)``; ``target``: int32 ``(N, H, W)`` with ``-1``
    for ignored pixels. BatchNorm runs in training mode and updates its statistics.
    """

    def __init__(self, net, mode: str = "graph"):
        self.net = net
        self.params = trainable_parameters(net)
        names = parameter_names(net)
        self.names = [names[id(p)] for p in self.params]

        def forward(x, target, text_features):
            out = net(x, text_features)
            return cross_entropy(out, target), out

        grad_fn = ms.value_and_grad(forward, None, self.params, has_aux=True)
        self._fn = compiler(mode)(grad_fn)

    def __call__(self, images, target, text_features):
        self.net.set_train(True)
        (loss, out), grads = self._fn(images, target, text_features)
        return loss, out, grads

    def numpy_grads(self, grads) -> Dict[str, np.ndarray]:
        """Gradients as numpy arrays under torch parameter names."""
        return {ms_to_torch_name(name): g.asnumpy() for name, g in zip(self.names, grads)}


class PolyEpochLR(nn.learning_rate_schedule.LearningRateSchedule):
    """Upstream's schedule ``lr * (1 - epoch / max_epochs) ** 0.9`` with ``epoch = step // steps_per_epoch``
    from the optimizer's step counter, or, with ``steps_per_epoch=None``, the ``epoch`` the training loop
    sets (``TrainStep.set_epoch``): Lightning's epoch, right whatever the number of processes a run
    resumed with (steps per epoch change with it)."""

    def __init__(self, lr: float, steps_per_epoch: Optional[int], max_epochs: int, power: float = 0.9,
                 epoch: Optional[ms.Parameter] = None):
        super().__init__()
        self.lr = lr
        self.steps_per_epoch = steps_per_epoch
        self.max_epochs = float(max_epochs)
        self.power = power
        self.epoch = epoch

    def construct(self, global_step):
        if self.steps_per_epoch is None:
            epoch = self.epoch
        else:
            epoch = ops.floor_div(global_step, self.steps_per_epoch).astype(ms.float32)
        # past max_epochs the factor stays 0 (upstream's formula would turn NaN)
        return self.lr * ops.pow(ops.maximum(1.0 - epoch / self.max_epochs, 0.0), self.power)


class TrainStep:
    """Upstream's optimisation step in MindSpore: loss, gradients and SGD in compiled graphs.

    SGD with momentum and weight decay on every trainable tensor, the backbone
    (``pretrained.*``) at ``lr`` and the decoder (``scratch.*``) at ``10 * lr``,
    both decayed per epoch. With ``accumulate > 1`` gradients of the loss divided
    by ``accumulate`` are summed over that many batches before one update, as
    Lightning's ``accumulate_grad_batches`` does.
    """

    def __init__(self, net, lr: float, steps_per_epoch: Optional[int], max_epochs: int, momentum: float = 0.9,
                 weight_decay: float = 1e-4, accumulate: int = 1, mode: str = "graph"):
        """``steps_per_epoch=None``: the schedule follows the epoch given to ``set_epoch``."""
        self.net = net
        self.accumulate = accumulate
        self.mode = mode
        self.loss_and_grad = LossAndGrad(net, mode=mode)
        params = self.loss_and_grad.params
        names = self.loss_and_grad.names
        self.epoch = ms.Parameter(ms.Tensor(0.0, ms.float32), name="schedule_epoch", requires_grad=False)
        groups = [
            {"params": [p for p, n in zip(params, names) if n.startswith("pretrained.")],
             "lr": PolyEpochLR(lr, steps_per_epoch, max_epochs, epoch=self.epoch), "weight_decay": weight_decay},
            {"params": [p for p, n in zip(params, names) if n.startswith("scratch.")],
             "lr": PolyEpochLR(10 * lr, steps_per_epoch, max_epochs, epoch=self.epoch), "weight_decay": weight_decay},
        ]
        self.optimizer = nn.SGD(groups, learning_rate=lr, momentum=momentum, weight_decay=weight_decay)
        self._group_firsts = [group["params"][0] for group in groups]  # MindSpore keeps a rate per parameter
        # the optimizer holds the groups' parameters in its own order
        order = {id(p): i for i, p in enumerate(params)}
        self._perm = [order[id(p)] for p in self.optimizer.parameters]
        self.micro_step = 0
        if accumulate > 1:
            self.grad_sums = ms.ParameterTuple(
                ms.Parameter(ops.zeros(p.shape, p.dtype), name=f"grad_sum.{n}", requires_grad=False)
                for p, n in zip(params, names)
            )
        compile_ = compiler(mode)
        optimizer, perm, scale = self.optimizer, self._perm, 1.0 / accumulate
        grad_fn = self.loss_and_grad._fn

        def step(x, target, text_features):
            (loss, out), grads = grad_fn(x, target, text_features)
            return ops.depend(loss, optimizer(tuple(grads[i] for i in perm))), out

        def accumulate_(x, target, text_features):
            (loss, out), grads = grad_fn(x, target, text_features)
            done = tuple(ops.assign_add(s, g * scale) for s, g in zip(self.grad_sums, grads))
            return ops.depend(loss, done), out

        def apply():
            sums = self.grad_sums
            done = optimizer(tuple(sums[i] for i in perm))
            for s in sums:  # side effects run in program order (auto-monad)
                ops.assign(s, ops.zeros_like(s))
            return done

        self._step = compile_(step)
        # one micro-batch's forward and backward, its gradients (scaled by 1 / accumulate) added to grad_sums
        self.add_micro_batch = compile_(accumulate_) if accumulate > 1 else None
        self._apply = compile_(apply) if accumulate > 1 else None

    def optimizer_slots(self) -> Dict[str, object]:
        """The optimizer's state as ``{key: Parameter}`` under torch parameter names: ``momentum.<name>``
        (MindSpore's ``accum``), ``fresh.<name>`` (its ``stat``: 1 until the tensor's first update, when the
        momentum buffer starts as the gradient) and, when accumulating, ``grad_sum.<name>``."""
        path = parameter_names(self.net)
        names = [ms_to_torch_name(path[id(p)]) for p in self.optimizer.parameters]
        slots = {f"momentum.{n}": p for n, p in zip(names, self.optimizer.accum)}
        slots.update({f"fresh.{n}": p for n, p in zip(names, self.optimizer.stat)})
        if self.accumulate > 1:
            grad_names = [ms_to_torch_name(n) for n in self.loss_and_grad.names]
            slots.update({f"grad_sum.{n}": p for n, p in zip(grad_names, self.grad_sums)})
        return slots

    @property
    def global_step(self) -> int:
        return int(self.optimizer.global_step.asnumpy().reshape(-1)[0])

    def set_epoch(self, epoch: int) -> None:
        """The epoch the schedule uses when built with ``steps_per_epoch=None``."""
        assign(self.epoch, np.float32(epoch))  # in place: the compiled step reads this memory

    def learning_rates(self) -> List[float]:
        """Each group's learning rate for the next update (MindSpore's own schedule, evaluated now)."""
        step = self.optimizer.global_step
        return [float(self.optimizer.get_lr_parameter(first)(step).asnumpy()) for first in self._group_firsts]

    def steps_now(self, last: bool) -> bool:
        """Count one micro-batch; True when it completes an update: every ``accumulate`` micro-batches, and at
        the last micro-batch of an epoch (``last``), as Lightning's loop steps for torch."""
        self.micro_step += 1
        if self.micro_step >= self.accumulate or last:
            self.micro_step = 0
            return True
        return False

    def __call__(self, images, target, text_features, last: bool = False):
        """One micro-batch; returns ``(loss, out, stepped)``. ``last``: the epoch's last micro-batch."""
        self.net.set_train(True)
        if self.accumulate == 1:
            loss, out = self._step(images, target, text_features)
            return loss, out, True
        loss, out = self.add_micro_batch(images, target, text_features)
        if self.steps_now(last):
            self._apply()
            return loss, out, True
        return loss, out, False

"""MindSpore training of LSeg, the compute core: the compiled loss and gradients, and upstream's optimizers
applied to MindSpore's own weights.

The gradient graph folds in what every update needs once: the ``1 / accumulate`` scaling Lightning applies
to the loss, and torch's L2 weight decay (``g + wd * w``, added by torch's SGD and Adam before their
update). The optimizers then run one fused MindSpore kernel per tensor (``ApplyMomentum``, ``Adam``)
outside any graph: ``nn.SGD`` unrolled over ~230 tensors cost a minute of compilation per process
(MINDSPORE-CPU.md, ``compile-time``), these cost none.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import ops

from ..names import is_trained, ms_to_torch_name
from .mindspore_backend import assign, compiler, named_parameters
from .mindspore_loss import cross_entropy

GROUPS = ("pretrained.", "scratch.")  # upstream's parameter groups: the backbone, the decoder (10x the rate)


def trainable_parameters(net) -> List[object]:
    """What upstream's SGD updates (``lang_seg.names.is_trained``): torch leaves the never-reached
    tensors' gradients None and SGD skips them, so they are not trained here either."""
    return [p for name, p in named_parameters(net) if is_trained(name, net.options) and p.requires_grad]


def parameter_names(net) -> Dict[int, str]:
    return {id(p): name for name, p in named_parameters(net)}


def scalar(value: float):
    return ms.Tensor(np.float32(value))


class LossAndGrad:
    """``(images, target, text_features, scale=1, decay=0) -> (loss, pred, grads)``, compiled once per input
    shape; ``grads[i] = scale * d loss / d params[i] + decay * params[i]`` (scale and decay are graph inputs:
    changing them recompiles nothing).

    ``images``: float32 ``(N, 3, H, W)``; ``target``: int32 ``(N, H, W)`` with ``-1`` for ignored pixels;
    ``pred``: int32 ``(N, H, W)``, each pixel's best label. BatchNorm runs in training mode and updates its
    statistics.
    """

    def __init__(self, net, mode: str = "graph"):
        self.net = net
        self.params = trainable_parameters(net)
        names = parameter_names(net)
        self.names = [names[id(p)] for p in self.params]
        params = tuple(self.params)

        def forward(x, target, text_features):
            out = net(x, text_features)
            return cross_entropy(out, target), ops.argmax(out, 1).astype(ms.int32)

        grad_fn = ms.value_and_grad(forward, None, self.params, has_aux=True)

        def step(x, target, text_features, scale, decay):
            (loss, pred), grads = grad_fn(x, target, text_features)
            return loss, pred, tuple(g * scale + p * decay for g, p in zip(grads, params))

        self._fn = compiler(mode)(step)

    def __call__(self, images, target, text_features, scale: float = 1.0, decay: float = 0.0):
        self.net.set_train(True)
        return self._fn(images, target, text_features, scalar(scale), scalar(decay))

    def numpy_grads(self, grads) -> Dict[str, np.ndarray]:
        """Gradients as numpy arrays under torch parameter names."""
        return {ms_to_torch_name(name): g.asnumpy() for name, g in zip(self.names, grads)}


def group_of(names: Sequence[str]) -> List[int]:
    """Each parameter's group index (``GROUPS``) from its MindSpore name."""
    return [next(i for i, prefix in enumerate(GROUPS) if name.startswith(prefix)) for name in names]


class Optimizer:
    """An update rule over MindSpore Parameters with torch's state layout: ``state()`` gives each slot (torch's
    ``state[param]`` keys) as ``{torch name: array}``; ``load_state`` takes the same (missing tensors start
    fresh). ``step(grads, rates)`` applies one update, ``rates[g]`` for group ``g``."""

    SLOTS: Sequence[str] = ()

    def __init__(self, params, names: Sequence[str]):
        self.params, self.names = list(params), [ms_to_torch_name(n) for n in names]
        self.groups = group_of(names)
        self.slots = {slot: [ms.Parameter(ops.zeros(p.shape, p.dtype), name=f"{slot}.{n}", requires_grad=False)
                             for p, n in zip(self.params, self.names)] for slot in self.SLOTS}
        self.steps = 0  # updates applied, the same for every tensor (torch keeps one count per tensor)

    def state(self) -> Dict[str, Dict[str, np.ndarray]]:
        return {slot: {n: p.asnumpy() for n, p in zip(self.names, params)} for slot, params in self.slots.items()}

    def load_state(self, state: Dict[str, Dict[str, np.ndarray]], steps: int) -> None:
        for slot, params in self.slots.items():
            saved = state.get(slot, {})
            for name, param in zip(self.names, params):
                assign(param, saved[name] if name in saved else np.zeros(param.shape, np.float32))
        self.steps = steps

    def step(self, grads, rates: Sequence[float]) -> None:
        self.steps += 1
        self._update(grads, [scalar(r) for r in rates])

    def _update(self, grads, rates) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """torch's SGD with momentum, no dampening, no Nesterov (weight decay comes with the gradients). A zero
    buffer is torch's "no buffer yet": ``0 * momentum + g = g``, torch's first update."""

    SLOTS = ("momentum_buffer",)

    def __init__(self, params, names: Sequence[str], momentum: float = 0.9):
        super().__init__(params, names)
        self.momentum = scalar(momentum)
        self._apply = ops.ApplyMomentum()

    def _update(self, grads, rates) -> None:
        for param, buffer, grad, group in zip(self.params, self.slots["momentum_buffer"], grads, self.groups):
            self._apply(param, buffer, rates[group], grad, self.momentum)


class Adam(Optimizer):
    """torch's Adam (L2 weight decay comes with the gradients). MindSpore's kernel divides by
    ``sqrt(v) + eps`` where torch divides by ``sqrt(v) / sqrt(1 - b2^t) + eps``: the same update with
    ``eps * sqrt(1 - b2^t)`` given as MindSpore's epsilon."""

    SLOTS = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, names: Sequence[str], betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, names)
        self.betas, self.eps = betas, eps
        self._apply = ops.Adam()

    def _update(self, grads, rates) -> None:
        (b1, b2), t = self.betas, self.steps
        constants = (scalar(b1 ** t), scalar(b2 ** t))
        betas, eps = (scalar(b1), scalar(b2)), scalar(self.eps * (1 - b2 ** t) ** 0.5)
        for param, m, v, grad, group in zip(self.params, self.slots["exp_avg"], self.slots["exp_avg_sq"], grads,
                                            self.groups):
            self._apply(param, m, v, *constants, rates[group], *betas, eps, grad)


def poly_rate(lr: float, epoch: int, max_epochs: int, power: float = 0.9) -> float:
    """Upstream's schedule ``lr * (1 - epoch / max_epochs) ** 0.9``; 0 past the last epoch (upstream's
    formula would turn NaN there)."""
    return lr * max(1.0 - epoch / max_epochs, 0.0) ** power


class TrainStep:
    """Upstream's optimisation step on MindSpore tensors, outside Lightning (the parity command, the probes):
    loss and gradients compiled, SGD with momentum and weight decay on every trained tensor, the backbone
    (``pretrained.*``) at ``lr`` and the decoder (``scratch.*``) at ``10 * lr``, decayed per epoch of
    ``steps_per_epoch`` updates. With ``accumulate > 1`` the gradients of ``accumulate`` micro-batches, each
    scaled by ``1 / accumulate``, make one update, as Lightning's ``accumulate_grad_batches`` does.
    (Under Lightning, ``lang_seg.modules.bridge`` drives the same parts.)"""

    def __init__(self, net, lr: float, steps_per_epoch: int, max_epochs: int, momentum: float = 0.9,
                 weight_decay: float = 1e-4, accumulate: int = 1, mode: str = "graph"):
        self.net, self.lr = net, lr
        self.steps_per_epoch, self.max_epochs = steps_per_epoch, max_epochs
        self.weight_decay, self.accumulate = weight_decay, accumulate
        self.loss_and_grad = LossAndGrad(net, mode=mode)
        self.optimizer = SGD(self.loss_and_grad.params, self.loss_and_grad.names, momentum)
        self.micro_step = 0
        self._sums: Optional[list] = None

    @property
    def global_step(self) -> int:
        return self.optimizer.steps

    def learning_rates(self) -> List[float]:
        """Each group's rate for the next update."""
        rate = poly_rate(self.lr, self.global_step // self.steps_per_epoch, self.max_epochs)
        return [rate, 10 * rate]

    def __call__(self, images, target, text_features, last: bool = False):
        """One micro-batch: ``(loss, pred, stepped)``. ``last``: the epoch's last micro-batch (an accumulated
        update is applied there, as Lightning does)."""
        first = self.micro_step == 0
        loss, pred, grads = self.loss_and_grad(images, target, text_features, 1.0 / self.accumulate,
                                               self.weight_decay if first else 0.0)
        self._sums = list(grads) if first else [s + g for s, g in zip(self._sums, grads)]
        self.micro_step += 1
        if self.micro_step < self.accumulate and not last:
            return loss, pred, False
        self.optimizer.step(self._sums, self.learning_rates())
        self.micro_step, self._sums = 0, None
        return loss, pred, True

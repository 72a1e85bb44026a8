"""Compiled MindSpore loss + gradients for LSeg training (what the Lightning bridge drives)."""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from ..convert import ms_to_torch_name
from .mindspore_backend import compiler, named_parameters

IGNORE_INDEX = -1
# upstream's optimizer holds these; the CLIP text tower stays frozen
TRAINABLE_PREFIXES = ("pretrained.", "scratch.")
# never reached by the forward (the deepest fusion block has no skip input): torch leaves
# their gradient None and SGD skips them, so they are not trained here either
UNREACHED_PREFIXES = ("scratch.refinenet4.resConfUnit1.",)


def trainable_parameters(net) -> List[object]:
    return [
        p
        for name, p in named_parameters(net)
        if name.startswith(TRAINABLE_PREFIXES) and not name.startswith(UNREACHED_PREFIXES) and p.requires_grad
    ]


def parameter_names(net) -> Dict[int, str]:
    return {id(p): name for name, p in named_parameters(net)}


class LossAndGrad:
    """``(images, target, text_features) -> (loss, out, grads)`` compiled once per input shape.

    ``images``: float32 ``(N, 3, H, W)``; ``target``: int32 ``(N, H, W)`` with ``-1``
    for ignored pixels. BatchNorm runs in training mode and updates its statistics.
    """

    def __init__(self, net, mode: str = "graph"):
        import mindspore as ms
        from mindspore import ops

        self.net = net
        self.params = trainable_parameters(net)
        names = parameter_names(net)
        self.names = [names[id(p)] for p in self.params]

        def forward(x, target, text_features):
            out = net(x, text_features)
            return ops.cross_entropy(out, target, ignore_index=IGNORE_INDEX), out

        grad_fn = ms.value_and_grad(forward, None, self.params, has_aux=True)
        self._fn = compiler(mode)(grad_fn)

    def __call__(self, images, target, text_features):
        self.net.set_train(True)
        (loss, out), grads = self._fn(images, target, text_features)
        return loss, out, grads

    def numpy_grads(self, grads) -> Dict[str, np.ndarray]:
        """Gradients as numpy arrays under torch parameter names."""
        return {ms_to_torch_name(name): g.asnumpy() for name, g in zip(self.names, grads)}

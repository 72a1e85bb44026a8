"""Upstream's loss, ``F.cross_entropy(out, target, ignore_index=-1)``, for MindSpore graphs on CPU.

Value: the mean over the pixels whose target is not ``-1`` of ``-log_softmax(out)[target]`` (NaN when every
pixel is ignored, as torch). Gradient: ``(softmax(out) - onehot(target)) / count`` on those pixels, 0 on the
ignored ones (0 everywhere when all are, as torch).

Why not ``ops.cross_entropy``: in a compiled CPU graph every binary operation whose inputs differ in shape
(``x - max``, ``x * mask``) keeps two 8-byte index tables per output element for the life of the graph, 4x the
float32 tensor (``modules/models_ms/table_free.py``). ``ops.cross_entropy`` and its gradient build several at
full resolution: a (2, 150, 240, 240) -> 480 upsampling + loss held +5.1 GB after the step, this loss +1.3 GB,
torch +0.34 GB. Here the forward is ``log_softmax`` (one fused kernel), a gather and sums over equal shapes.

The gradient is written out (``bprop``): softmax times each pixel's weight, then minus the weight at its
target (a scatter, so no one-hot tensor: 282 MB of pool at 240 against 413 MB with one). MindSpore's own
gradient of the forward (``LogSoftmaxGrad``) holds 66 MB less there but is less exact: its per-pixel sum over
the labels, 0 in exact arithmetic, is off by 3.6e-6 of the pixel's weight against 2.1e-7 here (logits of
spread 10), and the ``arch_option=1`` head, which adds each pixel's max over the labels, carries that sum into
every gradient of the net (0.8 % off float64, the parity tolerance is 0.2 %).
"""
from __future__ import annotations

from mindspore import nn, ops

from lang_seg.modules.models_ms.table_free import expand

IGNORE_INDEX = -1


class CrossEntropy(nn.Cell):
    """``(out (N, C, H, W) float32, target (N, H, W) int32) -> scalar``, torch's ``ignore_index=-1`` mean.
    ``bprop`` uses primitives only (see ``table_free`` for why)."""

    def __init__(self):
        super().__init__()
        self.softmax = ops.Softmax(axis=1)
        self.subtract_at_target = ops.TensorScatterElements(axis=1, reduction="add")
        self.total = ops.ReduceSum()

    def construct(self, out, target):
        valid = target != IGNORE_INDEX
        index = (target * valid.astype(target.dtype)).expand_dims(1)  # ignored pixels pick class 0, weighted 0
        picked = ops.gather_elements(ops.log_softmax(out, axis=1), 1, index).squeeze(1)
        weight = valid.astype(out.dtype)
        # the same sum and count as torch's; 0 / 0 = NaN when every pixel is ignored
        return -(picked * weight).sum() / weight.sum()

    def bprop(self, out, target, loss, dout):
        valid = ops.NotEqual()(target, IGNORE_INDEX)
        index = ops.ExpandDims()(target * ops.Cast()(valid, target.dtype), 1)
        weight = ops.Cast()(valid, out.dtype)
        count = ops.Maximum()(self.total(weight), 1.0)  # all ignored: every weight is 0, so is the gradient
        weight = ops.ExpandDims()(weight * (dout / count), 1)
        # softmax * w everywhere, then -w at each pixel's target: no one-hot tensor (3 full-size tensors at the
        # gradient's peak, 4 with one)
        grad = self.softmax(out) * expand(weight, out.shape)
        return self.subtract_at_target(grad, index, ops.Neg()(weight)), ops.ZerosLike()(target)


def cross_entropy(out, target):
    """Functional form for ``LossAndGrad``: one ``CrossEntropy`` cell per call site is not needed (it has no
    parameters), so a module-level instance serves every graph."""
    return _CROSS_ENTROPY(out, target)


_CROSS_ENTROPY = CrossEntropy()

"""Upstream's loss, ``F.cross_entropy(out, target, ignore_index=-1)``, for MindSpore graphs on CPU.

Value: the mean over the pixels whose target is not ``-1`` of ``-log_softmax(out)[target]`` (NaN when every
pixel is ignored, as torch). Gradient: ``(softmax(out) - onehot(target)) / count`` on those pixels, 0 on the
ignored ones (0 everywhere when all are, as torch).

Why not ``ops.cross_entropy``: in a compiled CPU graph every binary operation whose inputs differ in shape
(``x - max``, ``x * mask``) keeps two 8-byte index tables per output element for the life of the graph, 4x
the float32 tensor (``modules/models_ms/table_free.py``). ``ops.cross_entropy`` and its gradient build several
at full resolution: a (2, 150, 240, 240) -> 480 upsampling + loss held +5.1 GB after the step, torch +0.34 GB.
Here every operation on a full-size tensor is ``log_softmax`` (one fused kernel), a gather or works on equal
shapes, and MindSpore's own gradient of that is table-free too: the same upsampling + loss holds +1.05 GB.
(A written-out gradient, ``softmax - onehot`` or softmax then a scatter at the targets, held 0.2-0.5 GB more
at 240: it recomputes the softmax where this reuses ``log_softmax``'s saved output.)
"""
from __future__ import annotations

from mindspore import ops

IGNORE_INDEX = -1


def cross_entropy(out, target):
    """``out (N, C, H, W)`` float32 logits, ``target (N, H, W)`` int32 classes or ``-1`` -> scalar."""
    valid = target != IGNORE_INDEX
    index = (target * valid.astype(target.dtype)).expand_dims(1)  # ignored pixels pick class 0, weighted 0
    picked = ops.gather_elements(ops.log_softmax(out, axis=1), 1, index).squeeze(1)
    weight = valid.astype(out.dtype)
    count = weight.sum()
    # sum / count as torch; dividing by max(count, 1) keeps the gradient 0 (not 0 * inf = NaN) when every pixel
    # is ignored, and the added NaN gives that case torch's value
    empty = ops.select(count > 0, ops.zeros_like(count), ops.fill(count.dtype, (), float("nan")))
    return -(picked * weight).sum() / ops.maximum(count, 1.0) + empty

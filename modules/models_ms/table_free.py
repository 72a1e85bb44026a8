"""Operations written so that MindSpore's compiled CPU graphs keep no per-element index tables.

MindSpore 2.10's CPU kernels precompute index tables when a graph is built and keep them as long as the graph
lives (measured with ``scripts/ms_memory_account.py``, each on a 256 MB float32 output):
- a binary operation whose inputs differ in shape (``x * s``, ``x + bias``, ``x - max``): two tables of
  8 bytes per output element, +1.0 GB;
- ``Div`` (Python's ``/``) even on equal shapes or by a scalar: the same +1.0 GB; ``RealDiv`` on equal
  shapes: none;
- ``Transpose`` with a constant permutation: one table of 8 bytes per element, +0.5 GB;
- the gradients MindSpore derives for ``softmax`` and for a norm-division carry such operations too.
``broadcast_to`` itself keeps nothing, and neither do ``Mul``/``Add`` on equal shapes or by a scalar. So the
operations below broadcast explicitly, divide with ``RealDiv``, and give ``softmax`` and the unit
normalisation a hand-written gradient (``bprop``) built the same way. Values are torch's: the same formulas in
the same order. The ``bprop`` methods call primitives, not ``ops.*`` functions: MindSpore 2.10 fails to compile
("The func graph is empty") a ``bprop`` that calls a function the forward graph also calls.
"""
from __future__ import annotations

from mindspore import nn, ops

_real_div = ops.RealDiv()
_reciprocal = ops.Reciprocal()
_sqrt = ops.Sqrt()
_sum_keep = ops.ReduceSum(keep_dims=True)


def expand(x, shape):
    """``x`` broadcast to ``shape`` (the primitive, usable in forward and ``bprop`` alike)."""
    return ops.BroadcastTo(shape)(x)


def divide(a, b):
    """``a / b`` with ``b`` broadcast to ``a``'s shape first (``RealDiv``, no tables)."""
    return _real_div(a, expand(b, a.shape))


def _norm(x, axis: int):
    return _sqrt(_sum_keep(x * x, axis))


class UnitNormalize(nn.Cell):
    """``x / ||x||`` along ``axis`` (torch's ``x / x.norm(dim=axis, keepdim=True)``)."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def construct(self, x):
        return divide(x, _norm(x, self.axis))

    def bprop(self, x, out, dout):
        # d(x / n) = (dout - out * <dout, out>) / n, as a product with 1 / n: dividing by the broadcast norm
        # again would be merged with the forward's (common subexpressions) and keep that full-size tensor alive
        # from the forward to here (112 MB at 480x480)
        dot = expand(_sum_keep(dout * out, self.axis), x.shape)
        return ((dout - out * dot) * expand(_reciprocal(_norm(x, self.axis)), x.shape),)


class Softmax(nn.Cell):
    """``softmax`` along ``axis`` (one fused kernel) with the gradient ``(dout - <dout, out>) * out``."""

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis
        self.softmax = ops.Softmax(axis)

    def construct(self, x):
        return self.softmax(x)

    def bprop(self, x, out, dout):
        dot = expand(_sum_keep(dout * out, self.axis), x.shape)
        return ((dout - dot) * out,)


SQRT1_2 = 0.7071067811865476  # torch's M_SQRT1_2


class GELU(nn.Cell):
    """Exact GELU as torch computes it, ``x * 0.5 * (1 + erf(x * M_SQRT1_2))``: MindSpore's
    ``nn.GELU(approximate=False)`` divides by sqrt(2) (a ``Div``, which keeps tables)."""

    def construct(self, x):
        return x * 0.5 * (1.0 + ops.erf(x * SQRT1_2))

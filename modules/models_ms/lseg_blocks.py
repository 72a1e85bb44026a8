"""DPT decoder blocks of LSeg (MindSpore port of ``modules/models/lseg_blocks.py``)."""
from __future__ import annotations

from typing import Sequence

from mindspore import nn, ops

from .onednn_conv import Conv2d


def conv3x3(cin: int, cout: int, bias: bool) -> nn.Conv2d:
    # oneDNN's direct kernels where this process has them (onednn_conv): no im2col buffer held per convolution
    return Conv2d(cin, cout, 3, stride=1, pad_mode="pad", padding=1, has_bias=bias)


def upsample2x(x):
    # torch's scale_factor=2 with align_corners=True equals an explicit output size
    return ops.interpolate(x, size=(x.shape[2] * 2, x.shape[3] * 2), mode="bilinear", align_corners=True)


class Interpolate(nn.Cell):
    """x2 bilinear upsampling with aligned corners (the only use LSeg makes of it)."""

    def construct(self, x):
        return upsample2x(x)


class ResidualConvUnit_custom(nn.Cell):
    def __init__(self, features: int, bn: bool):
        super().__init__()
        self.bn = bn
        self.conv1 = conv3x3(features, features, not bn)
        self.conv2 = conv3x3(features, features, not bn)
        if bn:
            self.bn1 = nn.BatchNorm2d(features, eps=1e-5, momentum=0.9)
            self.bn2 = nn.BatchNorm2d(features, eps=1e-5, momentum=0.9)
        self.activation = nn.ReLU()

    def construct(self, x):
        out = self.conv1(self.activation(x))
        if self.bn:
            out = self.bn1(out)
        out = self.conv2(self.activation(out))
        if self.bn:
            out = self.bn2(out)
        return out + x


class FeatureFusionBlock_custom(nn.Cell):
    def __init__(self, features: int, bn: bool):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1, pad_mode="valid", has_bias=True)
        self.resConfUnit1 = ResidualConvUnit_custom(features, bn)
        self.resConfUnit2 = ResidualConvUnit_custom(features, bn)

    def construct(self, x, skip):
        x = x + self.resConfUnit1(skip)
        return self.out_conv(upsample2x(self.resConfUnit2(x)))

    def first(self, x):
        """The deepest block, which has no skip connection."""
        return self.out_conv(upsample2x(self.resConfUnit2(x)))


class Scratch(nn.Cell):
    """``scratch``: the four 3x3 projections; the fusion blocks and head are set by LSegNet."""

    def __init__(self, in_shape: Sequence[int], out_shape: int):
        super().__init__()
        self.layer1_rn = conv3x3(in_shape[0], out_shape, False)
        self.layer2_rn = conv3x3(in_shape[1], out_shape, False)
        self.layer3_rn = conv3x3(in_shape[2], out_shape, False)
        self.layer4_rn = conv3x3(in_shape[3], out_shape, False)


def make_activation(name: str) -> nn.Cell:
    # torch LeakyReLU's default slope is 0.01 (MindSpore's is 0.2)
    return {"relu": lambda: nn.ReLU(), "lrelu": lambda: nn.LeakyReLU(0.01), "tanh": lambda: nn.Tanh()}[name]()


class depthwise_conv(nn.Cell):
    """One 3x3 conv (1 -> 1 channel) applied to every channel map alike."""

    def __init__(self):
        super().__init__()
        self.depthwise = conv3x3(1, 1, True)

    def construct(self, x):
        n, c, h, w = x.shape
        return self.depthwise(x.reshape(n * c, 1, h, w)).reshape(n, c, h, w)


class depthwise_block(nn.Cell):
    """``arch_option=2`` spatial block on the logits."""

    def __init__(self, activation: str = "relu"):
        super().__init__()
        self.depthwise = depthwise_conv()
        self.activation = make_activation(activation)

    def construct(self, x, act: bool = True):
        x = self.depthwise(x)
        if act:
            x = self.activation(x)
        return x


class bottleneck_block(depthwise_block):
    """``arch_option=1``: depthwise conv plus the per-pixel max over labels."""

    def construct(self, x, act: bool = True):
        # the per-pixel max broadcast explicitly: a broadcasting add keeps index tables (``table_free``)
        x = self.depthwise(x) + ops.broadcast_to(x.max(axis=1, keepdims=True), x.shape)
        if act:
            x = self.activation(x)
        return x

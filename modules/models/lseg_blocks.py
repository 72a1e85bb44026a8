"""DPT decoder blocks of LSeg (torch reference): ``scratch.layerN_rn`` and ``scratch.refinenetN``."""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn
import torch.nn.functional as F


class Interpolate(nn.Module):
    def __init__(self, scale_factor: float, mode: str, align_corners: bool = False):
        super().__init__()
        self.scale_factor = scale_factor
        self.mode = mode
        self.align_corners = align_corners

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode, align_corners=self.align_corners)


class ResidualConvUnit_custom(nn.Module):
    """act -> conv3x3 (-> BN) -> act -> conv3x3 (-> BN), plus the input."""

    def __init__(self, features: int, activation: nn.Module, bn: bool):
        super().__init__()
        self.bn = bn
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=not bn)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=not bn)
        if bn:
            self.bn1 = nn.BatchNorm2d(features)
            self.bn2 = nn.BatchNorm2d(features)
        self.activation = activation

    def forward(self, x):
        out = self.conv1(self.activation(x))
        if self.bn:
            out = self.bn1(out)
        out = self.conv2(self.activation(out))
        if self.bn:
            out = self.bn2(out)
        return out + x


class FeatureFusionBlock_custom(nn.Module):
    """Fuse a skip connection into the running path, upsample x2, project with a 1x1 conv."""

    def __init__(self, features: int, activation: nn.Module, bn: bool = False, align_corners: bool = True):
        super().__init__()
        self.align_corners = align_corners
        self.out_conv = nn.Conv2d(features, features, kernel_size=1, stride=1, padding=0, bias=True)
        self.resConfUnit1 = ResidualConvUnit_custom(features, activation, bn)
        self.resConfUnit2 = ResidualConvUnit_custom(features, activation, bn)

    def forward(self, x, skip=None):
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=self.align_corners)
        return self.out_conv(x)


def make_fusion_block(features: int, use_bn: bool) -> FeatureFusionBlock_custom:
    return FeatureFusionBlock_custom(features, nn.ReLU(False), bn=use_bn, align_corners=True)


def make_scratch(in_shape: Sequence[int], out_shape: int) -> nn.Module:
    """The four 3x3 convs that bring every reassembled map to ``out_shape`` channels."""
    scratch = nn.Module()
    for i, channels in enumerate(in_shape, start=1):
        setattr(
            scratch,
            f"layer{i}_rn",
            nn.Conv2d(channels, out_shape, kernel_size=3, stride=1, padding=1, bias=False),
        )
    return scratch


def make_activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "lrelu": nn.LeakyReLU, "tanh": nn.Tanh}[name]()


class depthwise_conv(nn.Module):
    """One 3x3 conv (1 -> 1 channel) applied to every channel map alike."""

    def __init__(self, kernel_size: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.depthwise = nn.Conv2d(1, 1, kernel_size=kernel_size, stride=stride, padding=padding)

    def forward(self, x):
        channels, height, width = x.shape[1:]
        x = self.depthwise(x.reshape(-1, 1, height, width))
        return x.view(-1, channels, x.shape[2], x.shape[3])


class depthwise_block(nn.Module):
    """``arch_option=2`` spatial block on the logits."""

    def __init__(self, activation: str = "relu"):
        super().__init__()
        self.depthwise = depthwise_conv(kernel_size=3, stride=1, padding=1)
        self.activation = make_activation(activation)

    def forward(self, x, act: bool = True):
        x = self.depthwise(x)
        return self.activation(x) if act else x


class bottleneck_block(depthwise_block):
    """``arch_option=1`` spatial block: depthwise conv plus the per-pixel max over labels."""

    def forward(self, x, act: bool = True):
        sum_layer = x.max(dim=1, keepdim=True)[0]
        x = self.depthwise(x) + sum_layer
        return self.activation(x) if act else x

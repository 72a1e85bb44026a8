"""ResNet image trunk of upstream's zero-shot LSegRNNetZS (torch reference).

Upstream builds torchvision's ``resnet101`` and regroups it as ``pretrained``
(``_make_resnet_backbone``): ``layer1`` = the stem (``conv1``, ``bn1``, ReLU,
3x3 max-pool of stride 2) followed by torchvision's ``layer1``; ``layer2..4``
are torchvision's stages. The four stage outputs (strides 4, 8, 16, 32) feed the
DPT decoder. Blocks here carry torchvision's names (``conv1..3``, ``bn1..3``,
``downsample.0/1``; stride on the 3x3 conv, "ResNet v1.5"), so upstream's
checkpoints and torchvision's ImageNet weights load one-to-one; widths and
block counts come from ``lang_seg.config.ResNetConfig`` (torchvision's own class
fixes the stem at 64 channels, which the tiny layout narrows).
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn as nn

from lang_seg.config import BOTTLENECK_EXPANSION as EXPANSION
from lang_seg.config import ResNetConfig


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 convolutions with BatchNorm, plus the (projected) input, then ReLU."""

    def __init__(self, inplanes: int, width: int, stride: int = 1):
        super().__init__()
        out = width * EXPANSION
        self.conv1 = nn.Conv2d(inplanes, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def make_stage(inplanes: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [Bottleneck(inplanes, width, stride)]
    layers += [Bottleneck(width * EXPANSION, width) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNetBackbone(nn.Module):
    """``pretrained`` of LSegRNNetZS: returns the four stage outputs."""

    def __init__(self, config: ResNetConfig, pretrained: bool = False):
        super().__init__()
        stem = config.stem_width
        inplanes = [stem] + [w * EXPANSION for w in config.widths[:3]]
        stages = [make_stage(i, w, n, 1 if k == 0 else 2)
                  for k, (i, w, n) in enumerate(zip(inplanes, config.widths, config.blocks))]
        self.layer1 = nn.Sequential(
            nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            stages[0],
        )
        self.layer2, self.layer3, self.layer4 = stages[1:]
        self.reset_parameters()
        if pretrained:
            from lang_seg.weights import load_torchvision_pretrained

            self.load_torchvision(load_torchvision_pretrained(config.torchvision_name).state_dict())

    def reset_parameters(self) -> None:
        # torchvision's ResNet initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def load_torchvision(self, state) -> None:
        """torchvision's ResNet state (its classifier ``fc`` left out), renamed as upstream regroups it."""
        stem = {"conv1.": "layer1.0.", "bn1.": "layer1.1.", "layer1.": "layer1.4."}
        renamed = {}
        for key, value in state.items():
            if key.startswith("fc."):
                continue
            for old, new in stem.items():
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
            renamed[key] = value
        self.load_state_dict(renamed, strict=True)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        layer_1 = self.layer1(x)
        layer_2 = self.layer2(layer_1)
        layer_3 = self.layer3(layer_2)
        return [layer_1, layer_2, layer_3, self.layer4(layer_3)]

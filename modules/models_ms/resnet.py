"""ResNet image trunk of LSegRNNetZS (MindSpore port of ``modules/models/resnet.py``).

Same cell paths as the torch reference and torchvision (``layer1.0`` the stem
convolution, ``layer1.4.N.conv1``, ``layerK.N.downsample.0/1``); BatchNorm
``gamma/beta/moving_mean/moving_variance`` are the only renames. Convolutions
take ``pad_mode="pad"`` with torch's padding and no bias; the stem's max-pool
pads with -inf as torch's does (``pad_mode="pad"``: MindSpore's ``"same"`` would
shift its windows by one pixel). BatchNorm's ``momentum=0.9`` is torch's 0.1.
Weights start as torchvision's: He-normal convolutions (fan-out, ReLU gain),
BatchNorm scales 1 and shifts 0.
"""
from __future__ import annotations

from mindspore import nn
from mindspore.common.initializer import HeNormal

from lang_seg.config import BOTTLENECK_EXPANSION as EXPANSION
from lang_seg.config import ResNetConfig


def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, pad_mode="pad", padding=kernel // 2, has_bias=False,
                     weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)


class Bottleneck(nn.Cell):
    def __init__(self, inplanes: int, width: int, stride: int = 1):
        super().__init__()
        out = width * EXPANSION
        self.conv1 = conv(inplanes, width, 1)
        self.bn1 = batch_norm(width)
        self.conv2 = conv(width, width, 3, stride)
        self.bn2 = batch_norm(width)
        self.conv3 = conv(width, out, 1)
        self.bn3 = batch_norm(out)
        self.relu = nn.ReLU()
        self.has_downsample = stride != 1 or inplanes != out
        if self.has_downsample:
            self.downsample = nn.SequentialCell([conv(inplanes, out, 1, stride), batch_norm(out)])

    def construct(self, x):
        identity = x
        if self.has_downsample:
            identity = self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def make_stage(inplanes: int, width: int, blocks: int, stride: int) -> nn.SequentialCell:
    layers = [Bottleneck(inplanes, width, stride)]
    layers += [Bottleneck(width * EXPANSION, width) for _ in range(1, blocks)]
    return nn.SequentialCell(layers)


class ResNetBackbone(nn.Cell):
    """``pretrained`` of LSegRNNetZS: returns the four stage outputs."""

    def __init__(self, config: ResNetConfig):
        super().__init__()
        stem = config.stem_width
        inplanes = [stem] + [w * EXPANSION for w in config.widths[:3]]
        stages = [make_stage(i, w, n, 1 if k == 0 else 2)
                  for k, (i, w, n) in enumerate(zip(inplanes, config.widths, config.blocks))]
        self.layer1 = nn.SequentialCell([
            conv(3, stem, 7, 2),
            batch_norm(stem),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="pad", padding=1),
            stages[0],
        ])
        self.layer2, self.layer3, self.layer4 = stages[1:]

    def construct(self, x):
        layer_1 = self.layer1(x)
        layer_2 = self.layer2(layer_1)
        layer_3 = self.layer3(layer_2)
        return layer_1, layer_2, layer_3, self.layer4(layer_3)

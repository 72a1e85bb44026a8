"""Upstream's zero-shot networks (MindSpore port of ``modules/models/lseg_net_zs.py``).

``LSegNetZS`` is LSegNet with BatchNorm and no head block on a CLIP ViT;
``LSegRNNetZS`` puts the ResNet trunk (``modules/models_ms/resnet.py``) under the
same ``pretrained`` path, feeding the same decoder and head. Both take text
features like LSegNet: the caller scores each image on its episode's pair
``["others", class]``.
"""
from __future__ import annotations

from mindspore import nn

from lang_seg.config import NetOptions
from lang_seg.errors import LangSegError

from .lseg_net import LSegNet
from .resnet import ResNetBackbone


class LSegNetZS(LSegNet):
    def __init__(self, options: NetOptions):
        if not options.zero_shot:
            raise LangSegError("LSegNetZS takes zero-shot options (zero_shot=True)")
        super().__init__(options)


class LSegRNNetZS(LSegNetZS):
    def image_encoder(self, options: NetOptions) -> nn.Cell:
        return ResNetBackbone(options.config.resnet)


def net_class(options: NetOptions):
    """The MindSpore network class for ``options``: LSegNet, or one of upstream's zero-shot networks."""
    if options.config.resnet is not None:
        return LSegRNNetZS
    return LSegNetZS if options.zero_shot else LSegNet


def build_net(options: NetOptions) -> LSegNet:
    return net_class(options)(options)

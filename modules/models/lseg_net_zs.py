"""Upstream's zero-shot networks (torch reference): ``LSegNetZS`` on the CLIP ViTs, ``LSegRNNetZS`` on a ResNet.

Upstream's ``lseg_net_zs.py`` builds LSeg with BatchNorm in the decoder
(``use_bn`` forced on), no head block (``arch_option`` is stored and never
used), the x2 bilinear output upsampling, and scores each image on its own
two-label episode ``["others", class]``. On a ViT that is LSegNet itself: same
modules, same parameter names (``lseg_vit_zs.py`` and ``lseg_blocks_zs.py`` repeat
``lseg_vit.py`` and ``lseg_blocks.py`` for the ViTs). ``LSegRNNetZS`` swaps the
ViT for torchvision's ResNet (``modules/models/resnet.py``) under the same
``pretrained`` name, its four stages feeding the same decoder. The episode
(per-image label pairs) is the caller's: ``logits(images, ["others", name])``
per class (``lang_seg.fewshot``).
"""
from __future__ import annotations

import torch.nn as nn

from lang_seg.config import NetOptions
from lang_seg.errors import LangSegError

from .lseg_net import LSegNet
from .resnet import ResNetBackbone


class LSegNetZS(LSegNet):
    """Upstream's ``LSegNetZS``: LSegNet with BatchNorm and no head block, on a CLIP ViT."""

    def __init__(self, options: NetOptions, pretrained: bool = False, device: str = "cpu"):
        if not options.zero_shot:
            raise LangSegError("LSegNetZS takes zero-shot options (zero_shot=True)")
        super().__init__(options, pretrained=pretrained, device=device)


class LSegRNNetZS(LSegNetZS):
    """Upstream's ``LSegRNNetZS``: the same decoder and head on torchvision's ResNet (``clip_resnet101``)."""

    def image_encoder(self, options: NetOptions, pretrained: bool) -> nn.Module:
        return ResNetBackbone(options.config.resnet, pretrained=pretrained)


def net_class(options: NetOptions):
    """The torch network class for ``options``: LSegNet, or one of upstream's zero-shot networks."""
    if options.config.resnet is not None:
        return LSegRNNetZS
    return LSegNetZS if options.zero_shot else LSegNet


def build_net(options: NetOptions, pretrained: bool = False, device: str = "cpu") -> LSegNet:
    return net_class(options)(options, pretrained=pretrained, device=device)

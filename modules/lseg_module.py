"""LSeg as a Lightning module: upstream's ``LSegModule``, trained on a fixed label set.

The CLIP text tower is frozen (upstream leaves it out of the optimizer), so the
label set's text features are computed once, not every step as upstream does.
This module trains the torch reference; hyper-parameters are saved under
upstream's flag names, so its checkpoints carry the network options
(``lang_seg.load_model`` reads them).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from lang_seg.config import NetOptions
from lang_seg.labels import ade20k_labels

from .lsegmentation_module import LSegmentationModule
from .models.lseg_net import LSegNet


class LSegModule(LSegmentationModule):
    def __init__(self, backbone: str = "clip_vitl16_384", num_features: int = 256, readout: str = "project",
                 arch_option: int = 0, block_depth: int = 0, activation: str = "lrelu", use_bn: bool = True,
                 labels: Optional[Sequence[str]] = None, pretrained: bool = True, base_lr: float = 0.004,
                 batch_size: int = 1, max_epochs: int = 200, weight_decay: float = 1e-4, momentum: float = 0.9,
                 ignore_index: int = -1):
        labels = list(labels) if labels is not None else ade20k_labels()
        super().__init__(base_lr=base_lr, batch_size=batch_size, max_epochs=max_epochs, weight_decay=weight_decay,
                         momentum=momentum, ignore_index=ignore_index, num_classes=len(labels))
        self.save_hyperparameters()
        self.labels = labels
        self.options = NetOptions(backbone=backbone, features=num_features, readout=readout, use_bn=use_bn,
                                  arch_option=arch_option, block_depth=block_depth, activation=activation)
        self.net = LSegNet(self.options, pretrained=pretrained)
        self.net.clip_pretrained.requires_grad_(False)
        self._text_features: Optional[torch.Tensor] = None

    def text_features(self) -> torch.Tensor:
        if self._text_features is None or self._text_features.device != self.device:
            with torch.no_grad():
                self._text_features = self.net.encode_text(self.labels)
        return self._text_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.text_features())

"""LSegNet (torch reference): ViT + DPT image encoder, CLIP text encoder, cosine-logit head.

Module and parameter names follow upstream lang-seg (``clip_pretrained``,
``pretrained``, ``scratch``), so an upstream Lightning checkpoint's ``net.*``
keys load one-to-one (see ``lang_seg.checkpoint``).
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn as nn

from lang_seg.config import LOGIT_SCALE, STAGES, NetOptions, check_image_size
from lang_seg.errors import LangSegError
from lang_seg.labels import tokenize

from .clip_text import ClipTextEncoder
from .lseg_blocks import (
    Interpolate,
    bottleneck_block,
    depthwise_block,
    make_fusion_block,
    make_scratch,
)
from .lseg_vit import VitBackbone

__all__ = ["LSegNet", "STAGES", "l2_normalize"]


def l2_normalize(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` divided by its L2 norm along ``dim``: what the cosine head compares."""
    return x / x.norm(dim=dim, keepdim=True)


class LSegNet(nn.Module):
    def __init__(self, options: NetOptions = NetOptions(), pretrained: bool = False, device: str = "cpu"):
        super().__init__()
        self.options = options
        config = options.config
        self.out_c = config.text.embed_dim
        self.patch_size = config.patch_size

        self.clip_pretrained = ClipTextEncoder(config.text)
        self.pretrained = self.image_encoder(options, pretrained)
        self.scratch = make_scratch(config.reassemble_features, options.features)
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", make_fusion_block(options.features, options.use_bn))
        self.scratch.head1 = nn.Conv2d(options.features, self.out_c, kernel_size=1)
        if options.arch_option == 1:
            self.scratch.head_block = bottleneck_block(activation=options.activation)
        elif options.arch_option == 2:
            self.scratch.head_block = depthwise_block(activation=options.activation)
        self.scratch.output_conv = nn.Sequential(Interpolate(scale_factor=2, mode="bilinear", align_corners=True))
        self.register_buffer("logit_scale", torch.tensor(LOGIT_SCALE), persistent=False)
        if pretrained:
            from lang_seg.weights import load_clip_text_pretrained

            load_clip_text_pretrained(self.clip_pretrained, config.text.clip_name, device)

    def image_encoder(self, options: NetOptions, pretrained: bool) -> nn.Module:
        """``pretrained``: the module that returns the four maps the decoder fuses (zero-shot nets override it)."""
        if options.config.vit is None:
            raise LangSegError(f"backbone {options.backbone} has no ViT: it exists only as upstream's zero-shot "
                               "LSegRNNetZS (lang_seg.load_model, test_lseg_zs.py)")
        return VitBackbone(options.config, readout=options.readout, pretrained=pretrained)

    # -- text ---------------------------------------------------------------
    def encode_text(self, labels: Sequence[str]) -> torch.Tensor:
        """``(L, out_c)`` CLIP features of the labels (unnormalised)."""
        tokens = tokenize(labels, self.clip_pretrained.context_length).to(self.logit_scale.device)
        return self.clip_pretrained(tokens)

    def text_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(L, context_length)`` CLIP token ids -> ``(L, out_c)`` text features, L2-normalised."""
        return l2_normalize(self.clip_pretrained(tokens), -1)

    # -- image --------------------------------------------------------------
    def cosine_logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """``text_features``: ``(L, C)`` for the whole batch, or ``(N, L, C)``, one label set per image (the
        zero-shot episodes, upstream's ``net(x, class_info)``)."""
        n, _, h, w = image_features.shape
        image = image_features.permute(0, 2, 3, 1).reshape(-1, self.out_c)
        image = l2_normalize(image, -1)
        text = l2_normalize(text_features, -1)
        if text.dim() == 3:  # each image against its own labels: (N, H*W, C) @ (N, C, L)
            image = image.view(n, h * w, self.out_c)
        if self.options.half_logits:
            # upstream's order: cast to fp16, then scale (the scale is rounded to fp16 too), fp16 product
            logits = ((self.logit_scale * image.half()) @ text.half().transpose(-1, -2)).float()
        else:
            logits = (self.logit_scale * image) @ text.transpose(-1, -2)
        return logits.view(n, h, w, -1).permute(0, 3, 1, 2)

    def encode_image(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The image path's stages, ``layer_1`` to ``image_features`` (``(N, out_c, H/2, W/2)``, unnormalised)."""
        check_image_size(x.shape[2], x.shape[3], self.patch_size)
        s = self.scratch
        layers = self.pretrained(x)
        rn = [getattr(s, f"layer{i}_rn")(layer) for i, layer in enumerate(layers, start=1)]
        path_4 = s.refinenet4(rn[3])
        path_3 = s.refinenet3(path_4, rn[2])
        path_2 = s.refinenet2(path_3, rn[1])
        path_1 = s.refinenet1(path_2, rn[0])
        stages = dict(zip(("layer_1", "layer_2", "layer_3", "layer_4"), layers))
        stages.update(path_4=path_4, path_3=path_3, path_2=path_2, path_1=path_1, image_features=s.head1(path_1))
        return stages

    def pixel_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, out_c, H/2, W/2)`` image features, L2-normalised per pixel: the logits are
        ``logit_scale`` times their dot products with ``text_embeddings``, upsampled x2."""
        return l2_normalize(self.encode_image(x)["image_features"], 1)

    def forward_stages(self, x: torch.Tensor, text_features: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Every intermediate the parity checks compare, by name (``lang_seg.config.STAGES``)."""
        s = self.scratch
        stages = self.encode_image(x)
        logits = self.cosine_logits(stages["image_features"], text_features)
        out = logits
        if self.options.arch_option in (1, 2):
            for _ in range(self.options.block_depth - 1):
                out = s.head_block(out)
            out = s.head_block(out, False)
        out = s.output_conv(out)
        stages.update(logits=logits, out=out)
        return stages

    def forward(self, x: torch.Tensor, labels_or_features) -> torch.Tensor:
        """Per-pixel label scores ``(N, L, H, W)``.

        ``labels_or_features``: a list of label strings, or precomputed text
        features ``(L, out_c)`` (what callers that reuse one label set pass), or
        ``(N, L, out_c)``: one label set per image.
        """
        if isinstance(labels_or_features, torch.Tensor):
            text_features = labels_or_features
        else:
            text_features = self.encode_text(labels_or_features)
        return self.forward_stages(x, text_features)["out"]

"""ViT image encoder with DPT reassemble blocks (torch reference).

Same modules and parameter names as upstream lang-seg (``pretrained.model.*`` is a
timm VisionTransformer, ``pretrained.act_postprocessN.*`` the reassemble blocks),
but the four intermediate layers are returned by ``forward`` instead of being
captured by global forward hooks.
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from lang_seg.config import BackboneConfig


class Slice(nn.Module):
    """Readout ``ignore``: drop the class token."""

    def __init__(self, start_index: int = 1):
        super().__init__()
        self.start_index = start_index

    def forward(self, x):
        return x[:, self.start_index:]


class AddReadout(nn.Module):
    """Readout ``add``: add the class token to every patch token."""

    def __init__(self, start_index: int = 1):
        super().__init__()
        self.start_index = start_index

    def forward(self, x):
        readout = x[:, 0]
        return x[:, self.start_index:] + readout.unsqueeze(1)


class ProjectReadout(nn.Module):
    """Readout ``project``: concatenate the class token to each patch token and project back."""

    def __init__(self, in_features: int, start_index: int = 1):
        super().__init__()
        self.start_index = start_index
        self.project = nn.Sequential(nn.Linear(2 * in_features, in_features), nn.GELU())

    def forward(self, x):
        readout = x[:, 0].unsqueeze(1).expand_as(x[:, self.start_index:])
        return self.project(torch.cat((x[:, self.start_index:], readout), -1))


class Transpose(nn.Module):
    def __init__(self, dim0: int, dim1: int):
        super().__init__()
        self.dim0 = dim0
        self.dim1 = dim1

    def forward(self, x):
        return x.transpose(self.dim0, self.dim1)


def make_readout(readout: str, vit_features: int, start_index: int = 1) -> nn.Module:
    if readout == "ignore":
        return Slice(start_index)
    if readout == "add":
        return AddReadout(start_index)
    return ProjectReadout(vit_features, start_index)


def make_resample(channels: int, factor: float) -> List[nn.Module]:
    """The layer after the 1x1 projection that brings a map to its decoder resolution."""
    if factor == 1:
        return []
    if factor < 1:
        return [nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)]
    k = int(factor)
    return [nn.ConvTranspose2d(channels, channels, kernel_size=k, stride=k, padding=0, bias=True)]


def make_timm_vit(config: BackboneConfig, pretrained: bool = False) -> VisionTransformer:
    """The timm ViT upstream uses; ``pretrained`` loads timm's weights (network or HF cache)."""
    vit = config.vit
    if pretrained:
        from lang_seg.weights import load_timm_pretrained

        return load_timm_pretrained(vit.timm_name)
    return VisionTransformer(
        img_size=vit.img_size,
        patch_size=vit.patch_size,
        embed_dim=vit.embed_dim,
        depth=vit.depth,
        num_heads=vit.num_heads,
        mlp_ratio=vit.mlp_ratio,
        qkv_bias=True,
    )


def resize_pos_embed(pos_embed: torch.Tensor, grid_h: int, grid_w: int, start_index: int = 1) -> torch.Tensor:
    """The patch position embeddings resized to a ``grid_h x grid_w`` grid as upstream does (bilinear, no
    antialiasing, corners not aligned): timm's own resampler, equal to upstream's to the last bit."""
    return resample_abs_pos_embed(pos_embed, new_size=[grid_h, grid_w], num_prefix_tokens=start_index,
                                  interpolation="bilinear", antialias=False)


class VitBackbone(nn.Module):
    """``pretrained`` in upstream's LSeg: the timm ViT plus the four reassemble blocks."""

    start_index = 1

    def __init__(self, config: BackboneConfig, readout: str = "project", pretrained: bool = False):
        super().__init__()
        self.hooks = tuple(config.hooks)
        self.patch_size = config.vit.patch_size
        self.model = make_timm_vit(config, pretrained)
        vit_features = config.vit.embed_dim
        grid = config.vit.img_size // self.patch_size
        for i, (channels, factor) in enumerate(zip(config.reassemble_features, config.resample), start=1):
            blocks = [
                make_readout(readout, vit_features, self.start_index),
                Transpose(1, 2),
                # Kept so that the conv indices (3, 4) match upstream's keys; forward
                # unflattens to the actual input grid instead.
                nn.Unflatten(2, torch.Size([grid, grid])),
                nn.Conv2d(vit_features, channels, kernel_size=1, stride=1, padding=0),
                *make_resample(channels, factor),
            ]
            setattr(self, f"act_postprocess{i}", nn.Sequential(*blocks))

    def forward_tokens(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Token sequences ``(B, 1 + h*w, C)`` after each hooked block."""
        model = self.model
        grid_h, grid_w = x.shape[2] // self.patch_size, x.shape[3] // self.patch_size
        pos_embed = resize_pos_embed(model.pos_embed, grid_h, grid_w, self.start_index)
        x = model.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat((model.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = model.pos_drop(x + pos_embed)
        outputs = []
        for index, block in enumerate(model.blocks[: self.hooks[-1] + 1]):
            x = block(x)
            if index in self.hooks:
                outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The four reassembled feature maps (upstream's ``forward_vit``)."""
        grid = (x.shape[2] // self.patch_size, x.shape[3] // self.patch_size)
        layers = []
        for i, tokens in enumerate(self.forward_tokens(x), start=1):
            post = getattr(self, f"act_postprocess{i}")
            t = post[1](post[0](tokens)).unflatten(2, grid)
            layers.append(post[3:](t))
        return layers

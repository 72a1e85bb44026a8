"""Network configurations as data.

Each backbone names the timm ViT and the OpenAI CLIP text tower upstream
lang-seg builds, the ViT blocks whose outputs feed the DPT decoder, and how each
of the four reassembled maps is resampled to its decoder resolution
(``resample``: 8, 4, 2 = transposed conv of that stride, 1 = none,
0.5 = 3x3 conv of stride 2).  The ``tiny_*`` entries are the same
architectures, narrower and shallower, so tests run in seconds.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Dict, Optional, Tuple

import numpy as np

from .errors import LangSegError

BACKENDS = ("torch", "mindspore")

# What ``forward_stages`` returns on both backends (the parity checks compare them by name), in forward order.
STAGES = (
    "layer_1", "layer_2", "layer_3", "layer_4",
    "path_4", "path_3", "path_2", "path_1",
    "image_features", "logits", "out",
)

CONTEXT_LENGTH = 77  # CLIP's text context, start and end tokens included

# exp(log(1/0.07)) in float32, as upstream computes it; a constant (upstream never optimises it)
LOGIT_SCALE = float(np.exp(np.float32(np.log(1 / 0.07)), dtype=np.float32))


@dataclass(frozen=True)
class VitConfig:
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    img_size: int = 384
    mlp_ratio: float = 4.0
    timm_name: Optional[str] = None  # timm model name for pretrained weights


@dataclass(frozen=True)
class TextConfig:
    width: int
    layers: int
    heads: int
    embed_dim: int  # CLIP joint embedding size = LSeg head output channels
    context_length: int = CONTEXT_LENGTH
    vocab_size: int = 49408
    clip_name: Optional[str] = None  # clip.load name for pretrained weights


@dataclass(frozen=True)
class BackboneConfig:
    name: str
    vit: VitConfig
    text: TextConfig
    hooks: Tuple[int, int, int, int]
    reassemble_features: Tuple[int, int, int, int]
    resample: Tuple[float, float, float, float]


_VIT_B32 = VitConfig(patch_size=32, embed_dim=768, depth=12, num_heads=12, timm_name="vit_base_patch32_384")
_VIT_L16 = VitConfig(patch_size=16, embed_dim=1024, depth=24, num_heads=16, timm_name="vit_large_patch16_384")
_TEXT_VITB32 = TextConfig(width=512, layers=12, heads=8, embed_dim=512, clip_name="ViT-B/32")
_TEXT_RN50X16 = TextConfig(width=768, layers=12, heads=12, embed_dim=768, clip_name="RN50x16")

BACKBONES: Dict[str, BackboneConfig] = {
    "clip_vitl16_384": BackboneConfig(
        "clip_vitl16_384", _VIT_L16, _TEXT_VITB32, (5, 11, 17, 23), (256, 512, 1024, 1024), (4, 2, 1, 0.5)
    ),
    "clipRN50x16_vitl16_384": BackboneConfig(
        "clipRN50x16_vitl16_384", _VIT_L16, _TEXT_RN50X16, (5, 11, 17, 23), (256, 512, 1024, 1024), (4, 2, 1, 0.5)
    ),
    "clip_vitb32_384": BackboneConfig(
        "clip_vitb32_384", _VIT_B32, _TEXT_VITB32, (2, 5, 8, 11), (96, 192, 384, 768), (8, 4, 2, 1)
    ),
    # Small versions of the same two layouts, for tests and the bundled default run.
    "tiny_vitb32": BackboneConfig(
        "tiny_vitb32",
        VitConfig(patch_size=32, embed_dim=64, depth=4, num_heads=2, img_size=128),
        TextConfig(width=32, layers=2, heads=2, embed_dim=512),
        (0, 1, 2, 3),
        (8, 16, 32, 64),
        (8, 4, 2, 1),
    ),
    "tiny_vitl16": BackboneConfig(
        "tiny_vitl16",
        VitConfig(patch_size=16, embed_dim=48, depth=4, num_heads=2, img_size=64),
        TextConfig(width=32, layers=2, heads=4, embed_dim=40),
        (0, 1, 2, 3),
        (8, 16, 32, 32),
        (4, 2, 1, 0.5),
    ),
}

def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise LangSegError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    return backend


def check_image_size(height: int, width: int, patch_size: int) -> None:
    """Both nets take images whose sides are multiples of the ViT's patch size."""
    if height <= 0 or width <= 0 or height % patch_size or width % patch_size:
        fit = [max(patch_size, round(side / patch_size) * patch_size) for side in (height, width)]
        raise LangSegError(
            f"image size {height}x{width} is not a multiple of the patch size {patch_size}: "
            f"resize or pad it to e.g. {fit[0]}x{fit[1]}"
        )


READOUTS = ("ignore", "add", "project")
ACTIVATIONS = ("relu", "lrelu", "tanh")
ARCH_OPTIONS = (0, 1, 2)


@dataclass(frozen=True)
class NetOptions:
    """Everything that fixes the LSegNet architecture (and so a checkpoint's keys and shapes)."""

    backbone: str = "clip_vitl16_384"
    features: int = 256
    readout: str = "project"
    use_bn: bool = True
    arch_option: int = 0
    block_depth: int = 0
    activation: str = "lrelu"
    # Upstream casts image features to fp16 before the cosine product (its CLIP runs in
    # fp16 on CUDA). Off by default: fp32 logits.
    half_logits: bool = False

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise LangSegError(
                f"unknown backbone '{self.backbone}': choose one of {', '.join(BACKBONES)}"
            )
        if self.readout not in READOUTS:
            raise LangSegError(f"unknown readout '{self.readout}': choose one of {', '.join(READOUTS)}")
        if self.activation not in ACTIVATIONS:
            raise LangSegError(
                f"unknown activation '{self.activation}': choose one of {', '.join(ACTIVATIONS)}"
            )
        if self.arch_option not in ARCH_OPTIONS:
            raise LangSegError(f"unknown arch_option {self.arch_option}: choose 0, 1 or 2")
        if self.arch_option in (1, 2) and self.block_depth < 1:
            raise LangSegError(
                f"arch_option {self.arch_option} needs block_depth >= 1 (got {self.block_depth})"
            )
        if self.features < 1:
            raise LangSegError(f"features must be positive (got {self.features})")

    @property
    def config(self) -> BackboneConfig:
        return BACKBONES[self.backbone]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "NetOptions":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})

    def replace(self, **changes) -> "NetOptions":
        return replace(self, **changes)

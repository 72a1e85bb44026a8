"""Network configurations as data.

Each backbone names the timm ViT and the OpenAI CLIP text tower upstream
lang-seg builds, the ViT blocks whose outputs feed the DPT decoder, and how each
of the four reassembled maps is resampled to its decoder resolution
(``resample``: 8, 4, 2 = transposed conv of that stride, 1 = none,
0.5 = 3x3 conv of stride 2).  ``clip_resnet101`` is upstream's zero-shot
layout: torchvision's ResNet-101 as the image trunk (its four stages feed the
decoder) with CLIP ViT-B/32's text tower, on ImageNet-normalised images.
The ``tiny_*`` entries are the same architectures, narrower and shallower, so
tests run in seconds.
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


BOTTLENECK_EXPANSION = 4  # a ResNet bottleneck's output is 4x its inner width


@dataclass(frozen=True)
class ResNetConfig:
    """torchvision's bottleneck ResNet: ``blocks`` per stage, the stem's and each stage's inner width
    (a stage's output is 4x its inner width)."""

    blocks: Tuple[int, int, int, int]
    stem_width: int = 64
    widths: Tuple[int, int, int, int] = (64, 128, 256, 512)
    torchvision_name: Optional[str] = None  # torchvision model name for pretrained (ImageNet) weights
    stride: int = 32  # of the deepest stage: image sides must be multiples of it

    @property
    def out_features(self) -> Tuple[int, int, int, int]:
        return tuple(BOTTLENECK_EXPANSION * w for w in self.widths)


# The normalisation each image trunk was trained with (upstream's few-shot readers switch on the backbone).
CLIP_LSEG_NORM = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class BackboneConfig:
    name: str
    vit: Optional[VitConfig]
    text: TextConfig
    hooks: Tuple[int, ...]
    reassemble_features: Tuple[int, int, int, int]
    resample: Tuple[float, ...]
    resnet: Optional[ResNetConfig] = None  # the image trunk when there is no ViT
    norm: Tuple[Tuple[float, float, float], Tuple[float, float, float]] = CLIP_LSEG_NORM  # (mean, std)

    @property
    def patch_size(self) -> int:
        """What image sides must be multiples of: the ViT's patch, or the ResNet's total stride."""
        return self.vit.patch_size if self.vit is not None else self.resnet.stride


def _resnet_backbone(name: str, resnet: ResNetConfig, text: TextConfig) -> BackboneConfig:
    return BackboneConfig(name, None, text, (), resnet.out_features, (), resnet=resnet, norm=IMAGENET_NORM)


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
    # upstream's zero-shot LSegRNNetZS (_make_pretrained_clip_rn101), and a narrow, one-block-a-stage version
    "clip_resnet101": _resnet_backbone("clip_resnet101", ResNetConfig((3, 4, 23, 3), torchvision_name="resnet101"),
                                       _TEXT_VITB32),
    "tiny_resnet": _resnet_backbone("tiny_resnet", ResNetConfig((1, 1, 1, 1), stem_width=8, widths=(8, 16, 32, 64)),
                                    TextConfig(width=16, layers=1, heads=2, embed_dim=512)),
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
    # True: upstream's zero-shot networks (LSegNetZS, LSegRNNetZS: BatchNorm, no head block), scored per
    # episode on the label pair ("others", class); False: LSegNet. None: LSegNet, trained either way (an upstream
    # ViT checkpoint without options has the same tensors for both); the ResNet trunk exists only zero-shot.
    zero_shot: Optional[bool] = None

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
        resnet = BACKBONES[self.backbone].resnet is not None
        if resnet and self.zero_shot is None:
            object.__setattr__(self, "zero_shot", True)
        if resnet and not self.zero_shot:
            raise LangSegError(f"backbone {self.backbone} exists only as upstream's zero-shot network "
                               "(LSegRNNetZS): use it with zero_shot=True, or choose a ViT backbone")
        if self.zero_shot and (not self.use_bn or self.arch_option != 0):
            raise LangSegError("upstream's zero-shot networks always have BatchNorm and no head block: "
                               "pass use_bn=True and arch_option=0 with zero_shot=True")

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

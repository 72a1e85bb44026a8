"""Synchronised image/mask transforms of upstream lang-seg (torch-encoding's BaseDataset, commit 331ecdd).

Upstream's ADE20K dataset keeps a Gaussian-blur variant of ``sync_transform``
commented out, so its effective training transform has no blur; ``blur=True``
turns that variant on.
"""
from __future__ import annotations

import random

import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageFilter, ImageOps

NORM_MEAN = (0.5, 0.5, 0.5)
NORM_STD = (0.5, 0.5, 0.5)


def sync_transform(img: Image.Image, mask: Image.Image, base_size: int, crop_size: int, blur: bool = False,
                   rng: random.Random = random, mask_fill: int = 0):
    """Random mirror, long side scaled to 0.5-2.0 x ``base_size``, padding (the mask with ``mask_fill``, a
    value the dataset ignores: ADE20K's 0), random ``crop_size`` crop."""
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
        mask = mask.transpose(Image.FLIP_LEFT_RIGHT)
    w, h = img.size
    long_size = rng.randint(int(base_size * 0.5), int(base_size * 2.0))
    if h > w:
        oh, ow = long_size, int(1.0 * w * long_size / h + 0.5)
        short_size = ow
    else:
        ow, oh = long_size, int(1.0 * h * long_size / w + 0.5)
        short_size = oh
    img = img.resize((ow, oh), Image.BILINEAR)
    mask = mask.resize((ow, oh), Image.NEAREST)
    if short_size < crop_size:
        padh = crop_size - oh if oh < crop_size else 0
        padw = crop_size - ow if ow < crop_size else 0
        img = ImageOps.expand(img, border=(0, 0, padw, padh), fill=0)
        mask = ImageOps.expand(mask, border=(0, 0, padw, padh), fill=mask_fill)
    w, h = img.size
    x1 = rng.randint(0, w - crop_size)
    y1 = rng.randint(0, h - crop_size)
    img = img.crop((x1, y1, x1 + crop_size, y1 + crop_size))
    mask = mask.crop((x1, y1, x1 + crop_size, y1 + crop_size))
    if blur and rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(radius=rng.random()))
    return img, mask


def val_sync_transform(img: Image.Image, mask: Image.Image, crop_size: int):
    """Short side to ``crop_size``, centre crop."""
    w, h = img.size
    if w > h:
        oh, ow = crop_size, int(1.0 * w * crop_size / h)
    else:
        ow, oh = crop_size, int(1.0 * h * crop_size / w)
    img = img.resize((ow, oh), Image.BILINEAR)
    mask = mask.resize((ow, oh), Image.NEAREST)
    w, h = img.size
    x1 = int(round((w - crop_size) / 2.0))
    y1 = int(round((h - crop_size) / 2.0))
    box = (x1, y1, x1 + crop_size, y1 + crop_size)
    return img.crop(box), mask.crop(box)


def to_normalized_tensor(img: Image.Image) -> torch.Tensor:
    """``(3, H, W)`` float32 in [-1, 1]: upstream's ToTensor + Normalize(mean = std = 0.5)."""
    return TF.normalize(TF.to_tensor(img), NORM_MEAN, NORM_STD)

"""ADE20K (SceneParsing release layout) for lang-seg, without torch-encoding.

    <root>/ADEChallengeData2016/images/{training,validation}/*.jpg
    <root>/ADEChallengeData2016/annotations/{training,validation}/*.png

Any number of images (upstream asserts the full 20210 / 2000); every image needs
its mask, of the same size.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from PIL import Image, UnidentifiedImageError

from lang_seg.errors import LangSegError

from .transforms import ade20k_target, sync_transform, to_normalized_tensor, val_sync_transform

BASE_DIR = "ADEChallengeData2016"
SPLITS = {"train": ("training",), "val": ("validation",), "trainval": ("training", "validation")}
MODES = ("train", "val", "testval")
NUM_CLASS = 150


def find_pairs(root, split: str) -> Tuple[List[Path], List[Path]]:
    """Image and mask paths of a split, sorted; clear errors for a missing folder, split or mask."""
    if split not in SPLITS:
        raise LangSegError(f"unknown ADE20K split {split!r}: choose one of {', '.join(SPLITS)}")
    base = Path(root) / BASE_DIR
    if not base.is_dir():
        raise LangSegError(
            f"ADE20K not found: expected the folder {base} (images/ and annotations/ inside); "
            f"run 'python prepare_ade20k.py --data_path {root}' or pass --data_path to where it is"
        )
    images, masks = [], []
    for sub in SPLITS[split]:
        image_dir, mask_dir = base / "images" / sub, base / "annotations" / sub
        if not image_dir.is_dir():
            raise LangSegError(f"ADE20K split folder {image_dir} is missing: the download is incomplete")
        for image in sorted(image_dir.glob("*.jpg")):
            mask = mask_dir / (image.stem + ".png")
            if not mask.is_file():
                raise LangSegError(f"image {image} has no mask: expected {mask}")
            images.append(image)
            masks.append(mask)
    if not images:
        raise LangSegError(f"ADE20K split '{split}' under {base} has no images (*.jpg)")
    return images, masks


def open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise LangSegError(f"cannot read {path}: {exc}; replace or remove the file") from None


class ADE20KSegmentation(torch.utils.data.Dataset):
    """``(image (3, H, W) float32 normalised, target (H, W) int64 with -1 = ignore)`` pairs."""

    NUM_CLASS = NUM_CLASS

    def __init__(self, root, split: str = "train", mode: Optional[str] = None, base_size: int = 520,
                 crop_size: int = 480, blur: bool = False, seed: Optional[int] = None):
        self.mode = mode or split
        if self.mode not in MODES:
            raise LangSegError(f"unknown dataset mode {self.mode!r}: choose one of {', '.join(MODES)}")
        self.split = split
        self.base_size = base_size
        self.crop_size = crop_size
        self.blur = blur
        self.images, self.masks = find_pairs(root, split)
        self.seed = seed
        self._rng = random.Random(seed) if seed is not None else random

    @property
    def num_class(self) -> int:
        return self.NUM_CLASS

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key):
        """``key``: an index, or ``(index, epoch)`` from ``EpochSampler`` (augmentation then depends on
        seed, epoch and index only: reproducible across workers and when a run resumes)."""
        index, epoch = key if isinstance(key, tuple) else (key, None)
        rng = self._rng
        if epoch is not None and self.seed is not None:
            rng = random.Random(f"{self.seed}-{epoch}-{index}")
        img = open_image(self.images[index]).convert("RGB")
        mask = open_image(self.masks[index])
        if mask.mode not in ("L", "P"):  # class ids are the raw 8-bit values
            raise LangSegError(f"mask {self.masks[index]} is a {mask.mode} image: it must be a single-channel 8-bit PNG")
        if img.size != mask.size:
            raise LangSegError(
                f"mask {self.masks[index]} is {mask.size[0]}x{mask.size[1]} but its image is "
                f"{img.size[0]}x{img.size[1]}: they must have the same size"
            )
        if self.mode == "train":
            img, mask = sync_transform(img, mask, self.base_size, self.crop_size, self.blur, rng)
        elif self.mode == "val":
            img, mask = val_sync_transform(img, mask, self.crop_size)
        return to_normalized_tensor(img), ade20k_target(mask)

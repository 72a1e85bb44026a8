"""ADE20K (SceneParsing release layout) for lang-seg, without torch-encoding.

    <root>/ADEChallengeData2016/images/{training,validation}/*.jpg
    <root>/ADEChallengeData2016/annotations/{training,validation}/*.png

Mask value 0 ("other") is ignored, values 1..150 are the classes of
``label_files/ade20k_objectInfo150.txt``. Any number of images (upstream asserts the
full 20210 / 2000); every image needs its mask, of the same size.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from lang_seg.errors import LangSegError
from lang_seg.labels import ade20k_labels

from .base import SegmentationDataset, one_based, with_masks

BASE_DIR = "ADEChallengeData2016"
SPLITS = {"train": ("training",), "val": ("validation",), "trainval": ("training", "validation")}
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
        pairs = with_masks(sorted(image_dir.glob("*.jpg")), lambda image: mask_dir / (image.stem + ".png"))
        images += pairs[0]
        masks += pairs[1]
    if not images:
        raise LangSegError(f"ADE20K split '{split}' under {base} has no images (*.jpg)")
    return images, masks


class ADE20KSegmentation(SegmentationDataset):
    NAME = "ade20k"
    NUM_CLASS = NUM_CLASS

    @classmethod
    def read_labels(cls, root) -> List[str]:
        return ade20k_labels()

    @classmethod
    def value_table(cls, count: int):
        return one_based(count)

    def find_pairs(self, root, split):
        return find_pairs(root, split)

"""Cityscapes (``citys``), fine annotations, the 19 classes of its benchmark.

    <root>/leftImg8bit/{train,val}/CITY/NAME_leftImg8bit.png
    <root>/gtFine/{train,val}/CITY/NAME_gtFine_labelIds.png

``root`` is where ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``
unpack (torch-encoding reads the same two folders from its root). Masks hold
Cityscapes' label ids 0..33; the 19 evaluated ones become the train ids 0..18
(``label_files/citys.txt``), the others are ignored, as torch-encoding's
``_class_to_index`` does. Upstream trains and evaluates with base size 2048,
crops of 768 and scales 0.75..2.25.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lang_seg.errors import LangSegError
from lang_seg.evaluate import CITYS_SCALES

from .base import IGNORE, INVALID, SegmentationDataset, with_masks

# label id of each train id 0..18 (Cityscapes' labels.py): road, sidewalk, building, ..., bicycle
LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
LAST_LABEL_ID = 33
SUBFOLDERS = {"train": ("train",), "val": ("val",), "trainval": ("train", "val")}


class CitySegmentation(SegmentationDataset):
    NAME = "citys"
    LABEL_FILE = "citys.txt"
    BASE_SIZE, CROP_SIZE = 2048, 768
    SCALES = CITYS_SCALES

    @classmethod
    def value_table(cls, count: int):
        table = np.full(256, INVALID, np.int64)
        table[:LAST_LABEL_ID + 1] = IGNORE
        table[list(LABEL_IDS)] = np.arange(len(LABEL_IDS))
        return table

    def find_pairs(self, root: Path, split: str):
        images = []
        for sub in SUBFOLDERS[split]:
            image_dir = root / "leftImg8bit" / sub
            if not image_dir.is_dir():
                raise LangSegError(f"Cityscapes not found: expected the folder {image_dir}; unpack "
                                   f"leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip into {root} "
                                   f"or pass --data_path to where they are")
            images += sorted(image_dir.glob("*/*_leftImg8bit.png"))

        def mask_of(image: Path) -> Path:
            sub = image.parent.parent.name
            name = image.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
            return root / "gtFine" / sub / image.parent.name / name

        return with_masks(images, mask_of)

"""PASCAL VOC 2012 (``pascal_voc``) and SBD's augmented set (``pascal_aug``), in torch-encoding's layouts.

    pascal_voc: <root>/VOCdevkit/VOC2012/JPEGImages/NAME.jpg
                <root>/VOCdevkit/VOC2012/SegmentationClass/NAME.png     (palette PNG)
                <root>/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt
    pascal_aug: <root>/VOCaug/dataset/img/NAME.jpg                      (SBD's benchmark_RELEASE/dataset,
                <root>/VOCaug/dataset/cls/NAME.mat                       renamed as torch-encoding does)
                <root>/VOCaug/dataset/{train,val}.txt

21 classes with background (``label_files/pascal_voc.txt``): mask value k is class k,
255 (VOC's void outlines) is ignored. Two choices differ from torch-encoding's
readers, whose ``train`` mode reads ``trainval.txt`` (so VOC's validation images
are trained on) and which pad training crops with 0 (background): here ``train``
reads ``train.txt`` (``trainval``: both lists) and crops are padded with 255.
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image

from lang_seg.errors import LangSegError

from .base import IGNORE, INVALID, SegmentationDataset, with_masks

VOC_DIR = "VOCdevkit/VOC2012"
AUG_DIR = "VOCaug/dataset"
LISTS = {"train": ("train",), "val": ("val",), "trainval": ("train", "val")}
VOID = 255


def voc_values(count: int) -> np.ndarray:
    table = np.full(256, INVALID, np.int64)
    table[:count] = np.arange(count)
    table[VOID] = IGNORE
    return table


def listed_pairs(base: Path, lists, image_of, mask_of, prepare: str) -> Tuple[list, list]:
    """Pairs of the names listed in ``lists`` (files of one name a line), image and mask checked."""
    if not base.is_dir():
        raise LangSegError(f"expected the folder {base}: {prepare}")
    images = []
    for list_file in lists:
        if not list_file.is_file():
            raise LangSegError(f"split list {list_file} is missing: {prepare}")
        for name in list_file.read_text().split():
            image = image_of(name)
            if not image.is_file():
                raise LangSegError(f"{list_file} lists {name}, but its image {image} is missing")
            images.append(image)
    return with_masks(images, lambda image: mask_of(image.stem))


class VOCSegmentation(SegmentationDataset):
    NAME = "pascal_voc"
    LABEL_FILE = "pascal_voc.txt"
    MASK_FILL = VOID

    @classmethod
    def value_table(cls, count: int):
        return voc_values(count)

    def find_pairs(self, root: Path, split: str):
        base = root / VOC_DIR
        return listed_pairs(
            base, [base / "ImageSets/Segmentation" / f"{name}.txt" for name in LISTS[split]],
            lambda name: base / "JPEGImages" / f"{name}.jpg", lambda name: base / "SegmentationClass" / f"{name}.png",
            f"unpack VOCtrainval_11-May-2012.tar into {root} (see docs/datasets.md) or pass --data_path to where it is")


class VOCAugSegmentation(VOCSegmentation):
    NAME = "pascal_aug"

    def find_pairs(self, root: Path, split: str):
        base = root / AUG_DIR
        return listed_pairs(
            base, [base / f"{name}.txt" for name in LISTS[split]],
            lambda name: base / "img" / f"{name}.jpg", lambda name: base / "cls" / f"{name}.mat",
            f"unpack SBD's benchmark.tgz into {root} and rename benchmark_RELEASE to VOCaug (see docs/datasets.md)")

    def load_mask(self, index: int) -> Image.Image:
        """SBD keeps each mask in a MATLAB file, as ``GTcls.Segmentation``."""
        import scipy.io

        path = self.masks[index]
        try:
            mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
            array = np.asarray(mat["GTcls"].Segmentation)
        except Exception as exc:  # not a MATLAB file, or not SBD's structure
            raise LangSegError(f"cannot read {path} as an SBD mask (GTcls.Segmentation): {exc}; "
                               f"replace or remove the file") from None
        if array.ndim != 2 or not array.size or array.min() < 0 or array.max() > 255:
            raise LangSegError(f"{path}: GTcls.Segmentation is not an 8-bit label map ({array.shape})")
        return Image.fromarray(array.astype(np.uint8))

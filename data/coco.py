"""COCO 2017 with PASCAL VOC's 21 classes (``coco``), as torch-encoding reads it.

    <root>/{train2017,val2017}/*.jpg
    <root>/annotations/instances_{train,val}2017.json

Masks are drawn from the instance annotations (polygons and crowd RLEs, decoded by
``pycocotools``, an optional dependency: ``pip install 'lang-seg-ms[coco]'``): the
20 VOC categories among COCO's become classes 1..20 of ``label_files/pascal_voc.txt``
(in annotation order, the first instance to cover a pixel wins), everything else is
background (class 0; COCO has no ignored pixels). Images with 1000 or fewer such
pixels are left out; the kept ids are computed once per split and stored as
``annotations/{train,val}_ids.pth`` (a list of ints, torch-encoding's file: one it
downloaded is used as it is). Training crops are padded with 255 (ignored), where
torch-encoding pads with background.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import numpy as np
from PIL import Image

from lang_seg.errors import LangSegError
from lang_seg.files import atomic_write

from .base import SegmentationDataset
from .pascal import voc_values

# COCO category id of each class 0..20 (0: background, no category)
CATEGORIES = (0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)
MIN_PIXELS = 1000  # torch-encoding keeps images with more labelled pixels than this
PAD = 255


def _pycocotools():
    try:
        from pycocotools import mask
        from pycocotools.coco import COCO
    except ImportError:
        raise LangSegError("the coco dataset needs pycocotools: pip install 'lang-seg-ms[coco]' "
                           "(or pip install pycocotools)") from None
    return COCO, mask


def draw_mask(annotations, height: int, width: int, rle) -> np.ndarray:
    """``(H, W)`` uint8 class ids of one image's instance annotations."""
    out = np.zeros((height, width), np.uint8)
    for ann in annotations:
        if ann["category_id"] not in CATEGORIES[1:]:
            continue
        m = rle.decode(rle.frPyObjects(ann["segmentation"], height, width))
        if m.ndim == 3:  # several polygons: their union
            m = m.max(axis=2)
        out[(out == 0) & (m > 0)] = CATEGORIES.index(ann["category_id"])
    return out


class COCOSegmentation(SegmentationDataset):
    NAME = "coco"
    LABEL_FILE = "pascal_voc.txt"
    MASK_FILL = PAD
    SPLITS = ("train", "val")

    @classmethod
    def value_table(cls, count: int):
        return voc_values(count)  # 0..20, and 255 (padding) ignored

    def find_pairs(self, root: Path, split: str):
        coco_class, self._rle = _pycocotools()
        ann_file = root / "annotations" / f"instances_{split}2017.json"
        if not ann_file.is_file():
            raise LangSegError(f"COCO not found: expected {ann_file}; unpack annotations_trainval2017.zip and "
                               f"{split}2017.zip into {root} or pass --data_path to where they are")
        self.coco = coco_class(str(ann_file))
        self.ids = self._kept_ids(root / "annotations" / f"{split}_ids.pth")
        images = []
        for image_id in self.ids:
            image = root / f"{split}2017" / self.coco.imgs[image_id]["file_name"]
            if not image.is_file():
                raise LangSegError(f"{ann_file} lists image {image.name}, but {image} is missing")
            images.append(image)
        return images, [f"{ann_file} (image {image_id})" for image_id in self.ids]

    def _draw(self, image_id: int) -> np.ndarray:
        info = self.coco.imgs[image_id]
        annotations = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))
        return draw_mask(annotations, info["height"], info["width"], self._rle)

    def _kept_ids(self, path: Path) -> List[int]:
        import torch

        if path.is_file():
            try:
                ids = torch.load(path, weights_only=True)  # a plain list: nothing in it can run code
            except Exception:
                raise LangSegError(f"cannot read {path} as a torch file holding a list of image ids: remove it to "
                                   f"have it computed again") from None
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise LangSegError(f"{path} is not a list of image ids: remove it to have it computed again")
            return ids
        print(f"coco: finding the images with more than {MIN_PIXELS} labelled pixels (once; kept in {path})",
              file=sys.stderr)
        ids = [i for i in self.coco.imgs if int((self._draw(i) > 0).sum()) > MIN_PIXELS]
        atomic_write(path, lambda tmp: torch.save(ids, tmp))
        return ids

    def load_mask(self, index: int) -> Image.Image:
        return Image.fromarray(self._draw(self.ids[index]))

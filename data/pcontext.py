"""PASCAL-Context, 59 classes (``pcontext``), read from prepared masks: no ``detail`` API needed.

    <root>/VOCdevkit/VOC2010/JPEGImages/NAME.jpg
    <root>/VOCdevkit/VOC2010/SegmentationClassContext/NAME.png
    <root>/VOCdevkit/VOC2010/ImageSets/SegmentationContext/{train,val}.txt

torch-encoding builds the masks itself: the ``detail`` API reads VOC2010's
``trainval_merged.json`` (459 categories), keeps the 59 most frequent (the sorted
category ids of ``pcontext.py``'s ``_mapping``; all others become 0) and pickles the
masks, as PIL images, into ``train.pth``/``val.pth``. Loading those pickles would run
code from a file, and ``detail`` is built from a git checkout, so this reader takes
the same masks as PNG files instead, in mmsegmentation's layout above (its
``tools/dataset_converters/pascal_context.py`` writes them with the same mapping):
value 0 (the 400 other categories) is ignored, value k is the k-th class of
``label_files/pcontext.txt`` (the 59 in category-id order), as torch-encoding's
``mask - 1``.
"""
from __future__ import annotations

from pathlib import Path

from .base import SegmentationDataset, one_based
from .pascal import LISTS, listed_pairs

BASE_DIR = "VOCdevkit/VOC2010"


class ContextSegmentation(SegmentationDataset):
    NAME = "pcontext"
    LABEL_FILE = "pcontext.txt"

    @classmethod
    def value_table(cls, count: int):
        return one_based(count)

    def find_pairs(self, root: Path, split: str):
        base = root / BASE_DIR
        return listed_pairs(
            base, [base / "ImageSets/SegmentationContext" / f"{name}.txt" for name in LISTS[split]],
            lambda name: base / "JPEGImages" / f"{name}.jpg",
            lambda name: base / "SegmentationClassContext" / f"{name}.png",
            "prepare the 59-class masks as docs/datasets.md says (SegmentationClassContext/ and "
            "ImageSets/SegmentationContext/ beside VOC2010's JPEGImages/)")

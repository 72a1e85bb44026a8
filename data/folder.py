"""The labelled-folder format (``--dataset folder``): the layout a user makes for their own data.

    DIR/labels.txt                                   one label per line
    DIR/images/{training,validation}/NAME.{jpg,png}
    DIR/annotations/{training,validation}/NAME.png   8-bit single-channel or palette

Mask value 0 is ignored and value k is the k-th label of ``labels.txt``, as
ADE20K's release counts; the transforms are ADE20K's. Every mask is read once
when the dataset is opened, so a value above the label count stops the run, with
the file, the value and the count, before anything is trained or written.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import List

from lang_seg.errors import LangSegError
from lang_seg.labels import check_labels

from .base import SegmentationDataset, one_based, with_masks

LABELS = "labels.txt"
SUBFOLDERS = {"train": ("training",), "val": ("validation",), "trainval": ("training", "validation")}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_LABELS = 255  # an 8-bit mask holds 0 (ignored) and 1..255


def read_labels_txt(root) -> List[str]:
    """The labels of ``root/labels.txt``: line k names mask value k (blank lines at the end are dropped)."""
    path = Path(root) / LABELS
    if not path.is_file():
        raise LangSegError(f"{path} is missing: a folder dataset names its classes there, one label per line "
                           f"(line k = mask value k; 0 is ignored)")
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise LangSegError(f"{path} is empty: write one label per line (line k = mask value k)")
    labels = check_labels(lines, source=str(path))  # an empty line inside, a duplicated label
    if len(labels) > MAX_LABELS:
        raise LangSegError(f"{path} has {len(labels)} labels, but 8-bit masks hold at most {MAX_LABELS} "
                           f"(value 0 is ignored): merge or drop some")
    return labels


class FolderSegmentation(SegmentationDataset):
    NAME = "folder"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.check_masks()  # user-made masks: a bad value stops here, not mid-training

    @classmethod
    def read_labels(cls, root) -> List[str]:
        return read_labels_txt(root)

    @classmethod
    def value_table(cls, count: int):
        return one_based(count)

    def find_pairs(self, root: Path, split: str):
        images, masks = [], []
        for sub in SUBFOLDERS[split]:
            image_dir, mask_dir = root / "images" / sub, root / "annotations" / sub
            if not image_dir.is_dir():
                raise LangSegError(f"folder dataset {root} has no {image_dir.relative_to(root)}/: expected "
                                   f"images/{{training,validation}}/ and annotations/{{training,validation}}/ "
                                   f"beside labels.txt")
            found = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            twice = sorted(stem for stem, n in Counter(p.stem for p in found).items() if n > 1)
            if twice:
                raise LangSegError(f"{image_dir} has two images named {twice[0]} (one mask each): keep one")
            pairs = with_masks(found, lambda image: mask_dir / (image.stem + ".png"))
            images += pairs[0]
            masks += pairs[1]
        return images, masks

    def value_error(self, index: int, value: int) -> LangSegError:
        count = len(self.labels)
        return LangSegError(f"mask {self.masks[index]} holds the value {value}, above the label count {count} of "
                            f"{self.root / LABELS}: mask values are 0 (ignored) or 1..{count} (the line of the label)")

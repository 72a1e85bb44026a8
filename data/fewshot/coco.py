"""COCO-20i in HSNet's layout, as upstream's ``fewshot_data/data/coco.py`` reads it.

    <datapath>/COCO2014/{train2014,val2014}/COCO_*.jpg
    <datapath>/COCO2014/annotations/{train2014,val2014}/COCO_*.png   (class ids 1..80, 0 background)

Fold f tests classes f, f+4, ..., f+76: each of its 1000 episodes draws a class, then a query image
of it (``splits/coco/val/fold<f>.txt.gz``), then supports; training draws from the trn lists.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lang_seg.fewshot import fold_classes

from .common import EVAL_EPISODES, FewShotDataset, choose, draw_supports, open_image
from .splits import COCO_DIRS, coco_split


class DatasetCOCO(FewShotDataset):
    benchmark = "coco"
    layout = ("COCO2014/{train2014,val2014}/*.jpg and COCO2014/annotations/{train2014,val2014}/*.png "
              "(the split's own folder at least)")

    def setup(self) -> None:
        split = "trn" if self.split == "trn" else "val"
        self.base_path = self.datapath / "COCO2014"
        folder = COCO_DIRS[split]
        if not ((self.base_path / folder).is_dir() and (self.base_path / "annotations" / folder).is_dir()):
            raise self.missing_layout()
        self.class_ids = fold_classes("coco", self.fold, split)
        self.classwise = coco_split(split, self.fold)
        self.img_metadata = sorted(set(name for names in self.classwise.values() for name in names))

    def __len__(self) -> int:
        return len(self.img_metadata) if self.split == "trn" else EVAL_EPISODES

    def sample(self, index, rng):
        """Upstream ignores the index: a class of the fold, then one of its images (``load_frame``)."""
        class_id = int(choose(rng, self.class_ids))
        query = str(choose(rng, self.classwise[class_id]))
        return query, [str(s) for s in draw_supports(rng, self.classwise[class_id], query, self.shot)], class_id

    def image_path(self, name: str) -> Path:
        return self.base_path / name

    def mask_path(self, name: str) -> Path:
        return self.base_path / "annotations" / (name[: name.index(".jpg")] + ".png")

    def read_mask(self, name, class_id):
        annotation = np.asarray(open_image(self.mask_path(name)))
        return (annotation == class_id + 1).astype(np.uint8), np.zeros(annotation.shape[:2], np.uint8)

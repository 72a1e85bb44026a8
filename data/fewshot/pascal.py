"""PASCAL-5i in HSNet's layout, as upstream's ``fewshot_data/data/pascal.py`` reads it.

    <datapath>/VOC2012/JPEGImages/<image>.jpg
    <datapath>/VOC2012/SegmentationClassAug/<image>.png   (class ids 1..20, 0 background, 255 boundaries)

Fold f tests classes 5f..5f+4 on 1000 episodes cycling through its val list
(``splits/pascal/val/fold<f>.txt``); training reads the other three folds' trn lists.
Supports are other images of the episode's class. Boundary pixels are ignored when scoring.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from lang_seg.fewshot import FOLDS, fold_classes

from .common import EVAL_EPISODES, FewShotDataset, draw_supports, open_image
from .splits import pascal_split


class DatasetPASCAL(FewShotDataset):
    benchmark = "pascal"
    layout = "VOC2012/JPEGImages/*.jpg and VOC2012/SegmentationClassAug/*.png"

    def setup(self) -> None:
        base = self.datapath / "VOC2012"
        self.img_path, self.ann_path = base / "JPEGImages", base / "SegmentationClassAug"
        if not (self.img_path.is_dir() and self.ann_path.is_dir()):
            raise self.missing_layout()
        split = "trn" if self.split == "trn" else "val"
        self.class_ids = fold_classes("pascal", self.fold, split)
        folds = [f for f in range(FOLDS) if f != self.fold] if split == "trn" else [self.fold]
        self.img_metadata: List[Tuple[str, int]] = [row for f in folds for row in pascal_split(split, f)]
        self.classwise: Dict[int, List[str]] = {c: [] for c in range(20)}
        for name, class_id in self.img_metadata:
            self.classwise[class_id].append(name)

    def __len__(self) -> int:
        return len(self.img_metadata) if self.split == "trn" else EVAL_EPISODES

    def sample(self, index, rng):
        query, class_id = self.img_metadata[index % len(self.img_metadata)]
        return query, draw_supports(rng, self.classwise[class_id], query, self.shot), class_id

    def image_path(self, name: str) -> Path:
        return self.img_path / f"{name}.jpg"

    def mask_path(self, name: str) -> Path:
        return self.ann_path / f"{name}.png"

    def read_mask(self, name, class_id):
        annotation = np.asarray(open_image(self.mask_path(name)))
        return (annotation == class_id + 1).astype(np.uint8), (annotation == 255).astype(np.uint8)

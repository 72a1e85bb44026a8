"""FSS-1000 in HSNet's layout, as upstream's ``fewshot_data/data/fss.py`` reads it.

    <datapath>/FSS-1000/<category>/<n>.jpg and <n>.png   (n = 1..10; masks thresholded at 128)

FSS-1000 has no folds (``--fold`` changes nothing, as upstream): the test split holds 240
categories (class ids 760-999), val 240 (520-759), trn 520 (0-519), listed in ``splits/fss/``.
Every image is an episode. 1-shot testing takes each category's ``1.jpg`` as the support and
leaves it out of the queries; other shot counts draw supports from ``1..10``.

A category whose folder is absent has no episodes (upstream globs the folder): the score is taken
over the categories present, and the reader says how many are missing. With none present, the
layout is missing.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from lang_seg.fewshot import FSS_RANGES

from .common import FewShotDataset, draw_supports, open_image
from .splits import fss_split


class DatasetFSS(FewShotDataset):
    benchmark = "fss"
    layout = "FSS-1000/<category>/<n>.jpg with its mask <n>.png"

    def setup(self) -> None:
        self.base_path = self.datapath / "FSS-1000"
        self.categories = fss_split(self.split)
        offset = FSS_RANGES[self.split][0]
        present = [c for c in self.categories if (self.base_path / c).is_dir()]
        if not present:
            raise self.missing_layout()
        if len(present) < len(self.categories):
            warnings.warn(f"FSS-1000 under {self.datapath} has {len(present)} of the {len(self.categories)} "
                          f"{self.split} categories: scored over those", stacklevel=3)
        self.class_ids = [offset + self.categories.index(c) for c in present]
        self.img_metadata = []
        for category in present:
            names = sorted(p.name for p in (self.base_path / category).iterdir() if not p.name.startswith("."))
            if self.split == "test" and self.shot == 1:
                names = names[1:]  # upstream skips the first file: 1.jpg, every query's support
            self.img_metadata += [f"{category}/{n}" for n in names if n.split(".")[1:2] == ["jpg"]]

    def __len__(self) -> int:
        return len(self.img_metadata)

    def sample(self, index, rng):
        query = self.img_metadata[index]
        category = query.split("/")[0]
        class_id = FSS_RANGES[self.split][0] + self.categories.index(category)
        if self.split == "test" and self.shot == 1:
            supports = [f"{category}/1.jpg"]
        else:
            supports = draw_supports(rng, range(1, 11), query, self.shot, name=lambda n: f"{category}/{n}.jpg")
        return query, supports, class_id

    def image_path(self, name: str) -> Path:
        return self.base_path / name

    def mask_path(self, name: str) -> Path:
        category, image = name.split("/")
        return self.base_path / category / (image.split(".")[0] + ".png")

    def read_mask(self, name, class_id):
        mask = np.asarray(open_image(self.mask_path(name)).convert("L")) >= 128
        return mask.astype(np.uint8), np.zeros(mask.shape, np.uint8)

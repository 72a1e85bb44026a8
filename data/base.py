"""What every segmentation dataset of lang-seg knows and does, whatever its release layout.

A reader is a subclass that states its facts as class attributes (its registry
``NAME``, its shipped ``LABEL_FILE``, upstream's ``BASE_SIZE``/``CROP_SIZE`` and
evaluation ``SCALES``, the mask value it pads training crops with) and says how to
find its ``(image, mask)`` pairs and how its mask values map to classes
(``value_table``). The rest is here: labels, upstream's transforms, targets with
``IGNORE`` for unlabelled pixels, one-line errors naming the file at fault, and the
way back from class ids to the dataset's own mask values (for written masks).
"""
from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from lang_seg.errors import LangSegError
from lang_seg.evaluate import DEFAULT_SCALES
from lang_seg.labels import read_label_file

from .transforms import sync_transform, to_normalized_tensor, val_sync_transform

IGNORE = -1  # the target of unlabelled pixels: the loss's and the metrics' ignore index
INVALID = -2  # in a value table: a mask value the dataset never uses
MODES = ("train", "val", "testval")


def open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise LangSegError(f"cannot read {path}: {exc}; replace or remove the file") from None


def one_based(count: int) -> np.ndarray:
    """ADE20K's counting, and the folder format's: 0 ignored, value k the k-th label."""
    table = np.full(256, INVALID, np.int64)
    table[0] = IGNORE
    table[1:count + 1] = np.arange(count)
    return table


def with_masks(images: Iterable[Path], mask_of: Callable[[Path], Path]) -> Tuple[List[Path], List[Path]]:
    """``(images, masks)``: every image needs its mask."""
    images, masks = list(images), []
    for image in images:
        mask = mask_of(image)
        if not mask.is_file():
            raise LangSegError(f"image {image} has no mask: expected {mask}")
        masks.append(mask)
    return images, masks


def _ranges(values: np.ndarray) -> str:
    """``[0, 1, 2, 255]`` -> ``'0-2, 255'``."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


class SegmentationDataset(torch.utils.data.Dataset):
    """``(image (3, H, W) float32 normalised, target (H, W) int64 with IGNORE = -1)`` pairs.

    ``split``: ``train``, ``val`` or ``trainval``; ``mode``: ``train`` (upstream's random
    mirror, scale and crop), ``val`` (short side to the crop size, centre crop) or ``testval``
    (the full picture); ``base_size``/``crop_size`` default to the dataset's (upstream's).
    """

    NAME = ""
    LABEL_FILE: Optional[str] = None  # in label_files/
    BASE_SIZE, CROP_SIZE = 520, 480  # upstream's train_lseg.py / test_lseg.py
    SCALES = DEFAULT_SCALES  # upstream's multi-scale evaluation
    MASK_FILL = 0  # the mask value training crops are padded with: one the dataset ignores
    SPLITS = ("train", "val", "trainval")

    def __init__(self, root, split: str = "train", mode: Optional[str] = None, base_size: Optional[int] = None,
                 crop_size: Optional[int] = None, blur: bool = False, seed: Optional[int] = None):
        self.mode = mode or split
        if self.mode not in MODES:
            raise LangSegError(f"unknown dataset mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if split not in self.SPLITS:
            raise LangSegError(f"unknown {self.NAME} split {split!r}: choose one of {', '.join(self.SPLITS)}")
        self.root, self.split = Path(root), split
        self.base_size = base_size or self.BASE_SIZE
        self.crop_size = crop_size or self.CROP_SIZE
        self.blur, self.seed = blur, seed
        self._rng = random.Random(seed) if seed is not None else random
        self.labels = self.read_labels(self.root)
        self.values = self.value_table(len(self.labels))
        self.images, self.masks = self.find_pairs(self.root, split)
        if not self.images:
            raise LangSegError(f"{self.NAME} split '{split}' under {self.root} has no images")

    # -- what a reader states ---------------------------------------------------
    @classmethod
    def read_labels(cls, root) -> List[str]:
        """The class names, in class-id order (``root``: the folder format keeps them there)."""
        from lang_seg.label_files import LABEL_DIR  # package data: found in a wheel too

        return read_label_file(LABEL_DIR / cls.LABEL_FILE)

    @classmethod
    def value_table(cls, count: int) -> np.ndarray:
        """``(256,)`` int64: the class id of each 8-bit mask value, ``IGNORE`` or ``INVALID``."""
        raise NotImplementedError

    def find_pairs(self, root: Path, split: str) -> Tuple[list, list]:
        raise NotImplementedError

    def load_mask(self, index: int) -> Image.Image:
        """The raw mask of item ``index`` (an 8-bit single-channel or palette image)."""
        path = self.masks[index]
        mask = open_image(path)
        if mask.mode not in ("L", "P"):  # class ids are the raw 8-bit values
            raise LangSegError(f"mask {path} is a {mask.mode} image: it must be a single-channel 8-bit PNG")
        return mask

    def value_error(self, index: int, value: int) -> LangSegError:
        allowed = _ranges(np.flatnonzero(self.values != INVALID))
        return LangSegError(f"mask {self.masks[index]} holds the value {value}, which {self.NAME} masks never "
                            f"use (they hold {allowed}): is it a {self.NAME} annotation?")

    # -- shared ---------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.NAME

    @property
    def num_class(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return len(self.images)

    def target(self, mask: Image.Image, index: int) -> torch.Tensor:
        target = self.values[np.asarray(mask)]
        if (target == INVALID).any():
            raise self.value_error(index, int(np.asarray(mask)[target == INVALID].min()))
        return torch.from_numpy(target)

    def check_masks(self) -> None:
        """Read every mask once and stop at the first (in order) with a value the dataset never uses."""
        def bad_value(index):
            values = np.flatnonzero(self.load_mask(index).histogram())  # 256 bins of an 8-bit mask: fast, in C
            bad = values[self.values[values] == INVALID]
            return int(bad[0]) if len(bad) else None

        with ThreadPoolExecutor(max_workers=4) as pool:  # decoding PNGs releases the GIL
            for index, value in enumerate(pool.map(bad_value, range(len(self)))):
                if value is not None:
                    raise self.value_error(index, value)

    def mask_values(self, classes: np.ndarray) -> np.ndarray:
        """Class ids back to the dataset's own mask values (upstream's ``make_pred``), for written masks."""
        back = np.zeros(self.num_class, np.int64)
        for value in np.flatnonzero(self.values >= 0):  # one value a class in every layout
            back[self.values[value]] = value
        return back[classes]

    def __getitem__(self, key):
        """``key``: an index, or ``(index, epoch)`` from ``EpochSampler`` (augmentation then depends on
        seed, epoch and index only: reproducible across workers and when a run resumes)."""
        index, epoch = key if isinstance(key, tuple) else (key, None)
        rng = self._rng
        if epoch is not None and self.seed is not None:
            rng = random.Random(f"{self.seed}-{epoch}-{index}")
        img = open_image(self.images[index]).convert("RGB")
        mask = self.load_mask(index)
        if img.size != mask.size:
            raise LangSegError(
                f"mask {self.masks[index]} is {mask.size[0]}x{mask.size[1]} but its image is "
                f"{img.size[0]}x{img.size[1]}: they must have the same size"
            )
        if self.mode == "train":
            img, mask = sync_transform(img, mask, self.base_size, self.crop_size, self.blur, rng, self.MASK_FILL)
        elif self.mode == "val":
            img, mask = val_sync_transform(img, mask, self.crop_size)
        return to_normalized_tensor(img), self.target(mask, index)

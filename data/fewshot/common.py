"""What the few-shot readers share: upstream's episode layout, image transform and mask resizing.

An episode (``FewShotDataset[i]``) is a dict under upstream's keys: ``query_img`` (3, S, S) float32,
``query_mask`` (S, S) 0/1 float32, ``query_ignore_idx`` (S, S) 0/1 (PASCAL's boundary pixels; zeros
elsewhere), ``support_imgs`` (shot, 3, S, S), ``support_masks``, ``support_ignore_idxs`` (shot, S, S),
``class_id``, plus ``class_name`` (the label, from upstream's ``label_files/fewshot_<benchmark>.txt``),
``query_name`` and ``support_names``. Images are resized to S x S with PIL's bilinear filter and
normalised as torchvision's ``Resize``/``ToTensor``/``Normalize`` do in upstream's ``FSSDataset``;
masks are resized as ``F.interpolate(mode="nearest")`` does.

Episodes of the evaluation splits are drawn once, in order, from one ``RandomState(seed)``: the same
calls upstream makes after ``utils.fix_randseed(seed)``, so a run gives upstream's episodes and two runs
score the same. Training episodes draw from a generator of their own per ``(seed, index)`` (or
``(seed, epoch, index)``), so workers and shuffling do not change them.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from lang_seg.config import CLIP_LSEG_NORM
from lang_seg.errors import LangSegError
from lang_seg.fewshot import BENCHMARKS, check_fold, check_shots
from lang_seg.label_files import LABEL_DIR

IMG_SIZE = 480  # upstream's FSSDataset.initialize(img_size=480)
EVAL_EPISODES = 1000  # PASCAL-5i and COCO-20i test on 1000 episodes (FSS-1000 on every image)


def transform(image: Image.Image, size: int, norm) -> np.ndarray:
    """torchvision's Resize((size, size)) on a PIL image, ToTensor and Normalize(mean, std), in numpy."""
    image = image.convert("RGB").resize((size, size), Image.BILINEAR)
    x = np.asarray(image, np.uint8).astype(np.float32) / np.float32(255)
    mean, std = (np.asarray(v, np.float32) for v in norm)
    return ((x - mean) / std).transpose(2, 0, 1).copy()


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source rows of torch's ``F.interpolate(mode="nearest")``: ``floor(i * (in / out))`` in float32."""
    if n_in == n_out:
        return np.arange(n_out)
    scale = np.float32(n_in) / np.float32(n_out)
    return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64), n_in - 1)


def resize_nearest(mask: np.ndarray, size: int) -> np.ndarray:
    rows, cols = nearest_indices(mask.shape[0], size), nearest_indices(mask.shape[1], size)
    return mask[rows][:, cols]


def read_labels(benchmark: str) -> List[str]:
    """Upstream's label file: the label of class id i on line i + 1."""
    path = LABEL_DIR / BENCHMARKS[benchmark].label_file
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]


def open_image(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
        return image
    except FileNotFoundError:
        raise LangSegError(f"{path} is missing: the dataset is incomplete") from None
    except OSError as exc:
        raise LangSegError(f"{path} cannot be read ({exc}): the dataset is damaged") from None


class FewShotDataset:
    """Base of the three readers; subclasses know their layout, their lists and how upstream samples."""

    benchmark = "?"
    layout = "?"  # the folders expected under --datapath, for the error that names them

    def __init__(self, datapath, fold: int, split: str, shot: int, img_size: int = IMG_SIZE,
                 norm=CLIP_LSEG_NORM, seed: int = 0, load_support: bool = True):
        self.fold = check_fold(fold)
        self.shot = check_shots(shot)
        if split not in ("trn", "val", "test"):
            raise LangSegError(f"unknown split {split!r}: choose trn, val or test")
        self.split = split
        self.img_size = img_size
        self.norm = norm
        self.seed = seed
        self.load_support = load_support
        self.datapath = Path(datapath)
        self.labels = read_labels(self.benchmark)
        self.setup()
        self.episodes: Optional[List[Tuple[str, List[str], int]]] = None
        if self.split != "trn":
            rng = np.random.RandomState(seed)
            self.episodes = [self.sample(i, rng) for i in range(len(self))]
            self.check_files(self.episodes)

    def missing_layout(self) -> LangSegError:
        title = BENCHMARKS[self.benchmark].title
        return LangSegError(f"{title} not found under {self.datapath}: expected {self.layout} (HSNet's Datasets_HSN "
                            "layout, as upstream reads it; see docs/zero-shot.md), or pass --datapath")

    # -- what subclasses provide ------------------------------------------
    def setup(self) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def sample(self, index: int, rng: np.random.RandomState) -> Tuple[str, List[str], int]:
        """``(query, supports, class id)`` of episode ``index``, drawing from ``rng`` as upstream does."""
        raise NotImplementedError

    def image_path(self, name: str) -> Path:
        raise NotImplementedError

    def read_mask(self, name: str, class_id: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(mask, ignore)``: 0/1 uint8 arrays at the image's size."""
        raise NotImplementedError

    def mask_path(self, name: str) -> Path:
        raise NotImplementedError

    # -- shared -----------------------------------------------------------
    def check_files(self, episodes: Sequence[Tuple[str, List[str], int]]) -> None:
        """Every picture and mask the episodes need, before any is read: one line for an incomplete copy."""
        names = dict.fromkeys(n for query, supports, _ in episodes
                              for n in [query, *(supports if self.load_support else [])])
        missing = [p for n in names for p in (self.image_path(n), self.mask_path(n)) if not p.is_file()]
        if missing:
            raise LangSegError(f"{len(missing)} of the files the {len(episodes)} episodes need are missing under "
                               f"{self.datapath} (first: {missing[0]}): the dataset is incomplete")

    def episode(self, index: int, epoch: Optional[int] = None) -> Tuple[str, List[str], int]:
        if self.episodes is not None:
            return self.episodes[index]
        key = [self.seed, index] if epoch is None else [self.seed, epoch, index]
        return self.sample(index, np.random.RandomState(key))

    def load(self, name: str, class_id: int):
        image = transform(open_image(self.image_path(name)), self.img_size, self.norm)
        mask, ignore = self.read_mask(name, class_id)
        return image, resize_nearest(mask, self.img_size), resize_nearest(ignore, self.img_size)

    def __getitem__(self, index) -> dict:
        """Episode ``index``; ``(index, epoch)`` (``lang_seg.data.datamodule.EpochSampler``'s items) draws a
        training episode's supports anew each epoch, as upstream's generator does, reproducibly."""
        index, epoch = index if isinstance(index, tuple) else (index, None)
        if not 0 <= index < len(self):
            raise IndexError(index)
        query, supports, class_id = self.episode(index, epoch)
        image, mask, ignore = self.load(query, class_id)
        size = self.img_size
        loaded = [self.load(n, class_id) for n in supports] if self.load_support else []
        return {
            "query_img": image,
            "query_mask": mask.astype(np.float32),
            "query_ignore_idx": ignore.astype(np.float32),
            "query_name": query,
            "support_imgs": np.stack([s[0] for s in loaded]) if loaded else np.zeros((0, 3, size, size), np.float32),
            "support_masks": np.stack([s[1] for s in loaded]).astype(np.float32) if loaded
            else np.zeros((0, size, size), np.float32),
            "support_ignore_idxs": np.stack([s[2] for s in loaded]).astype(np.float32) if loaded
            else np.zeros((0, size, size), np.float32),
            "support_names": list(supports),
            "class_id": class_id,
            "class_name": self.labels[class_id],
        }


def choose(rng: np.random.RandomState, population):
    """One draw as upstream's ``np.random.choice(population, 1, replace=False)[0]`` makes it."""
    return rng.choice(population, 1, replace=False)[0]


def draw_supports(rng, population, query: str, shot: int, name=lambda x: x) -> List[str]:
    """Upstream's loop: draw until ``shot`` supports other than the query (repeats allowed, as upstream)."""
    supports = []
    while shot and len(supports) < shot:
        candidate = name(choose(rng, population))
        if candidate != query:
            supports.append(candidate)
    return supports

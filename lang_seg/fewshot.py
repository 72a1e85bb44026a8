"""The few-shot benchmarks' facts and upstream's scoring of them (numpy only).

LSeg's zero-shot and few-shot results are scored as upstream's ``test_lseg_zs.py``
does with HSNet's ``fewshot_data/common``: each episode asks one class of one
image; the network scores every pixel on the pair ``["others", class]`` and the
argmax is the foreground mask. ``Evaluator.classify_prediction`` counts, per
episode, the intersection and union of background (0) and foreground (1) over
the pixels that are neither ignored nor outside ``[0, 1]`` (``torch.histc``
bins); on PASCAL-5i the boundary pixels (255 in the annotation) are ignored, on
COCO-20i and FSS-1000 none are. ``AverageMeter`` sums both per class; then

- mIoU = the mean over the fold's classes of the foreground IoU
  ``intersection / max(union, 1)``, x 100;
- FB-IoU = the mean of background and foreground IoU, each summed over the
  fold's classes first, x 100.

A fold's class that no episode asked counts 0 in the mIoU, as upstream. Counts are summed in
float64 (upstream's float32 GPU buffers round past 2**24 pixels a class, far below the two
decimals it prints).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .errors import LangSegError

BACKGROUND = "others"  # upstream's label of the rest of the image in every episode (lseg_net_zs.py)
IGNORE = 255  # upstream's Evaluator.ignore_index
FOLDS = 4
UPSTREAM_DATAPATH = "fewshot_data/Datasets_HSN"  # upstream's default --datapath (HSNet's layout)


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    classes: int
    label_file: str  # upstream's label_files/fewshot_<name>.txt: the label of class id i on line i + 1


BENCHMARKS: Dict[str, Benchmark] = {
    "pascal": Benchmark("pascal", "PASCAL-5i", 20, "fewshot_pascal.txt"),
    "coco": Benchmark("coco", "COCO-20i", 80, "fewshot_coco.txt"),
    "fss": Benchmark("fss", "FSS-1000", 1000, "fewshot_fss.txt"),
}
FSS_RANGES = {"trn": (0, 520), "val": (520, 760), "test": (760, 1000)}  # FSS-1000's class ids by split


def check_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise LangSegError(f"unknown benchmark {name!r}: choose one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def check_fold(fold: int) -> int:
    if fold not in range(FOLDS):
        raise LangSegError(f"fold {fold} does not exist: the benchmarks have folds 0 to {FOLDS - 1}")
    return fold


def check_shots(shots: int) -> int:
    if shots < 0:
        raise LangSegError(f"--nshot {shots}: the number of support images is 0 (zero-shot) or more")
    return shots


def fold_classes(benchmark: str, fold: int, split: str) -> List[int]:
    """Class ids of a fold: the tested ones (``split`` val/test) or the training ones (trn), as upstream's readers.

    PASCAL-5i: fold f tests classes 5f..5f+4; COCO-20i: f, f+4, ..., f+76; FSS-1000 has no folds (its
    trn/val/test splits hold classes 0-519, 520-759, 760-999).
    """
    check_benchmark(benchmark)
    check_fold(fold)
    if benchmark == "fss":
        low, high = FSS_RANGES[split]
        return list(range(low, high))
    n = BENCHMARKS[benchmark].classes
    per_fold = n // FOLDS
    tested = ([fold * per_fold + i for i in range(per_fold)] if benchmark == "pascal"
              else [fold + FOLDS * v for v in range(per_fold)])
    return tested if split in ("val", "test") else [c for c in range(n) if c not in tested]


def episode_labels(class_name: str) -> List[str]:
    """The label pair an episode scores pixels on: background, then the class (upstream's ``['others', '']``)."""
    return [BACKGROUND, class_name]


def episode_predictions(model, images: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """``(N, H, W)`` 0/1 masks: image i scored on ``episode_labels(class_names[i])`` through ``model.logits``.

    Images of one class go through the network together (one forward per distinct class of the batch).
    """
    masks = np.zeros((len(images),) + images.shape[2:], np.int64)
    names = list(class_names)
    for name in dict.fromkeys(names):
        rows = [i for i, n in enumerate(names) if n == name]
        masks[rows] = model.logits(np.ascontiguousarray(images[rows]), episode_labels(name)).argmax(1)
    return masks


def classify_prediction(prediction: np.ndarray, target: np.ndarray, ignore: np.ndarray = None
                        ) -> Tuple[np.ndarray, np.ndarray]:
    """Upstream's ``Evaluator.classify_prediction``: ``(intersection, union)``, each ``(2, N)`` (background,
    foreground) for a batch of ``(N, H, W)`` masks; ``ignore`` (1 = ignored, PASCAL's boundaries) may be None."""
    prediction = np.array(prediction, dtype=np.int64)  # a copy: ignored pixels are overwritten
    target = np.asarray(target).astype(np.int64)
    if prediction.shape != target.shape:
        raise LangSegError(f"prediction and target masks differ in shape: {prediction.shape} and {target.shape}")
    if ignore is not None:
        ignore = np.asarray(ignore).astype(np.int64)
        if np.logical_and(ignore, target).any():
            raise LangSegError("ignored pixels overlap the target's foreground: the masks are not upstream's")
        target = target + ignore * IGNORE
        prediction[target == IGNORE] = IGNORE
    inter = np.zeros((2, len(prediction)), np.int64)
    area_pred = np.zeros_like(inter)
    area_target = np.zeros_like(inter)
    for i, (p, t) in enumerate(zip(prediction, target)):
        inter[:, i] = _histogram(p[p == t])
        area_pred[:, i] = _histogram(p)
        area_target[:, i] = _histogram(t)
    return inter, area_pred + area_target - inter


def _histogram(values: np.ndarray) -> np.ndarray:
    """``torch.histc(values, bins=2, min=0, max=1)`` for integer masks: counts of 0 and 1, other values dropped."""
    return np.array([np.count_nonzero(values == 0), np.count_nonzero(values == 1)], np.int64)


class FewShotMetric:
    """Upstream's ``AverageMeter``: intersection and union summed per class; ``miou``/``fb_iou`` over the fold."""

    def __init__(self, benchmark: str, class_ids: Sequence[int]):
        self.benchmark = check_benchmark(benchmark)
        self.class_ids = [int(c) for c in class_ids]
        if not self.class_ids or min(self.class_ids) < 0 or max(self.class_ids) >= self.benchmark.classes:
            raise LangSegError(f"class ids of {self.benchmark.title} run from 0 to {self.benchmark.classes - 1}")
        self.intersection = np.zeros((2, self.benchmark.classes), np.float64)
        self.union = np.zeros_like(self.intersection)
        self.episodes = np.zeros(self.benchmark.classes, np.int64)  # per class

    def update(self, intersection: np.ndarray, union: np.ndarray, class_ids: Sequence[int]) -> None:
        ids = np.asarray(class_ids, np.int64)
        np.add.at(self.intersection, (slice(None), ids), intersection)
        np.add.at(self.union, (slice(None), ids), union)
        np.add.at(self.episodes, ids, 1)

    def add(self, prediction, target, class_ids: Sequence[int], ignore=None) -> None:
        """One batch of episodes: 0/1 predicted masks, 0/1 targets, the episodes' class ids."""
        self.update(*classify_prediction(prediction, target, ignore), class_ids)

    def class_iou(self) -> np.ndarray:
        """``(2, len(class_ids))`` background and foreground IoU of the fold's classes."""
        iou = self.intersection / np.maximum(self.union, 1.0)
        return iou[:, self.class_ids]

    def miou(self) -> float:
        return float(self.class_iou()[1].mean() * 100)

    def fb_iou(self) -> float:
        inter = self.intersection[:, self.class_ids].sum(axis=1)
        union = self.union[:, self.class_ids].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):  # no episode yet: nan, as upstream's 0 / 0
            return float((inter / union).mean() * 100)

"""Pixel accuracy and mIoU with upstream lang-seg's definitions (torch-encoding's ``SegmentationMetric``).

Counts accumulate over the whole evaluation, then

- pixel accuracy = correct labelled pixels / labelled pixels (pixels whose target
  is the ignore index are neither);
- IoU of class c = intersection / (eps + union), counted over labelled pixels
  only (a prediction on an ignored pixel is not a false positive);
- mIoU = the mean of the IoUs over *all* classes: a class absent from both the
  predictions and the targets has IoU 0 and still counts in the mean, as
  upstream reports it. ``miou_present`` is the mean over classes with a
  non-empty union, for small or partial datasets.

``eps`` is ``np.spacing(1)`` as upstream. The numbers match upstream's
``get_pixacc_miou``; its per-class figure in ``test_lseg.py`` differs (a mean of
the running IoU after each image), here it is the final IoU whose mean is the mIoU.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import LangSegError

EPS = np.spacing(1)


class SegmentationMetric:
    """Accumulates ``update(prediction, target)`` over label maps; ``summary()`` gives the figures."""

    def __init__(self, num_classes: int, ignore_index: int = -1):
        if num_classes < 1:
            raise LangSegError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.correct = 0
        self.labelled = 0
        self.intersection = np.zeros(self.num_classes, np.int64)
        self.predicted = np.zeros(self.num_classes, np.int64)
        self.target = np.zeros(self.num_classes, np.int64)

    def update(self, prediction: np.ndarray, target: np.ndarray) -> None:
        """``prediction``: class ids (an argmax map); ``target``: class ids or ``ignore_index``; same shape."""
        prediction = np.asarray(prediction).astype(np.int64, copy=False).ravel()
        target = np.asarray(target).astype(np.int64, copy=False).ravel()
        if prediction.shape != target.shape:
            raise LangSegError(f"prediction and target sizes differ: {prediction.size} and {target.size} pixels")
        labelled = target != self.ignore_index
        target, prediction = target[labelled], prediction[labelled]
        for name, ids in (("target", target), ("prediction", prediction)):
            if ids.size and (ids.min() < 0 or ids.max() >= self.num_classes):
                bad = ids.min() if ids.min() < 0 else ids.max()
                raise LangSegError(
                    f"{name} has class id {bad}, outside 0..{self.num_classes - 1} "
                    f"(ignore index {self.ignore_index}): check the masks and --ignore_index"
                )
        hit = prediction == target
        self.correct += int(hit.sum())
        self.labelled += int(target.size)
        self.intersection += np.bincount(target[hit], minlength=self.num_classes)
        self.predicted += np.bincount(prediction, minlength=self.num_classes)
        self.target += np.bincount(target, minlength=self.num_classes)

    @property
    def union(self) -> np.ndarray:
        return self.predicted + self.target - self.intersection

    def pixel_accuracy(self) -> float:
        return float(self.correct / (EPS + self.labelled))

    def iou(self) -> np.ndarray:
        return self.intersection / (EPS + self.union)

    def miou(self) -> float:
        """Upstream's mIoU: the mean over all classes."""
        return float(self.iou().mean())

    def miou_present(self) -> float:
        """The mean over classes that occur in the predictions or the targets (nan if none)."""
        present = self.union > 0
        return float(self.iou()[present].mean()) if present.any() else float("nan")

    def summary(self, class_names: Optional[Sequence[str]] = None) -> Dict[str, object]:
        names: List[str] = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        iou = self.iou()
        return {
            "pix_acc": self.pixel_accuracy(),
            "miou": self.miou(),
            "miou_present": self.miou_present(),
            "labelled_pixels": int(self.labelled),
            "per_class": [
                {"class": names[i], "iou": float(iou[i]), "target_pixels": int(self.target[i]),
                 "predicted_pixels": int(self.predicted[i])}
                for i in range(self.num_classes)
            ],
        }

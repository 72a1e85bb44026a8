"""Pixel accuracy and mIoU with upstream lang-seg's definitions (torch-encoding's ``SegmentationMetric``),
one implementation for training's validation (``lang_seg.modules.lsegmentation_module``, logged as
``pix_acc``, ``mIoU``, ``mIoU_present``) and ``test_lseg.py --eval``.

A torchmetrics ``MulticlassJaccardIndex`` accumulates the confusion matrix over the whole evaluation (summed
across processes under DDP when computed); from it

- pixel accuracy = correct labelled pixels / labelled pixels (pixels whose target
  is the ignore index are neither);
- IoU of class c = intersection / (eps + union), counted over labelled pixels
  only (a prediction on an ignored pixel is not a false positive);
- mIoU = the mean of the IoUs over *all* classes: a class absent from both the
  predictions and the targets has IoU 0 and still counts in the mean, as
  upstream reports it. ``miou_present`` is the mean over classes with a
  non-empty union, for small or partial datasets.

``eps`` is ``np.spacing(1)`` as upstream; figures are computed in float64 from integer counts. The numbers match upstream's
``get_pixacc_miou``; its per-class figure in ``test_lseg.py`` differs (a mean of
the running IoU after each image), here it is the final IoU whose mean is the mIoU.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from .errors import LangSegError

EPS = np.spacing(1)


class SegmentationMetric(MulticlassJaccardIndex):
    """``update(prediction, target)`` over label maps (numpy arrays or torch tensors, on any device);
    ``compute()`` gives ``{"pix_acc", "miou", "miou_present"}`` as float64 tensors (what Lightning logs),
    ``summary()`` adds the per-class figures (what ``test_lseg.py --eval`` writes)."""

    def __init__(self, num_classes: int, ignore_index: int = -1, **kwargs):
        if num_classes < 1:
            raise LangSegError(f"num_classes must be at least 1, got {num_classes}")
        # torchmetrics' own checks are left off: update() checks the class ids and says which flag to fix
        super().__init__(num_classes, average="none", ignore_index=ignore_index, validate_args=False, **kwargs)

    def update(self, prediction, target) -> None:
        """``prediction``: class ids (an argmax map); ``target``: class ids or ``ignore_index``; same shape."""
        prediction, target = torch.as_tensor(prediction), torch.as_tensor(target)
        if prediction.shape != target.shape:
            raise LangSegError(f"prediction and target sizes differ: {prediction.numel()} and {target.numel()} pixels")
        labelled = target != self.ignore_index
        for name, ids in (("target", target[labelled]), ("prediction", prediction[labelled])):
            if ids.numel():
                low, high = int(ids.min()), int(ids.max())
                if low < 0 or high >= self.num_classes:
                    raise LangSegError(
                        f"{name} has class id {low if low < 0 else high}, outside 0..{self.num_classes - 1} "
                        f"(ignore index {self.ignore_index}): check the masks and --ignore_index"
                    )
        super().update(prediction.long(), target.long())

    # counts, from the confusion matrix (rows: target, columns: prediction), labelled pixels only
    def _counts(self) -> np.ndarray:
        return self.confmat.detach().cpu().numpy().astype(np.int64)

    @property
    def intersection(self) -> np.ndarray:
        return np.diag(self._counts())

    @property
    def predicted(self) -> np.ndarray:
        return self._counts().sum(0)

    @property
    def target(self) -> np.ndarray:
        return self._counts().sum(1)

    @property
    def union(self) -> np.ndarray:
        counts = self._counts()
        return counts.sum(0) + counts.sum(1) - np.diag(counts)

    @property
    def labelled(self) -> int:
        return int(self._counts().sum())

    @property
    def correct(self) -> int:
        return int(np.trace(self._counts()))

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

    def compute(self) -> Dict[str, torch.Tensor]:
        # the wrapped compute has summed confmat across processes (DDP) before this runs
        figures = dict(pix_acc=self.pixel_accuracy(), miou=self.miou(), miou_present=self.miou_present())
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in figures.items()}

    def summary(self, class_names: Optional[Sequence[str]] = None) -> Dict[str, object]:
        names: List[str] = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        iou, target, predicted = self.iou(), self.target, self.predicted
        return {
            "pix_acc": self.pixel_accuracy(),
            "miou": self.miou(),
            "miou_present": self.miou_present(),
            "labelled_pixels": self.labelled,
            "per_class": [
                {"class": names[i], "iou": float(iou[i]), "target_pixels": int(target[i]),
                 "predicted_pixels": int(predicted[i])}
                for i in range(self.num_classes)
            ],
        }

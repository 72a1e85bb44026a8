"""Upstream lang-seg's multi-scale, flipped, sliding-window evaluator, in numpy on top of ``SegModel.logits``.

For each scale s the image's long side is resized to ``ceil(base_size * s)``
(bilinear, corners aligned, as torch-encoding's ``resize_image``), padded on the
right and bottom up to ``crop_size`` with the normalised value of a black pixel
(``-mean / std`` = -1, upstream's ``pad_image``), and cut into ``crop_size``
windows every ``int(crop_size * 2 / 3)`` pixels; a window running past the edge
is padded again to ``crop_size``. Each window's scores, plus the mirrored
scores of the mirrored window with ``flip``, are summed, averaged where windows
overlap, cropped to the resized image, resized back to the input size and
summed over the scales. Only the label with the highest score matters.

All windows (and their mirror images) have the same size, so the windows of
one scale go through the network together, ``max_batch`` at a time. Because it
only calls ``logits``, the evaluator is the same for both backends.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .errors import LangSegError
from .images import NORM_MEAN, NORM_STD, normalize, to_rgb
from .labels import ade20k_labels, check_labels, parse_labels

DEFAULT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # upstream, ADE20K and the others
CITYS_SCALES = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25)  # upstream, Cityscapes
BASE_SIZE = 520
CROP_SIZE = 480
STRIDE_RATE = 2.0 / 3.0


def base_size_for(crop_size: int) -> int:
    """The base size in upstream's proportion (520 for windows of 480) for windows of ``crop_size``."""
    return round(crop_size * BASE_SIZE / CROP_SIZE)


PAD_VALUE = -NORM_MEAN / NORM_STD  # a black pixel after normalisation
# Windows per logits call. Two = a window and its mirror image. Peak memory of one 480x480 window on CPU
# (clip_vitl16_384, 5 labels): torch ~0.6 GB more per window in the batch (2.9 GB at 1, 3.4 GB at 2),
# MindSpore's compiled graph ~3.3 GB more (7.4 GB at 1, 10.7 GB at 2); raise it where memory allows.
DEFAULT_MAX_BATCH = 2


def scaled_size(height: int, width: int, base_size: int, scale: float) -> Tuple[int, int]:
    """Upstream's size at one scale: long side ``ceil(base_size * scale)``, short side rounded in proportion."""
    long_size = int(math.ceil(base_size * scale))
    if height > width:
        return long_size, max(1, int(1.0 * width * long_size / height + 0.5))
    return max(1, int(1.0 * height * long_size / width + 0.5)), long_size


def _axis_weights(n_in: int, n_out: int):
    """Source indices and weights of bilinear resampling with aligned corners along one axis."""
    if n_in == 1 or n_out == 1:
        src = np.zeros(n_out, np.float64)
    else:
        src = np.arange(n_out, dtype=np.float64) * ((n_in - 1) / (n_out - 1))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def bilinear_resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(C, H, W)`` -> ``(C, height, width)`` float32, as ``F.interpolate(mode='bilinear', align_corners=True)``."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape[1] != height:
        i0, i1, f = _axis_weights(x.shape[1], height)
        f = f[:, None]
        out = x[:, i0, :]  # fancy indexing copies: safe to update in place (one temporary less)
        out *= 1.0 - f
        out += x[:, i1, :] * f
        x = out
    if x.shape[2] != width:
        i0, i1, f = _axis_weights(x.shape[2], width)
        out = x[:, :, i0]
        out *= 1.0 - f
        out += x[:, :, i1] * f
        x = out
    return x


@dataclass(frozen=True)
class WindowPlan:
    """``crop_size`` windows ``(h0, h1, w0, w1)`` over the image padded to ``padded`` = (height, width)."""

    padded: Tuple[int, int]
    windows: Tuple[Tuple[int, int, int, int], ...]
    crop_size: int


def plan_windows(height: int, width: int, crop_size: int, stride: Optional[int] = None) -> WindowPlan:
    """Upstream's grid: pad each side up to ``crop_size``, windows every ``stride`` (default 2/3 of the
    crop) from the top-left corner, as many as it takes to reach the far edge."""
    if height < 1 or width < 1:
        raise LangSegError(f"cannot plan windows over an empty {height}x{width} image")
    stride = stride or int(crop_size * STRIDE_RATE)
    if not 0 < stride <= crop_size:
        raise LangSegError(f"window stride {stride} must be between 1 and the crop size {crop_size}")
    ph, pw = max(height, crop_size), max(width, crop_size)
    rows = int(math.ceil((ph - crop_size) / stride)) + 1
    cols = int(math.ceil((pw - crop_size) / stride)) + 1
    windows = tuple(
        (r * stride, min(r * stride + crop_size, ph), c * stride, min(c * stride + crop_size, pw))
        for r in range(rows)
        for c in range(cols)
    )
    return WindowPlan((ph, pw), windows, crop_size)


def label_set(labels) -> List[str]:
    """A string (comma-separated labels, a label file or 'default') or a list; repeats are an error,
    except in the ADE20K class list (it names 'screen' twice)."""
    if isinstance(labels, str):
        return parse_labels(labels)
    labels = check_labels(list(labels) if labels is not None else [], unique=False)
    if labels != ade20k_labels():
        check_labels(labels)
    return labels


class MultiScaleEvaluator:
    """``scores(image, labels)`` / ``predict(image, labels)`` of one normalised ``(3, H, W)`` image."""

    def __init__(self, model, scales: Sequence[float] = DEFAULT_SCALES, flip: bool = True,
                 base_size: int = BASE_SIZE, crop_size: int = CROP_SIZE, max_batch: int = DEFAULT_MAX_BATCH):
        scales = tuple(float(s) for s in scales)
        if not scales or any(not math.isfinite(s) or s <= 0 for s in scales):
            raise LangSegError(f"scales must be positive numbers, got {list(scales)}")
        if base_size < 1:
            raise LangSegError(f"base size must be positive, got {base_size}")
        patch = model.patch_size
        if crop_size < patch or crop_size % patch:
            raise LangSegError(
                f"crop size {crop_size} is not a multiple of the patch size {patch}: "
                f"use e.g. {max(patch, round(crop_size / patch) * patch)}"
            )
        if max_batch < 1:
            raise LangSegError(f"max batch must be at least 1, got {max_batch}")
        self.model = model
        self.scales = scales
        self.flip = flip
        self.base_size = base_size
        self.crop_size = crop_size
        self.max_batch = max_batch
        self.batch_sizes: List[int] = []  # the logits calls of the last image, for tests and benchmarks

    def predict(self, image: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        """``(H, W)`` int64 label ids (argmax of the summed scores)."""
        return self.scores(image, labels).argmax(axis=0)

    def scores(self, image: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        """``(len(labels), H, W)`` float32 scores summed over the scales."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[0] != 3 or image.dtype != np.float32:
            raise LangSegError(
                f"the evaluator takes one normalised float32 (3, H, W) image, got {image.dtype} {image.shape}"
            )
        labels = check_labels(labels, unique=False)
        _, h, w = image.shape
        self.batch_sizes = []
        total = np.zeros((len(labels), h, w), np.float32)
        for scale in self.scales:
            height, width = scaled_size(h, w, self.base_size, scale)
            scored = self._scores_at_size(bilinear_resize(image, height, width), labels)
            total += bilinear_resize(scored, h, w)
        return total

    def _scores_at_size(self, image: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        _, height, width = image.shape
        crop = self.crop_size
        plan = plan_windows(height, width, crop)
        ph, pw = plan.padded
        padded = np.full((3, ph, pw), PAD_VALUE, np.float32)
        padded[:, :height, :width] = image
        # (window index, mirrored) pairs; a window and its mirror image travel in the same batch when they can
        jobs = [(i, mirrored) for i in range(len(plan.windows)) for mirrored in ((False, True) if self.flip else (False,))]
        acc = np.zeros((len(labels), ph, pw), np.float32)
        for start in range(0, len(jobs), self.max_batch):
            chunk = jobs[start:start + self.max_batch]
            batch = np.full((len(chunk), 3, crop, crop), PAD_VALUE, np.float32)
            for k, (i, mirrored) in enumerate(chunk):
                h0, h1, w0, w1 = plan.windows[i]
                batch[k, :, : h1 - h0, : w1 - w0] = padded[:, h0:h1, w0:w1]
                if mirrored:  # the whole padded window, mirrored
                    batch[k] = batch[k, :, :, ::-1].copy()
            self.batch_sizes.append(len(chunk))
            out = self.model.logits(batch, labels)
            for k, (i, mirrored) in enumerate(chunk):
                h0, h1, w0, w1 = plan.windows[i]
                scores = out[k, :, :, ::-1] if mirrored else out[k]  # mirrored back
                acc[:, h0:h1, w0:w1] += scores[:, : h1 - h0, : w1 - w0]
        count = np.zeros((ph, pw), np.float32)
        for h0, h1, w0, w1 in plan.windows:
            count[h0:h1, w0:w1] += 1.0
        return acc[:, :height, :width] / count[:height, :width]


def segment(model, image, labels, scales: Sequence[float] = DEFAULT_SCALES, flip: bool = True,
            base_size: int = BASE_SIZE, crop_size: int = CROP_SIZE, max_batch: int = DEFAULT_MAX_BATCH) -> np.ndarray:
    """``(H, W)`` int64 label ids of a picture (path, PIL image or array) for ``labels``."""
    labels = label_set(labels)
    evaluator = MultiScaleEvaluator(model, scales, flip, base_size, crop_size, max_batch)
    return evaluator.predict(normalize(to_rgb(image)), labels)

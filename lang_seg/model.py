"""The backend-independent model object that ``lang_seg.load_model`` returns."""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .config import CLIP_LSEG_NORM, LOGIT_SCALE, NetOptions, check_image_size
from .errors import LangSegError
from .evaluate import BASE_SIZE, CROP_SIZE, DEFAULT_MAX_BATCH, DEFAULT_SCALES, bilinear_resize, segment
from .labels import check_labels

TEXT_CACHE_SIZE = 8  # label sets; 150 ADE20K labels take 0.3 MB of features


def check_images(images, patch_size: int) -> np.ndarray:
    """``(N, 3, H, W)`` float32 normalised images, sides multiples of ``patch_size``."""
    if not isinstance(images, np.ndarray):
        raise LangSegError(f"images must be a numpy array (N, 3, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise LangSegError(f"images must have 4 dimensions (N, 3, H, W), got shape {images.shape}")
    if images.shape[1] != 3:
        raise LangSegError(f"images must have 3 colour channels in dimension 1, got shape {images.shape}")
    if images.dtype != np.float32:
        raise LangSegError(
            f"images must be float32 normalised with mean = std = 0.5 (got {images.dtype}): "
            "use (x / 255 - 0.5) / 0.5"
        )
    check_image_size(images.shape[2], images.shape[3], patch_size)
    bad = ~np.isfinite(images)
    if bad.any():  # they would turn every score they reach into NaN
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise LangSegError(f"images hold {int(bad.sum())} NaN or infinite values (first at index {where}): "
                           "replace them, e.g. with np.nan_to_num, before segmenting")
    return np.asarray(images, order="C")


def logits_from_embeddings(pixel_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    """The identity that ties the embeddings to ``SegModel.logits`` (``arch_option`` 0, upstream's LSeg):
    ``LOGIT_SCALE`` times each pixel's cosine similarity with each label, ``(N, L, H/2, W/2)``, then the head's
    x2 bilinear upsampling with aligned corners to ``(N, L, H, W)``. Numpy only: the runtime segmenter's path."""
    n, c, h, w = pixel_embeddings.shape
    pixels = np.ascontiguousarray(pixel_embeddings.reshape(n, c, h * w).transpose(0, 2, 1), dtype=np.float32)
    low = ((LOGIT_SCALE * pixels) @ text_embeddings.T.astype(np.float32)).transpose(0, 2, 1).reshape(n, -1, h, w)
    return np.stack([bilinear_resize(scores, 2 * h, 2 * w) for scores in low])


class SegModel:
    """LSeg on one backend. ``logits(images, labels)`` is the contract both backends share."""

    backend = "?"

    def __init__(self, options: NetOptions, device: str, unused_keys: Sequence[str] = ()):
        self.options = options
        self.device = device
        self.unused_keys: List[str] = list(unused_keys)
        self._text_cache: "OrderedDict[Tuple[str, ...], object]" = OrderedDict()

    @property
    def patch_size(self) -> int:
        return self.options.config.patch_size

    def text_features(self, labels: Sequence[str]):
        """Backend tensor ``(L, C)`` of CLIP features; computed once per label set (the last
        ``TEXT_CACHE_SIZE`` label sets are kept: a page serving several users alternates between them)."""
        key = tuple(check_labels(labels, unique=False))
        if key in self._text_cache:
            self._text_cache.move_to_end(key)
        else:
            self._text_cache[key] = self._encode_text(list(key))
            while len(self._text_cache) > TEXT_CACHE_SIZE:
                self._text_cache.popitem(last=False)
        return self._text_cache[key]

    def logits(self, images: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        """``(N, len(labels), H, W)`` float32 label scores, before any argmax."""
        images = check_images(images, self.patch_size)
        return self._forward(images, self.text_features(labels))

    def pixel_embeddings(self, images: np.ndarray) -> np.ndarray:
        """``(N, C, H/2, W/2)`` float32 per-pixel embeddings in CLIP's space, L2-normalised per pixel
        (C = the text tower's width: 512 for the ViT backbones, upstream's ``head1``).

        With ``arch_option`` 0 (upstream's LSeg), ``logits(images, labels)`` equals
        ``logits_from_embeddings(pixel_embeddings(images), text_embeddings(labels))``: the scaled cosine
        similarity, then the x2 upsampling (``arch_option`` 1 and 2 put a head block between the two).
        """
        return self._pixel_embeddings(check_images(images, self.patch_size))

    def text_embeddings(self, labels: Sequence[str]) -> np.ndarray:
        """``(L, C)`` float32 CLIP embeddings of the labels, L2-normalised (from the cached text features)."""
        return self._normalized_text(self.text_features(labels))

    def segment(self, image, labels, scales: Sequence[float] = DEFAULT_SCALES, flip: bool = True,
                base_size: int = BASE_SIZE, crop_size: int = CROP_SIZE,
                max_batch: int = DEFAULT_MAX_BATCH) -> np.ndarray:
        """``(H, W)`` int64 label ids of one picture, by upstream's multi-scale, flipped, sliding-window
        evaluation (``lang_seg.evaluate``).

        image: a path, a PIL image or an ``(H, W)``/``(H, W, 3)``/``(H, W, 4)`` array (uint8, uint16,
            or float in [0, 1]); greyscale, 16-bit and transparent pictures are converted.
        labels: a list of labels, a comma-separated string, a label file or 'default' (ADE20K's 150).
        scales: long side = ``base_size`` x scale for each; ``(1.0,)`` with ``flip=False`` is a single pass.
        crop_size: the window side, a multiple of the patch size; ``max_batch`` windows per forward call.
        """
        if self.options.config.norm != CLIP_LSEG_NORM:  # the evaluator normalises as LSeg's ViTs were trained
            raise LangSegError(f"segment() normalises pictures with mean = std = 0.5, but {self.options.backbone} "
                               "takes ImageNet-normalised ones (lang_seg.config.IMAGENET_NORM): normalise them so "
                               "and call logits()")
        return segment(self, image, labels, scales=scales, flip=flip, base_size=base_size, crop_size=crop_size,
                       max_batch=max_batch)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Weights under torch names, as numpy arrays."""
        raise NotImplementedError

    def _encode_text(self, labels: List[str]):
        raise NotImplementedError

    def _forward(self, images: np.ndarray, text_features) -> np.ndarray:
        raise NotImplementedError

    def _pixel_embeddings(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _normalized_text(self, text_features) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(backbone={self.options.backbone!r}, device={self.device!r})"

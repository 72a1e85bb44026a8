"""LSeg from an export folder on onnxruntime and numpy alone: no torch, no MindSpore.

``OnnxSegmenter(DIR)`` runs ``DIR/image_encoder.onnx`` and ``DIR/text_encoder.onnx``
and applies the identity that ties their outputs to ``SegModel.logits``
(``lang_seg.model.logits_from_embeddings``: scaled cosine, then the x2
upsampling); ``segment`` is upstream's multi-scale evaluator
(``lang_seg.evaluate``), the code ``SegModel.segment`` runs. Labels are
tokenised with CLIP's byte-pair vocabulary shipped in the folder.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np

from lang_seg.errors import LangSegError
from lang_seg.evaluate import BASE_SIZE, CROP_SIZE, DEFAULT_MAX_BATCH, DEFAULT_SCALES, segment
from lang_seg.labels import check_labels, token_ids
from lang_seg.model import TEXT_CACHE_SIZE, check_images, logits_from_embeddings

from .layout import (EXTRA, IMAGE_ENCODER, IMAGES, PIXEL_EMBEDDINGS, TEXT_EMBEDDINGS, TEXT_ENCODER, TOKENS, file_name,
                     read_manifest)

CPU = ("CPUExecutionProvider",)


def onnx_session(path, providers: Sequence[str] = CPU):
    """An onnxruntime session of ``path``; one line naming the extra when onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        raise LangSegError(f"onnxruntime is not installed: {EXTRA}") from None
    if not Path(path).is_file():
        raise LangSegError(f"{path} does not exist: export the folder again")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its shape-inference notes are not the user's business
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own classes for a damaged or foreign file
        raise LangSegError(f"onnxruntime cannot load {path} ({str(exc).splitlines()[0]}): export it again") from None


class OnnxSegmenter:
    """``logits(images, labels)`` and ``segment(image, labels)`` of an export folder, as ``SegModel``'s."""

    def __init__(self, folder, providers: Sequence[str] = CPU):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        if self.manifest["options"]["arch_option"] != 0:
            raise LangSegError(f"{folder} holds a model with arch_option {self.manifest['options']['arch_option']} "
                               "(a head block after the cosine logits, not exported): OnnxSegmenter runs "
                               "arch_option 0 (upstream's LSeg); its pixel and text encoders still load in onnxruntime")
        self.patch_size = int(self.manifest["patch_size"])
        tokenizer = self.manifest["tokenizer"]
        self.context_length = int(tokenizer["context_length"])
        self._vocabulary = str(self.folder / tokenizer["vocabulary"])
        self._image = onnx_session(self.folder / file_name(IMAGE_ENCODER, "onnx"), providers)
        self._text = onnx_session(self.folder / file_name(TEXT_ENCODER, "onnx"), providers)
        # the last label sets' embeddings, as SegModel keeps its text features
        self._embed = functools.lru_cache(maxsize=TEXT_CACHE_SIZE)(self._embed_labels)

    def text_embeddings(self, labels: Sequence[str]) -> np.ndarray:
        """``(L, C)`` float32 label embeddings, L2-normalised."""
        return self._embed(tuple(check_labels(labels, unique=False)))

    def _embed_labels(self, labels: Tuple[str, ...]) -> np.ndarray:
        tokens = token_ids(labels, self.context_length, vocabulary=self._vocabulary)
        return self._text.run([TEXT_EMBEDDINGS], {TOKENS: tokens})[0]

    def pixel_embeddings(self, images: np.ndarray) -> np.ndarray:
        """``(N, C, H/2, W/2)`` float32 per-pixel embeddings, L2-normalised per pixel."""
        images = check_images(images, self.patch_size)
        return self._image.run([PIXEL_EMBEDDINGS], {IMAGES: images})[0]

    def logits(self, images: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        """``(N, len(labels), H, W)`` float32 label scores, before any argmax."""
        return logits_from_embeddings(self.pixel_embeddings(images), self.text_embeddings(labels))

    def segment(self, image, labels, scales: Sequence[float] = DEFAULT_SCALES, flip: bool = True,
                base_size: int = BASE_SIZE, crop_size: int = CROP_SIZE,
                max_batch: int = DEFAULT_MAX_BATCH) -> np.ndarray:
        """``(H, W)`` int64 label ids of one picture, as ``SegModel.segment`` computes them."""
        return segment(self, image, labels, scales=scales, flip=flip, base_size=base_size, crop_size=crop_size,
                       max_batch=max_batch)

    def __repr__(self):
        return f"OnnxSegmenter({str(self.folder)!r}, backbone={self.manifest['backbone']!r})"

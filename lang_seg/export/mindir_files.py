"""MindIR files of the MindSpore port's two encoders, through ``mindspore.export``.

``text_encoder.mindir``: ``tokens (L, 77)`` int64 -> ``text_embeddings (L, C)``, L dynamic.
``image_encoder.mindir``: ``images (1, 3, H, W)`` -> ``pixel_embeddings (1, C, H/2, W/2)`` at the export's
size, because MindSpore 2.10 cannot run that graph with them dynamic (measured with ``tiny_vitb32``: with a
dynamic batch the file is written but its loaded graph fails in MindSpore's runtime, "The actor already
exists"; with a dynamic H/W ``mindspore.export`` itself fails at the position embeddings' resize to the grid).
"""
from __future__ import annotations

import os
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import nn

from lang_seg.files import umask_mode

from .layout import IMAGES, PIXEL_EMBEDDINGS, TEXT_EMBEDDINGS, TOKENS

FIXED_BATCH = 1
WHY_FIXED = "MindSpore 2.10's loaded graph of the image path does not run with a dynamic batch or size"


class ImageEncoder(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, images):
        return self.net.pixel_embeddings(images)


class TextEncoder(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, tokens):
        return self.net.text_embeddings(tokens)


def _export(cell, example, path) -> None:
    path = Path(path)
    cell.set_train(False)
    # MindSpore appends the suffix itself
    ms.export(cell, example, file_name=str(path.with_suffix("")), file_format="MINDIR")
    if not path.is_file():
        raise RuntimeError(f"mindspore.export did not write {path}")
    os.chmod(path, umask_mode())  # MindSpore writes it read-only for its owner


def write_image_encoder(net, path, height: int, width: int) -> dict:
    """``image_encoder.mindir`` of a MindSpore ``LSegNet``; returns its manifest entry (without the checks)."""
    _export(ImageEncoder(net), ms.Tensor(shape=[FIXED_BATCH, 3, height, width], dtype=ms.float32), path)
    return {"inputs": {IMAGES: {"shape": [FIXED_BATCH, 3, height, width], "dtype": "float32"}},
            "outputs": {PIXEL_EMBEDDINGS: {"shape": [FIXED_BATCH, net.out_c, height // 2, width // 2],
                                           "dtype": "float32"}},
            "dynamic": {}, "fixed": {"N": FIXED_BATCH, "H": height, "W": width, "why": WHY_FIXED}}


def write_text_encoder(net, path) -> dict:
    """``text_encoder.mindir`` of a MindSpore ``LSegNet``; returns its manifest entry (without the checks)."""
    context = net.clip_pretrained.context_length
    _export(TextEncoder(net), ms.Tensor(shape=[None, context], dtype=ms.int64), path)
    return {"inputs": {TOKENS: {"shape": ["L", context], "dtype": "int64"}},
            "outputs": {TEXT_EMBEDDINGS: {"shape": ["L", net.out_c], "dtype": "float32"}},
            "dynamic": {"L": "any"}, "fixed": {}}


def run(path, name: str, array: np.ndarray) -> np.ndarray:
    """The exported file's output for one input, through ``mindspore.load`` and ``nn.GraphCell``."""
    del name  # a GraphCell takes its inputs by position
    cell = nn.GraphCell(ms.load(str(path)))
    return cell(ms.Tensor(array)).asnumpy()

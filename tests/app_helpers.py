"""Shared by the browser demo's tests: a tiny checkpoint made in seconds, and crafted pictures."""
import io
import struct
import zlib
from pathlib import Path

import numpy as np

from .helpers import nontrivial_state

IMAGES = Path(__file__).resolve().parent.parent / "data" / "bundled" / "ADEChallengeData2016" / "images"
SCENE = IMAGES / "validation" / "ADE_validation_scene_val_000.jpg"  # 320x240, generated
SCENE_LABELS = ["sky", "grass", "tree", "road", "other"]
PHOTO = IMAGES / "training" / "ADE_training_voc_000.jpg"  # 500x375, PASCAL VOC
PHOTO_LABELS = ["person", "table", "chair", "wall", "other"]


def tiny_checkpoint(path) -> Path:
    """A tiny_vitb32 checkpoint (16 features, random weights, BatchNorm statistics and biases away from
    their defaults) that both backends read. On ``SCENE`` with ``SCENE_LABELS`` it gives several labels,
    not one everywhere as plain random weights do."""
    import lang_seg
    from lang_seg.checkpoint import save_checkpoint

    model = lang_seg.load_model(None, backend="torch", backbone="tiny_vitb32", features=16, seed=0)
    save_checkpoint(path, nontrivial_state(model.state_dict(), seed=0), model.options)
    return Path(path)


def png_bytes(array, mode=None) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    (Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A 16x16 PNG whose header claims ``width`` x ``height``: decoding it would fail, so a refusal that
    names the claimed size shows the size was checked before any decoding."""
    data = bytearray(png_bytes(np.zeros((16, 16, 3), np.uint8)))
    start = 8 + 8  # signature, then the IHDR chunk's length and type
    data[start:start + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:start + 13]))  # over the chunk type and its 13 data bytes
    data[start + 13:start + 17] = struct.pack(">I", crc)
    return bytes(data)

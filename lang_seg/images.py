"""Pictures in, label maps out: shared by ``SegModel.segment``, ``test_lseg.py`` and the demo.

Any picture becomes RGB uint8 ``(H, W, 3)``: greyscale is repeated over the
three channels, 16-bit values are scaled to 8 bits (``v / 257``), transparency
is composited onto white, and a photo's EXIF orientation is applied, so the
label map lines up with the picture as viewers show it.

Label maps are written as palette PNGs whose pixel values are the label ids.
The palette is ``imgviz.label_colormap()`` (the PASCAL VOC bit-interleaved
colour map, generated, not stored: id 0 black, 1 dark red, 2 green, ...), the
colours upstream lang-seg's label-set demo uses.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import LangSegError
from .files import atomic_write

NORM_MEAN = 0.5
NORM_STD = 0.5
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def read_image(path) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` of an image file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise LangSegError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            return pil_to_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise LangSegError(f"image {path} cannot be read ({exc})") from None


def pil_to_rgb(im) -> np.ndarray:
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode in SIXTEEN_BIT_MODES or im.mode == "F":
        return array_to_rgb(np.asarray(im), sixteen_bit=im.mode != "F")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return array_to_rgb(np.asarray(im.convert("RGBA")))
    return np.asarray(im.convert("RGB"))


def array_to_rgb(image: np.ndarray, sixteen_bit: bool = False) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` arrays: uint8 as they are, uint16
    (or ``sixteen_bit``) scaled by 1/257, floats in [0, 1] scaled by 255 (other floats read as 0-255)."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise LangSegError(
            f"an image array must be HxW, HxWx3 or HxWx4 (channels last), got shape {a.shape}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise LangSegError(f"the image is empty (shape {a.shape})")
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16 or (sixteen_bit and a.dtype.kind in "iu"):
        a = np.round(np.clip(a, 0, 65535) / 257.0).astype(np.uint8)
    elif a.dtype.kind in "iu":
        if a.min() < 0 or a.max() > 255:
            raise LangSegError(
                f"image values run from {a.min()} to {a.max()}: pass uint8 (0-255) or uint16 (0-65535) arrays"
            )
        a = a.astype(np.uint8)
    elif a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise LangSegError("the image has NaN or infinite values")
        scale = 255.0 if a.max() <= 1.0 else 1.0
        a = np.round(np.clip(a * scale, 0, 255)).astype(np.uint8)
    else:
        raise LangSegError(f"image arrays of type {a.dtype} are not supported: pass uint8, uint16 or float")
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 4:  # composite onto white
        alpha = a[:, :, 3:].astype(np.float32) / 255.0
        a = np.round(a[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(a)


def to_rgb(image) -> np.ndarray:
    """A path, a PIL image or an array -> RGB uint8 ``(H, W, 3)``."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, np.ndarray):
        return array_to_rgb(image)
    if hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image
        return pil_to_rgb(image)
    raise LangSegError(f"cannot read an image from a {type(image).__name__}: pass a path, a PIL image or an array")


def normalize(rgb: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` float32 with mean = std = 0.5, as LSeg was trained."""
    return ((rgb.astype(np.float32) / 255.0 - NORM_MEAN) / NORM_STD).transpose(2, 0, 1).copy()


def palette() -> np.ndarray:
    """``(256, 3)`` uint8 colours of label ids."""
    import imgviz

    return imgviz.label_colormap()


def save_palette_png(label_map: np.ndarray, path) -> None:
    from PIL import Image

    label_map = np.asarray(label_map)
    if label_map.min() < 0 or label_map.max() > 255:
        raise LangSegError(f"label ids run from {label_map.min()} to {label_map.max()}: a palette PNG holds 0-255")
    im = Image.fromarray(label_map.astype(np.uint8), mode="P")
    im.putpalette(palette().flatten().tolist())
    atomic_write(path, lambda tmp: im.save(tmp, format="PNG"))


def save_rgb_png(rgb: np.ndarray, path) -> None:
    from PIL import Image

    im = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    atomic_write(path, lambda tmp: im.save(tmp, format="PNG"))


def segmentation_figure(rgb: np.ndarray, label_map: np.ndarray, labels, font_size: int = 0) -> np.ndarray:
    """Upstream's label-set demo as one RGB picture: the image and its colour mask (with a legend
    naming the labels present), then one cut-out per present label (its pixels, the rest white),
    two panels a row."""
    import imgviz

    labels = list(labels)
    h, w = label_map.shape
    font_size = font_size or max(10, min(h, w) // 16)
    white = (255, 255, 255)
    panels = [rgb, imgviz.label2rgb(label_map, label_names=labels, font_size=font_size, loc="rb")]
    for i in np.unique(label_map):
        cut = np.full_like(rgb, 255)
        where = label_map == i
        cut[where] = rgb[where]
        panels.append(imgviz.draw.text_in_rectangle(cut, loc="lt", text=labels[i], size=font_size,
                                                    background=(0, 0, 0), color=white))
    return imgviz.tile(panels, col=2, cval=white, border=white)

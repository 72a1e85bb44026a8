"""The tiny FSS-1000-layout set bundled in ``data/fewshot/bundled/`` (``FSS-1000/<category>/<n>.jpg, <n>.png``).

Eight real FSS-1000 categories, three of the test split, two of val and three of trn, so that the
benchmark's readers, class ids and labels apply unchanged; each holds ten generated 96x96 pictures
(``1..10``, as FSS-1000's) of one object drawn with its own shape and colours on a textured background,
and the object's mask. The zero-shot commands run on it offline in minutes with a tiny model; the
scores mean nothing about LSeg (the full benchmark has 240 test categories of real photos).
Rebuild with ``python -m lang_seg.data.fewshot.bundled`` (the output is deterministic).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from lang_seg.files import atomic_write

ROOT = Path(__file__).resolve().parent / "bundled"
SIZE = 96
IMAGES = 10
# category -> (colour, shape); the split each belongs to is FSS-1000's own (splits/fss/*.txt)
CATEGORIES = {
    "coin": ((212, 175, 55), "disk"), "doughnut": ((150, 90, 40), "ring"), "moon": ((235, 235, 200), "crescent"),
    "lemon": ((250, 230, 60), "ellipse"), "tomato": ((215, 40, 30), "disk"),
    "apple": ((190, 20, 30), "disk"), "orange": ((250, 150, 20), "disk"), "basketball": ((220, 110, 30), "ring"),
}


def shape_mask(shape: str, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    cx, cy = rng.uniform(0.35, 0.65, 2) * SIZE
    r = rng.uniform(0.18, 0.32) * SIZE
    d = np.hypot(xx - cx, yy - cy)
    if shape == "disk":
        return d < r
    if shape == "ring":
        return (d < r) & (d > 0.45 * r)
    if shape == "crescent":
        return (d < r) & (np.hypot(xx - cx - 0.5 * r, yy - cy + 0.2 * r) > 0.9 * r)
    return ((xx - cx) / r) ** 2 + ((yy - cy) / (0.65 * r)) ** 2 < 1  # ellipse


def picture(colour, shape: str, rng: np.random.Generator):
    """A textured background in a random hue, the object painted over it; the mask as 0/255."""
    base = rng.uniform(40, 200, 3)
    gradient = np.linspace(-30, 30, SIZE)[:, None, None] * rng.uniform(-1, 1, 3)
    rgb = base + gradient + rng.normal(0, 12, (SIZE, SIZE, 3))
    mask = shape_mask(shape, rng)
    rgb[mask] = np.asarray(colour) + rng.normal(0, 10, (int(mask.sum()), 3))
    return np.clip(rgb, 0, 255).astype(np.uint8), (mask * 255).astype(np.uint8)


def build(root: Path = ROOT) -> Path:
    base = Path(root) / "FSS-1000"
    if base.exists():
        shutil.rmtree(base)
    rng = np.random.default_rng(22)
    for category, (colour, shape) in CATEGORIES.items():
        (base / category).mkdir(parents=True)
        for n in range(1, IMAGES + 1):
            rgb, mask = picture(colour, shape, rng)
            atomic_write(base / category / f"{n}.jpg",
                         lambda tmp: Image.fromarray(rgb).save(tmp, format="JPEG", quality=90))
            atomic_write(base / category / f"{n}.png",
                         lambda tmp: Image.fromarray(mask, mode="L").save(tmp, format="PNG"))
    return base


if __name__ == "__main__":
    print(f"wrote {build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)}")
